"""The square frame a classifier sees, and the way back: pad an image to a square, resize it, map results back.

MURA radiographs (and most user images) are not square; a classifier trained on squares gets each image centred
on a zero-padded square (padded, never stretched) and resized to its input side. A (size, size) map computed in
that frame goes back onto the original (H, W) image by resizing it to the square's side and cropping the box the
image occupies. Kept in ``common.data`` beside :mod:`common.data.datasets.files` (whose ``pad_to_square`` and
``resize_image`` the datasets use for the same framing), not in ``common.cam``: any per-pixel output (a CAM, a
segmentation, a saliency map) maps back the same way.
"""

from __future__ import annotations

import cv2
import numpy as np

from common.data.datasets.files import pad_to_square, resize_image


def square_box(shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): where an (H, W) image sits on its centred, zero-padded square of side max(H, W)."""
    h, w = shape
    n = max(h, w)
    top, left = (n - h) // 2, (n - w) // 2
    return left, top, left + w, top + h


def to_square(img: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """(H, W) image -> ((size, size) float32 padded-square view, crop box of the image in the unresized square)."""
    assert img.ndim == 2, f"expected a gray (H, W) image, got {img.shape}"
    return resize_image(pad_to_square(img), size), square_box(img.shape)


def back_to_original(m: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """A (size, size) map of the padded square -> (H, W) on the original image (bilinear, then the crop)."""
    assert m.ndim == 2 and m.shape[0] == m.shape[1], f"expected a square map, got {m.shape}"
    n = max(shape)
    full = cv2.resize(np.ascontiguousarray(m, dtype=np.float32), (n, n), interpolation=cv2.INTER_LINEAR)
    x0, y0, x1, y1 = box
    out = full[y0:y1, x0:x1]
    assert out.shape == tuple(shape), (out.shape, shape)
    return out
