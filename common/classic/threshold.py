"""Otsu's threshold (Otsu 1979, https://doi.org/10.1109/TSMC.1979.4310076): the grey level that maximises the
between-class variance of the two classes it makes, computed over the region of interest only."""

from __future__ import annotations

import numpy as np
from skimage.filters import threshold_otsu


def otsu_mask(image: np.ndarray, roi: np.ndarray | None = None) -> np.ndarray:
    """Pixels above Otsu's threshold of the ROI's values (H, W) bool (outside the ROI: False)."""
    image = np.asarray(image, np.float64)
    roi = np.ones(image.shape, bool) if roi is None else np.asarray(roi, bool)
    values = image[roi]
    if values.size == 0 or values.min() == values.max():
        return np.zeros(image.shape, bool)
    return (image > threshold_otsu(values)) & roi
