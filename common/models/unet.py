"""A small U-Net for CPU-sized segmentation studies (fundus disc / cup, cardiac LV; domain adaptation, augmentation,
priors, attention gates).

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015,
https://arxiv.org/abs/1505.04597 — here with batch norm, padded convs (output size = input size) and
``width * 2**k`` channels at depth k.

    level k = 0..depth-1   encoder: [conv3x3 - BN - ReLU] x 2, then 2x2 max-pool to level k+1
    bottleneck             [conv3x3 - BN - ReLU] x 2 at H / 2**depth  (``forward(..., features=True)`` returns it)
    decoder k              2x2 transposed conv up, concat with the (optionally gated) skip k, [conv - BN - ReLU] x 2
    head                   1x1 conv -> (B, num_classes, H, W) logits

``gate`` is a factory ``(skip_channels, gating_channels) -> nn.Module`` called as ``module(skip, gating)``: an
attention gate (Oktay et al. 2018) filters each skip connection with the coarser decoder signal before the concat, so
an attention study changes one argument. H and W must be multiples of ``2**depth``.

    from common.models.unet import UNet
    logits = UNet(in_channels=3, num_classes=3)(images)                  # (B, 3, H, W)
    logits, bottleneck = UNet(3, 3)(images, features=True)               # bottleneck (B, width*2**depth, H/16, W/16)
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Encoder-decoder with skip connections (Ronneberger et al. 2015), optional gates on the skips."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3, width: int = 16, depth: int = 4,
                 gate: Callable[[int, int], nn.Module] | None = None):
        super().__init__()
        if in_channels < 1 or num_classes < 1 or width < 1 or depth < 1:
            raise ValueError(f"UNet needs positive sizes, got in_channels={in_channels}, num_classes={num_classes}, "
                             f"width={width}, depth={depth}")
        self.in_channels, self.num_classes, self.depth = in_channels, num_classes, depth
        chans = [width * 2 ** k for k in range(depth + 1)]
        self.down = nn.ModuleList(double_conv(c_in, c_out) for c_in, c_out in zip([in_channels] + chans[:-2],
                                                                                   chans[:-1], strict=True))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = double_conv(chans[-2], chans[-1])
        self.up = nn.ModuleList(nn.ConvTranspose2d(chans[k + 1], chans[k], 2, stride=2) for k in reversed(range(depth)))
        self.gates = nn.ModuleList(gate(chans[k], chans[k + 1]) for k in reversed(range(depth))) if gate else None
        self.decode = nn.ModuleList(double_conv(2 * chans[k], chans[k]) for k in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], num_classes, 1)
        self.bottleneck_channels = chans[-1]

    def forward(self, x: Tensor, features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        step = 2 ** self.depth
        if x.shape[2] % step or x.shape[3] % step:
            raise ValueError(f"UNet of depth {self.depth} needs H and W multiples of {step}, got {tuple(x.shape[2:])}")
        skips = []
        h = x
        for block in self.down:
            h = block(h)
            skips.append(h)  # (B, width*2**k, H/2**k, W/2**k)
            h = self.pool(h)
        bottom = h = self.bottleneck(h)  # (B, width*2**depth, H/2**depth, W/2**depth)
        for i, (up, decode) in enumerate(zip(self.up, self.decode, strict=True)):
            skip = skips[-1 - i]
            if self.gates is not None:
                skip = self.gates[i](skip, h)  # the coarser decoder signal decides which skip features pass
            h = decode(torch.cat([up(h), skip], dim=1))
        logits = self.head(h)  # (B, num_classes, H, W)
        return (logits, bottom) if features else logits


if __name__ == "__main__":  # pragma: no cover - a quick shape check
    out, f = UNet()(torch.zeros(2, 3, 64, 64), features=True)
    print(out.shape, f.shape, sum(p.numel() for p in UNet().parameters()))
