"""Region-based active contours: Chan-Vese "active contours without edges" (Chan & Vese 2001,
https://doi.org/10.1109/83.902291) and its morphological approximation (Márquez-Neila, Baumela & Alvarez 2014,
https://doi.org/10.1109/TPAMI.2013.106), both from scikit-image. Each returns the brighter of its two phases."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import chan_vese, morphological_chan_vese


def _bright_phase(image: np.ndarray, phase: np.ndarray, roi: np.ndarray) -> np.ndarray:
    inside, outside = phase & roi, ~phase & roi
    if not inside.any() or not outside.any():
        return np.zeros(image.shape, bool)
    return inside if image[inside].mean() >= image[outside].mean() else outside


def _filled(image: np.ndarray, roi: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The image with the pixels outside the ROI set to the ROI's mean (so the frame is no region of its own)."""
    image = np.asarray(image, np.float64)
    roi = np.ones(image.shape, bool) if roi is None else np.asarray(roi, bool)
    if roi.any() and not roi.all():
        image = np.where(roi, image, image[roi].mean())
    return image, roi


def chan_vese_mask(image: np.ndarray, roi: np.ndarray | None = None, mu: float = 0.05,
                   iterations: int = 200) -> np.ndarray:
    """Chan-Vese's bright phase (H, W) bool; ``mu`` weighs the contour length (smoothness)."""
    image, roi = _filled(image, roi)
    if image.max() == image.min():
        return np.zeros(image.shape, bool)
    phase = chan_vese(image, mu=mu, max_num_iter=iterations, init_level_set="checkerboard")
    return _bright_phase(image, np.asarray(phase, bool), roi)


def morph_acwe_mask(image: np.ndarray, roi: np.ndarray | None = None, iterations: int = 30,
                    smoothing: int = 0) -> np.ndarray:
    """Morphological Chan-Vese's bright phase (H, W) bool, from a checkerboard start."""
    image, roi = _filled(image, roi)
    if image.max() == image.min():
        return np.zeros(image.shape, bool)
    phase = morphological_chan_vese(image, iterations, init_level_set="checkerboard", smoothing=smoothing)
    return _bright_phase(image, np.asarray(phase, bool), roi)
