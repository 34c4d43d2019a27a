"""Attention blocks for small CNNs: squeeze-and-excitation, CBAM, and the Attention U-Net's additive gate.

* Squeeze-and-excitation (Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018,
  https://arxiv.org/abs/1709.01507): channel weights sigma(W2 relu(W1 avgpool(F))) -- torchvision's
  ``ops.SqueezeExcitation``, sized by a reduction ratio here.
* CBAM (Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
  https://arxiv.org/abs/1807.06521): the channel attention of SE with average *and* max pooling through one shared MLP,
  then a spatial map sigma(conv7x7([mean_c F; max_c F])) -- in neither torchvision nor MONAI, so written here.
* Additive attention gate (Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018,
  https://arxiv.org/abs/1804.03999): alpha = sigma2(psi^T relu(W_x^T x + W_g^T g + b_g) + b_psi) filters a skip
  connection x with the coarser decoder signal g.

The maps worth drawing (CBAM's spatial map, a gate's coefficients alpha) are the outputs of a ``nn.Sigmoid`` module
of their own (``CBAM.spatial.gate``, ``AttentionGate.coefficients``), so :func:`attention_maps` reads them with
forward hooks (:class:`common.cam.hooks.LayerCapture`, removed on exit) and a block keeps no state between calls.

    from common.models.smallcnn import SmallCNN
    from common.models.unet import UNet
    net = SmallCNN(attention=ATTENTION["cbam"])                 # a CBAM after each stage
    seg = UNet(1, 2, gate=AttentionGate)                         # a gate on each skip
    logits, maps = attention_maps(seg, images)                   # maps["gate1"]: (B, H, W) alpha of the finest skip
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import SqueezeExcitation


def squeezed(channels: int, reduction: int) -> int:
    """Hidden width of an SE / CBAM bottleneck: channels // reduction, at least one unit."""
    if channels < 1 or reduction < 1:
        raise ValueError(f"need channels >= 1 and reduction >= 1, got {channels}, {reduction}")
    return max(1, channels // reduction)


def squeeze_excitation(channels: int, reduction: int = 16) -> SqueezeExcitation:
    """SE block (Hu et al. 2018): x * sigmoid(fc2(relu(fc1(avgpool(x))))), fc as 1x1 convs with biases.

    Parameters: 2 * C * C' + C' + C, with C' = max(1, C // reduction)."""
    return SqueezeExcitation(channels, squeezed(channels, reduction))


class ChannelAttention(nn.Module):
    """CBAM's channel map (Woo et al. 2018, eq. 2): sigma(MLP(avgpool F) + MLP(maxpool F)), one MLP for both."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = squeezed(channels, reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))  # (B, C, 1, 1)
        peak = self.mlp(F.adaptive_max_pool2d(x, 1))
        return self.gate(avg + peak)  # (B, C, 1, 1)


class SpatialAttention(nn.Module):
    """CBAM's spatial map (Woo et al. 2018, eq. 3): sigma(BN(conv7x7([mean over channels; max over channels])))
    -- the convolution without bias and with batch norm, as in the authors' code (github.com/Jongchan/
    attention-module)."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"the spatial kernel must be odd and positive, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)
        self.gate = nn.Sigmoid()  # its output (B, 1, H, W) is the map attention_maps() reads

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)  # (B, 2, H, W)
        # NHWC: oneDNN's CPU kernel for this 2 -> 1 channel convolution is ~3x faster on it (same values)
        pooled = pooled.contiguous(memory_format=torch.channels_last)
        return self.gate(self.bn(self.conv(pooled)))  # (B, 1, H, W)


class CBAM(nn.Module):
    """Convolutional block attention (Woo et al. 2018): F' = Mc(F) * F, then F'' = Ms(F') * F' (channel first).

    Parameters: 2 * C * C' + C' + C (the shared MLP with biases, C' = max(1, C // reduction)) + 2 * k * k + 2
    (the k x k spatial convolution and its batch norm)."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channels = channels
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"CBAM({self.channels}) expected (B, {self.channels}, H, W), got {tuple(x.shape)}")
        x = x * self.channel(x)
        return x * self.spatial(x)  # (B, C, H, W)


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Oktay et al. 2018, eqs. 1-2): returns alpha * x.

    x (B, F_l, H, W) is the skip, g (B, F_g, H', W') the coarser decoder signal. As in MONAI's ``AttentionBlock``,
    alpha is computed on the skip's grid (W_g g is bilinearly resampled onto it; Oktay et al. compute on g's grid
    and resample alpha -- the same formula), so the coefficients (B, 1, H, W) have the skip's resolution.
    ``inter_channels`` F_int defaults to F_l // 2 (as Oktay's code and MONAI). Parameters, 1x1 convolutions:
    F_int * (F_l + F_g) + F_int (b_g) + F_int + 1 (psi and b_psi); ``batch_norm=True`` is MONAI's layout instead
    (each projection, psi included, followed by batch norm; no conv biases): F_int * (F_l + F_g + 5) + 2.
    """

    def __init__(self, skip_channels: int, gating_channels: int, inter_channels: int | None = None,
                 batch_norm: bool = False):
        super().__init__()
        f_int = inter_channels or max(1, skip_channels // 2)
        if min(skip_channels, gating_channels, f_int) < 1:
            raise ValueError(f"need positive channel counts, got {skip_channels}, {gating_channels}, {f_int}")
        self.skip_channels, self.gating_channels, self.inter_channels = skip_channels, gating_channels, f_int

        def project(c_in: int, c_out: int, bias: bool) -> nn.Module:
            conv = nn.Conv2d(c_in, c_out, 1, bias=bias and not batch_norm)
            return nn.Sequential(conv, nn.BatchNorm2d(c_out)) if batch_norm else conv

        self.W_x = project(skip_channels, f_int, bias=False)  # the paper's W_x has no bias; b_g is the shared one
        self.W_g = project(gating_channels, f_int, bias=True)
        self.psi = project(f_int, 1, bias=True)
        self.coefficients = nn.Sigmoid()  # its output (B, 1, H, W) is alpha, the map attention_maps() reads

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        if x.ndim != 4 or g.ndim != 4 or x.shape[1] != self.skip_channels or g.shape[1] != self.gating_channels \
                or x.shape[0] != g.shape[0]:
            raise ValueError(f"AttentionGate({self.skip_channels}, {self.gating_channels}) expected skip (B, "
                             f"{self.skip_channels}, H, W) and gating (B, {self.gating_channels}, H', W'), got "
                             f"{tuple(x.shape)} and {tuple(g.shape)}")
        gating = self.W_g(g)  # (B, F_int, H', W')
        if gating.shape[-2:] != x.shape[-2:]:
            gating = F.interpolate(gating, size=x.shape[-2:], mode="bilinear", align_corners=False)
        alpha = self.coefficients(self.psi(F.relu(self.W_x(x) + gating)))  # (B, 1, H, W)
        return x * alpha


ATTENTION: dict[str, Callable[[int], nn.Module] | None] = {
    "none": None,
    "se": squeeze_excitation,
    "cbam": CBAM,
}
"""Name -> factory ``channels -> block`` for ``SmallCNN(attention=...)`` (``None``: no block)."""


def attention_factory(name: str, reduction: int = 16) -> Callable[[int], nn.Module] | None:
    """The block factory of ``name`` (a key of :data:`ATTENTION`) with its channel reduction ratio."""
    if name not in ATTENTION:
        raise ValueError(f"unknown attention block {name!r}; choose from {', '.join(ATTENTION)}")
    block = ATTENTION[name]
    return None if block is None else functools.partial(block, reduction=reduction)


def map_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The modules whose outputs are attention maps, in forward order: CBAM spatial maps as ``cbam1``, ``cbam2``
    ... and gate coefficients as ``gate1`` (the finest skip), ``gate2`` ... (the UNet runs its gates coarse first,
    so they are numbered from the finest, level k = 1 at full resolution)."""
    cbams = [m.spatial.gate for m in model.modules() if isinstance(m, CBAM)]
    gates = [m for m in model.modules() if isinstance(m, AttentionGate)]
    gates.sort(key=lambda m: m.skip_channels)  # skips widen with depth: the finest has the fewest channels
    return {**{f"cbam{k + 1}": m for k, m in enumerate(cbams)},
            **{f"gate{k + 1}": m.coefficients for k, m in enumerate(gates)}}


@torch.no_grad()
def attention_maps(model: nn.Module, x: Tensor, size: tuple[int, int] | None = None) -> tuple[Tensor, dict]:
    """One forward pass: (model output, {name: map (B, H, W) float32 in [0, 1]}) for every CBAM spatial map and
    gate of ``model`` (see :func:`map_modules`), bilinearly resized to ``size`` (default: x's H, W)."""
    from common.cam.hooks import LayerCapture  # the one place hooks live

    assert x.ndim == 4, f"expected (B, C, H, W), got {tuple(x.shape)}"
    modules = map_modules(model)
    if not modules:
        return model(x), {}
    size = tuple(size or x.shape[-2:])
    with LayerCapture(modules) as capture:
        out = model(x)
    maps = {}
    for name in modules:
        m = capture.activations[name].float()  # (B, 1, h, w)
        if tuple(m.shape[-2:]) != size:
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        maps[name] = m[:, 0].clamp(0, 1).cpu()  # (B, H, W)
    return out, maps
