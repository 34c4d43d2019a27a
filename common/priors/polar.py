"""The polar transform around the optic disc centre, and its inverse (Fu et al., M-Net, IEEE TMI 2018).

Fu, Cheng, Xu, Wong, Liu, Cao, "Joint Optic Disc and Cup Segmentation Based on Multi-label Deep Network and Polar
Transformation", IEEE TMI 2018, https://arxiv.org/abs/1801.00926: resampled in polar coordinates around the disc
centre, the cup, the rim and the background become three layers ordered by radius (cup nearest the centre), the
small disc fills much of the polar image, and the segmenter learns the layer boundaries; its output is mapped back
with the inverse transform.

Layout (OpenCV's ``warpPolar``, linear in the radius): a polar image is (n_angles, n_radii[, C]); row i is the angle
2 pi i / n_angles (clockwise on screen, 0 pointing right), column j the radius j * radius / n_radii from ``centre``
(x, y) in pixels. Points beyond ``radius`` are not represented: the inverse fills them with 0.
"""

from __future__ import annotations

import cv2
import numpy as np

INTERPOLATION = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


def _warp(image: np.ndarray, size: tuple[int, int], centre, radius: float, flags: int) -> np.ndarray:
    image = np.asarray(image)
    dtype = image.dtype
    work = image.astype(np.float32) if dtype == np.bool_ else image
    if work.ndim == 3 and work.shape[2] > 4:  # OpenCV remaps up to 4 channels at once
        return np.stack([_warp(work[..., c], size, centre, radius, flags) for c in range(work.shape[2])], -1)
    out = cv2.warpPolar(work, size, (float(centre[0]), float(centre[1])), float(radius), flags)
    if work.ndim == 3 and out.ndim == 2:  # one channel comes back without its axis
        out = out[..., None]
    return out > 0.5 if dtype == np.bool_ else out


def to_polar(image: np.ndarray, centre: tuple[float, float], radius: float, shape: tuple[int, int],
             interpolation: str = "linear") -> np.ndarray:
    """Cartesian (H, W[, C]) -> polar (n_angles, n_radii[, C]) = ``shape``, around ``centre`` (x, y) out to
    ``radius`` pixels. ``interpolation``: "linear" for images and probabilities, "nearest" for label maps."""
    assert radius > 0 and len(shape) == 2, (radius, shape)
    n_angles, n_radii = shape
    flags = cv2.WARP_POLAR_LINEAR | cv2.WARP_FILL_OUTLIERS | INTERPOLATION[interpolation]
    return _warp(image, (int(n_radii), int(n_angles)), centre, radius, flags)


def from_polar(polar: np.ndarray, centre: tuple[float, float], radius: float, shape: tuple[int, int],
               interpolation: str = "linear") -> np.ndarray:
    """Polar (n_angles, n_radii[, C]) -> Cartesian ``shape`` (H, W)[, C]: the inverse of :func:`to_polar`
    (0 beyond ``radius``)."""
    assert radius > 0 and len(shape) == 2, (radius, shape)
    h, w = shape
    flags = cv2.WARP_POLAR_LINEAR | cv2.WARP_FILL_OUTLIERS | cv2.WARP_INVERSE_MAP | INTERPOLATION[interpolation]
    return _warp(polar, (int(w), int(h)), centre, radius, flags)
