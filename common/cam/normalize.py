"""Post-processing of raw class activation maps: ReLU, bilinear upsampling to the input, min-max per image.

The same post-processing as pytorch-grad-cam (https://github.com/jacobgil/pytorch-grad-cam), applied once
after upsampling (bilinear resizing commutes with the affine min-max step, so the order does not matter).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize_maps(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """ReLU, bilinear upsampling to ``size``, min-max to [0, 1] per image: (B, h, w) -> (B, H, W) float32."""
    assert raw.ndim == 3, f"expected raw maps (B, h, w), got {tuple(raw.shape)}"
    maps = raw.float().clamp_min(0)[:, None]  # (B, 1, h, w)
    if maps.shape[-2:] != tuple(size):
        maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
    return minmax_per_image(maps[:, 0])  # (B, H, W)


def minmax_per_image(maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> each map rescaled to [0, 1]; a constant (e.g. all-zero) map becomes all zeros."""
    lo = maps.amin((1, 2), keepdim=True)
    hi = maps.amax((1, 2), keepdim=True)
    # No additive epsilon: it would shrink maps with a small range (shallow layers) away from 1.
    return (maps - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
