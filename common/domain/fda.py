"""Fourier domain adaptation (Yang & Soatto, "FDA: Fourier Domain Adaptation for Semantic Segmentation", CVPR 2020,
https://arxiv.org/abs/2004.05498): a camera's colour balance, exposure and vignetting live in the lowest spatial
frequencies of the amplitude spectrum, the anatomy in the phase; giving a source image the target's low-frequency
amplitude (a centred square of half-side ``beta`` x min(H, W), in frequency bins) restyles it without moving any edge.

    from common.domain.fda import fda_source_to_target
    styled = fda_source_to_target(xs, xt, beta=0.05)   # (B, C, H, W)
"""

from __future__ import annotations

import torch
from torch import Tensor


def low_frequency_mask(h: int, w: int, beta: float, device=None) -> Tensor:
    """(H, W) bool over an unshifted spectrum: the frequencies k with |k| < b = floor(beta * min(H, W)) along both
    axes. Symmetric about zero (Yang & Soatto's code takes [-b, b) instead), so the swap keeps the spectrum
    Hermitian and the restyled image real; b = 1 swaps only the mean."""
    if not 0 <= beta <= 1:
        raise ValueError(f"FDA's beta must lie in [0, 1], got {beta}")
    b = int(beta * min(h, w))

    def near(n: int) -> Tensor:
        k = torch.arange(n, device=device)
        return torch.minimum(k, n - k) < b  # |signed frequency| < b

    return near(h)[:, None] & near(w)[None, :]


def fda_source_to_target(source: Tensor, target: Tensor, beta: float = 0.05, clip: bool = True) -> Tensor:
    """Source images (B, C, H, W) with the low-frequency amplitude of target images of the same shape, phase kept;
    ``clip`` keeps the result in [0, 1]."""
    if source.shape != target.shape or source.ndim != 4:
        raise ValueError(f"FDA needs two (B, C, H, W) batches of one shape, got {tuple(source.shape)} "
                         f"{tuple(target.shape)}")
    fs, ft = torch.fft.fft2(source.float()), torch.fft.fft2(target.float())
    mask = low_frequency_mask(*source.shape[-2:], beta, device=source.device)
    amplitude = torch.where(mask, ft.abs(), fs.abs())
    out = torch.fft.ifft2(torch.polar(amplitude, fs.angle())).real
    return out.clamp(0, 1) if clip else out
