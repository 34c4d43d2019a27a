"""Histogram matching, the cheapest input-space alignment: map each channel's values so that its cumulative
histogram equals a target image's (Gonzalez & Woods, "Digital Image Processing", histogram specification).

Quantile mapping over the distinct values of each channel, as scikit-image's ``exposure.match_histograms``
defines it: a value at source quantile q becomes the reference value at quantile q (linearly interpolated).

    from common.domain.histogram import match_histograms, match_batch
    styled = match_histograms(source_rgb, target_rgb)          # (H, W, 3) numpy
    styled = match_batch(xs, xt)                               # (B, C, H, W) tensors, pair by pair
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def match_channel(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """One channel of ``source`` mapped onto ``reference``'s histogram (any shapes)."""
    values, inverse, counts = np.unique(source.ravel(), return_inverse=True, return_counts=True)
    ref_values, ref_counts = np.unique(reference.ravel(), return_counts=True)
    quantiles = np.cumsum(counts) / source.size
    ref_quantiles = np.cumsum(ref_counts) / reference.size
    return np.interp(quantiles, ref_quantiles, ref_values)[inverse].reshape(source.shape)


def match_histograms(source: np.ndarray, reference: np.ndarray, channel_axis: int | None = -1) -> np.ndarray:
    """``source`` with each channel's histogram matched to the same channel of ``reference`` (float64 out);
    ``channel_axis=None`` for grey images."""
    source, reference = np.asarray(source), np.asarray(reference)
    if channel_axis is None:
        return match_channel(source, reference)
    if source.shape[channel_axis] != reference.shape[channel_axis]:
        raise ValueError(f"source and reference differ in channels: {source.shape} vs {reference.shape}")
    src, ref = np.moveaxis(source, channel_axis, 0), np.moveaxis(reference, channel_axis, 0)
    out = np.stack([match_channel(s, r) for s, r in zip(src, ref, strict=True)])
    return np.moveaxis(out, 0, channel_axis)


def match_batch(source: Tensor, reference: Tensor) -> Tensor:
    """(B, C, H, W) source images matched pair by pair to (B, C, H', W') references (float32, source's device)."""
    if source.ndim != 4 or reference.ndim != 4 or len(source) != len(reference):
        raise ValueError(f"match_batch needs two (B, C, H, W) batches of one length, got {tuple(source.shape)} "
                         f"{tuple(reference.shape)}")
    src, ref = source.detach().float().cpu().numpy(), reference.detach().float().cpu().numpy()
    out = np.stack([match_histograms(s, r, channel_axis=0) for s, r in zip(src, ref, strict=True)])
    return torch.from_numpy(out.astype(np.float32)).to(source.device)
