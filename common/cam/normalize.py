"""Post-processing of raw class activation maps: ReLU, upsampling to the input, min-max per image.

The same post-processing as pytorch-grad-cam (https://github.com/jacobgil/pytorch-grad-cam), applied once
after upsampling: bilinear for 2D maps (half-pixel centres, as its cv2 resize), trilinear for 3D volumes (where
pytorch-grad-cam resizes with scipy's cubic-spline ``zoom`` instead: the two agree at feature resolution, and
differ after upsampling by the interpolation kernel only). Bilinear resizing commutes with the affine min-max step
up to the range of the upsampled map, which the final min-max of both libraries restores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}  # spatial dims -> interpolation


def upsample(maps: torch.Tensor, size: tuple[int, ...], align_corners: bool = False) -> torch.Tensor:
    """(N, C, *s) -> (N, C, *size) by (bi/tri)linear interpolation; unchanged when already that size."""
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[2:]) == size:
        return maps
    if len(size) not in MODES or maps.ndim != 2 + len(size):
        raise ValueError(f"cannot resize maps {tuple(maps.shape)} to {size}: 1-3 spatial dims")
    return F.interpolate(maps, size=size, mode=MODES[len(size)], align_corners=align_corners)


def normalize_maps(raw: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """ReLU, upsampling to ``size``, min-max to [0, 1] per image: (B, *s) -> (B, *size) float32 (2D or 3D)."""
    assert raw.ndim == 1 + len(size) and raw.ndim in (3, 4), \
        f"expected raw maps (B, h, w) or (B, d, h, w) for size {tuple(size)}, got {tuple(raw.shape)}"
    maps = upsample(raw.float().clamp_min(0)[:, None], tuple(size))  # (B, 1, *size)
    return minmax_per_image(maps[:, 0])  # (B, *size)


def minmax_per_image(maps: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> each map rescaled to [0, 1]; a constant (e.g. all-zero) map becomes all zeros."""
    dims = tuple(range(1, maps.ndim))
    lo = maps.amin(dims, keepdim=True)
    hi = maps.amax(dims, keepdim=True)
    # No additive epsilon: it would shrink maps with a small range (shallow layers) away from 1.
    return (maps - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
