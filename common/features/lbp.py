"""Uniform, rotation-invariant local binary patterns (Ojala, Pietikäinen & Mäenpää 2002,
https://doi.org/10.1109/TPAMI.2002.1017623): the histogram of pattern codes at each (points, radius)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.feature import local_binary_pattern


@dataclass(frozen=True)
class LBPParams:
    scales: tuple[tuple[int, float], ...] = ((8, 1.0), (16, 2.0))  # (points P, radius R) pairs


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats as 0..255 grey levels (LBP and GLCM compare grey levels; floats make LBP noise-sensitive)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


def lbp_histogram(image: np.ndarray, params: LBPParams = LBPParams()) -> np.ndarray:
    """Normalised histograms of "uniform" LBP codes (P + 2 bins for P points), concatenated over the scales."""
    assert np.ndim(image) == 2, np.shape(image)
    grey = to_uint8(image)
    parts = []
    for points, radius in params.scales:
        codes = local_binary_pattern(grey, points, radius, method="uniform")  # values 0..P+1
        counts = np.bincount(codes.astype(np.int64).ravel(), minlength=points + 2)
        parts.append(counts / codes.size)
    return np.concatenate(parts).astype(np.float64)
