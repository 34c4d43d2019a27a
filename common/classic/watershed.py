"""Marker-controlled watershed (Beucher & Meyer 1993) on the Sobel gradient: the darkest and brightest of three
multi-Otsu classes (Liao et al. 2001) are the markers, the watershed decides the pixels between them."""

from __future__ import annotations

import numpy as np
from skimage.filters import sobel, threshold_multiotsu
from skimage.segmentation import watershed


def watershed_mask(image: np.ndarray, roi: np.ndarray | None = None) -> np.ndarray:
    """The flooded bright region (H, W) bool: background markers below the lower multi-Otsu threshold, foreground
    markers above the upper one; outside the ROI is background."""
    image = np.asarray(image, np.float64)
    roi = np.ones(image.shape, bool) if roi is None else np.asarray(roi, bool)
    values = image[roi]
    if values.size < 3 or len(np.unique(values)) < 3:
        return np.zeros(image.shape, bool)
    low, high = threshold_multiotsu(values, classes=3)
    markers = np.zeros(image.shape, np.int32)
    markers[(image < low) | ~roi] = 1
    markers[(image > high) & roi] = 2
    return (watershed(sobel(image), markers) == 2) & roi
