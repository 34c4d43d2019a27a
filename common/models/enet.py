"""ENet: a small encoder-decoder for real-time semantic segmentation.

Paszke, Chaurasia, Kim, Culurciello, "ENet: A Deep Neural Network Architecture for Real-Time Semantic
Segmentation", 2016, https://arxiv.org/abs/1606.02147. Kervadec et al. (https://arxiv.org/abs/1805.04628)
train it with their constrained (size) losses; it is the network of ``01_WeaklySupervised``.

Layout (paper Table 1), for an input of (B, in_channels, H, W), H and W multiples of 8:

    initial      3x3/2 conv || 2x2 max-pool, concatenated          -> 16 ch, H/2
    stage 1      downsampling bottleneck + 4 regular               -> 64 ch, H/4
    stage 2      downsampling bottleneck + 8 (regular, dilated 2, asymmetric 5, dilated 4,
                 regular, dilated 8, asymmetric 5, dilated 16)     -> 128 ch, H/8
    stage 3      stage 2 without its downsampling bottleneck       -> 128 ch, H/8
    stage 4      upsampling bottleneck + 2 regular                 -> 64 ch, H/4
    stage 5      upsampling bottleneck + 1 regular                 -> 16 ch, H/2
    full conv    3x3/2 transposed conv                             -> num_classes, H

With ``in_channels=1, num_classes=2`` it has 359,143 parameters (paper: 0.37 M for 3 channels, 12 classes).

    from common.models.enet import ENet
    logits = ENet(in_channels=1, num_classes=2)(images)   # (B, 2, H, W)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

INITIAL_CHANNELS = 16  # paper: 13 conv filters + 3 RGB channels from the max-pool = 16


def _bn_prelu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.PReLU(channels)]


class InitialBlock(nn.Module):
    """ENet initial block: strided 3x3 conv concatenated with a 2x2 max-pool of the input (Paszke 2016, Fig. 2a)."""

    def __init__(self, in_channels: int, out_channels: int = INITIAL_CHANNELS):
        super().__init__()
        if not 0 < in_channels < out_channels:
            raise ValueError(f"ENet initial block needs 0 < in_channels < {out_channels}, got {in_channels}")
        # The conv fills the channels the pooled input does not, so the output always has out_channels.
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class Bottleneck(nn.Module):
    """ENet non-downsampling bottleneck: 1x1 project, main conv, 1x1 expand, spatial dropout, residual (Fig. 2b).

    ``kind`` selects the main conv: "regular" (3x3), "dilated" (3x3 with ``dilation``) or "asymmetric"
    (5x1 then 1x5, which covers a 5x5 field with 10 instead of 25 weights per channel pair).
    """

    def __init__(self, channels: int, kind: str = "regular", dilation: int = 1, dropout: float = 0.1,
                 projection: int = 4):
        super().__init__()
        inner = channels // projection
        if kind == "regular":
            main = [nn.Conv2d(inner, inner, 3, padding=1, bias=False)]
        elif kind == "dilated":
            main = [nn.Conv2d(inner, inner, 3, padding=dilation, dilation=dilation, bias=False)]
        elif kind == "asymmetric":
            main = [nn.Conv2d(inner, inner, (5, 1), padding=(2, 0), bias=False),
                    nn.Conv2d(inner, inner, (1, 5), padding=(0, 2), bias=False)]
        else:
            raise ValueError(f"unknown bottleneck kind {kind!r}; use regular, dilated or asymmetric")
        self.branch = nn.Sequential(
            nn.Conv2d(channels, inner, 1, bias=False), *_bn_prelu(inner),
            *main, *_bn_prelu(inner),
            nn.Conv2d(inner, channels, 1, bias=False), nn.BatchNorm2d(channels),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.branch(x))


class DownsamplingBottleneck(nn.Module):
    """ENet downsampling bottleneck: max-pool (indices kept for unpooling) + zero-padded channels (Fig. 2b)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.1, projection: int = 4):
        super().__init__()
        inner = in_channels // projection
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        # The 2x2 stride-2 projection replaces the 1x1 so the branch sees every input pixel (paper, Sec. 4).
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, inner, 2, stride=2, bias=False), *_bn_prelu(inner),
            nn.Conv2d(inner, inner, 3, padding=1, bias=False), *_bn_prelu(inner),
            nn.Conv2d(inner, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
            nn.Dropout2d(dropout),
        )
        self.extra = out_channels - in_channels
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        main, indices = self.pool(x)
        b, _, h, w = main.shape
        main = torch.cat([main, main.new_zeros(b, self.extra, h, w)], dim=1)
        return self.act(main + self.branch(x)), indices


class UpsamplingBottleneck(nn.Module):
    """ENet upsampling bottleneck: 1x1 conv + max-unpool with the encoder's indices, plus a transposed-conv branch."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.1, projection: int = 4):
        super().__init__()
        inner = in_channels // projection
        self.main_conv = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                       nn.BatchNorm2d(out_channels))
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, inner, 1, bias=False), *_bn_prelu(inner),
            nn.ConvTranspose2d(inner, inner, 3, stride=2, padding=1, output_padding=1, bias=False),
            *_bn_prelu(inner),
            nn.Conv2d(inner, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor, indices: Tensor) -> Tensor:
        main = self.unpool(self.main_conv(x), indices)  # exact 2x because forward() checks H, W % 8
        return self.act(main + self.branch(x))


def _stage_2_or_3(channels: int, dropout: float) -> nn.Sequential:
    kinds = [("regular", 1), ("dilated", 2), ("asymmetric", 1), ("dilated", 4),
             ("regular", 1), ("dilated", 8), ("asymmetric", 1), ("dilated", 16)]
    return nn.Sequential(*[Bottleneck(channels, kind, dilation, dropout) for kind, dilation in kinds])


class ENet(nn.Module):
    """ENet segmentation network (Paszke et al. 2016, arXiv:1606.02147); returns logits (B, num_classes, H, W)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.initial = InitialBlock(in_channels)
        self.down1 = DownsamplingBottleneck(16, 64, dropout=0.01)
        self.stage1 = nn.Sequential(*[Bottleneck(64, dropout=0.01) for _ in range(4)])
        self.down2 = DownsamplingBottleneck(64, 128, dropout=0.1)
        self.stage2 = _stage_2_or_3(128, dropout=0.1)
        self.stage3 = _stage_2_or_3(128, dropout=0.1)
        self.up4 = UpsamplingBottleneck(128, 64, dropout=0.1)
        self.stage4 = nn.Sequential(Bottleneck(64, dropout=0.1), Bottleneck(64, dropout=0.1))
        self.up5 = UpsamplingBottleneck(64, 16, dropout=0.1)
        self.stage5 = Bottleneck(16, dropout=0.1)
        self.full_conv = nn.ConvTranspose2d(16, num_classes, 3, stride=2, padding=1, output_padding=1,
                                            bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        assert c == self.in_channels, f"ENet built for {self.in_channels} input channels, got {c}"
        if h % 8 or w % 8:
            raise ValueError(f"ENet needs height and width divisible by 8 (three 2x downsamplings), got {h}x{w}")
        x = self.initial(x)                      # (B, 16, H/2, W/2)
        x, idx1 = self.down1(x)                  # (B, 64, H/4, W/4)
        x = self.stage1(x)
        x, idx2 = self.down2(x)                  # (B, 128, H/8, W/8)
        x = self.stage3(self.stage2(x))
        x = self.stage4(self.up4(x, idx2))       # (B, 64, H/4, W/4)
        x = self.stage5(self.up5(x, idx1))       # (B, 16, H/2, W/2)
        out = self.full_conv(x)                  # (B, num_classes, H, W)
        assert out.shape == (b, self.num_classes, h, w), out.shape
        return out
