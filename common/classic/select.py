"""Which connected component of a foreground mask is the structure: a shape-and-position prior instead of labels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import label, regionprops

PRIORS = ("central", "brightest")


def select_component(mask: np.ndarray, image: np.ndarray, prior: str, min_area: float = 0.002,
                     max_area: float = 0.15) -> np.ndarray:
    """The one component of ``mask`` (H, W) the prior names, holes filled; empty if none fits.

    Components of ``min_area`` to ``max_area`` of the image (fractions) compete; each is scored by its solidity
    (area / convex area: the LV cavity and the optic disc are convex blobs) times "central": closeness to the image
    centre, exp(-(distance / (H / 4))**2); or "brightest": its mean intensity.
    """
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; choose from {', '.join(PRIORS)}")
    mask = ndimage.binary_opening(np.asarray(mask, bool), np.ones((2, 2), bool))  # cut one-pixel bridges
    labels = label(mask, connectivity=1)
    h, w = mask.shape
    best, best_score = None, -np.inf
    for region in regionprops(labels, intensity_image=np.asarray(image, np.float64)):
        if not min_area * h * w <= region.area <= max_area * h * w:
            continue
        if prior == "central":
            cy, cx = region.centroid
            score = region.solidity * np.exp(-((cy - (h - 1) / 2) ** 2 + (cx - (w - 1) / 2) ** 2) / (h / 4) ** 2)
        else:
            score = region.solidity * region.intensity_mean
        if score > best_score:
            best, best_score = region.label, score
    if best is None:
        return np.zeros(mask.shape, bool)
    return ndimage.binary_fill_holes(labels == best)
