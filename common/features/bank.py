"""The feature registry: a name per family, and the (N, D) design matrix of a stack of images."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from common.features.firstorder import first_order
from common.features.glcm import glcm_properties
from common.features.histogram import intensity_histogram
from common.features.hog import hog_features
from common.features.lbp import lbp_histogram

FEATURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "hog": hog_features,
    "lbp": lbp_histogram,
    "glcm": glcm_properties,
    "histogram": intensity_histogram,
    "firstorder": first_order,
}


def image_features(image: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The families ``names`` of one (H, W) image, concatenated in that order: (D,) float64."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not names:
        raise ValueError(f"unknown or no feature families {unknown or list(names)}; choose from {', '.join(FEATURES)}")
    return np.concatenate([FEATURES[n](image) for n in names])


def feature_matrix(images: np.ndarray, names: Sequence[str], progress: bool = True) -> tuple[np.ndarray, dict]:
    """Images (N, H, W) in [0, 1] -> the design matrix (N, D) float64 and each family's column slice."""
    from tqdm import tqdm

    images = np.asarray(images)
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not names:
        raise ValueError(f"unknown or no feature families {unknown or list(names)}; choose from {', '.join(FEATURES)}")
    assert images.ndim == 3 and len(images), images.shape
    first = {n: FEATURES[n](images[0]) for n in names}  # the widths, from the first image
    columns, start = {}, 0
    for n in names:
        columns[n] = slice(start, start + len(first[n]))
        start += len(first[n])
    out = np.empty((len(images), start), np.float64)
    out[0] = np.concatenate([first[n] for n in names])
    for i in tqdm(range(1, len(images)), desc="features", leave=False, disable=not progress):
        out[i] = image_features(images[i], names)
    return out, columns
