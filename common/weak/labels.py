"""Weak labels made from full masks: eroded seeds, points, centroid disks and bounding boxes.

Kervadec et al., "Constrained-CNN losses for weakly supervised segmentation", Medical Image Analysis 2019,
https://arxiv.org/abs/1805.04628, Sec. 4.1; their generator is ``gen_weak.py`` in github.com/LIVIAETS/SizeLoss_WSS.

Encoding of a weak label, a uint8 array (H, W):

    0    pixel labelled background
    1    pixel labelled foreground (the chosen class)
    255  unlabelled (``IGNORE``, the ``ignore_index`` of :func:`common.losses.partial_cross_entropy`)

Background. In Kervadec's setting only the foreground seeds are labelled: their partial cross-entropy is
restricted to the target class (``CrossEntropy`` with ``idc=[3]`` in ``acdc.make``), so every other pixel is
unlabelled and only the size penalty speaks about the background. That is the default here
(``background_margin=None``). With ``background_margin=k`` the pixels further than k pixels (3x3 dilation steps)
from the true mask are also labelled background, a common "scribble outside the organ" variant; k=0 labels the
whole complement of the mask, which gives away the exact boundary and is nearly full supervision.

    weak = make_weak_label("point", mask, seed=0)     # mask (H, W) bool -> weak (H, W) uint8
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy import ndimage

from common.errors import InputError
from common.losses.partial_ce import IGNORE_INDEX

IGNORE = IGNORE_INDEX
BACKGROUND = 0
FOREGROUND = 1
_SQUARE = np.ones((3, 3), dtype=bool)  # 3x3 structuring element, as the reference's generate_binary_structure(2, 3)


def check_mask(mask: Any, path: Any = None) -> np.ndarray:
    """Return ``mask`` as a bool (H, W) array; InputError if it is not 2D binary or has no foreground pixel."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"mask must be a 2D (H, W) array, got shape {arr.shape}", path,
                         "pass one slice and select the class first, e.g. mask == class_id")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise InputError(f"mask must be binary (0/1 or bool), got values {np.unique(arr)[:8].tolist()}", path,
                             "select the class first, e.g. mask == class_id")
        arr = arr.astype(bool)
    if not arr.any():
        raise InputError("mask has no foreground pixel, so no weak label can be drawn from it", path,
                         "skip empty slices for seed labels (tag bounds [0, 0] still supervise them)")
    return arr


def check_same_size(image: Any, mask: Any, path: Any = None) -> None:
    """Raise InputError unless image (H, W) or (H, W, C) and mask (H, W) have the same height and width."""
    ih, iw = np.shape(image)[:2]
    mh, mw = np.shape(mask)[:2]
    if (ih, iw) != (mh, mw):
        raise InputError(f"image is {ih}x{iw} but its mask is {mh}x{mw}", path,
                         "pair each image with the mask of the same slice, or resize both the same way")


def _disk(shape: tuple[int, int], cy: int, cx: int, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2


def _finish(fg: np.ndarray, mask: np.ndarray, background_margin: int | None) -> np.ndarray:
    """Encode foreground seeds ``fg`` (subset of ``mask``) and the optional background as a weak label (H, W)."""
    assert fg.shape == mask.shape and not (fg & ~mask).any(), "seeds must lie inside the mask"
    weak = np.full(mask.shape, IGNORE, dtype=np.uint8)
    if background_margin is not None:
        if background_margin < 0:
            raise ValueError(f"background_margin must be >= 0 or None, got {background_margin}")
        grown = ndimage.binary_dilation(mask, _SQUARE, iterations=background_margin) if background_margin else mask
        weak[~grown] = BACKGROUND
    weak[fg] = FOREGROUND
    return weak


def erosion(mask: Any, rng: Any = None, background_margin: int | None = None, max_iterations: int = 10) -> np.ndarray:
    """Eroded-mask seed (Kervadec 2019, ``erosion_strat``): 3x3 erosion, ``max_iterations`` down to 1 until non-empty.

    If even one erosion empties the mask (a thin structure), the whole mask is used, as in the reference.
    ``rng`` is unused (the result is deterministic); it keeps the registry's signature.
    """
    mask = check_mask(mask)
    for iterations in range(max_iterations, 0, -1):
        # border_value=0: the image border counts as background, so masks touching it erode from that side too.
        eroded = ndimage.binary_erosion(mask, _SQUARE, iterations=iterations)
        if eroded.any():
            return _finish(eroded, mask, background_margin)
    return _finish(mask, mask, background_margin)


def random_point(mask: Any, rng: Any = None, background_margin: int | None = None,
                 radius: float = 4.0) -> np.ndarray:
    """Random-point seed (Kervadec 2019, ``random_strat``): disk at a uniformly drawn foreground pixel, clipped to mask.

    ``rng`` is a seed or ``np.random.Generator``; the same seed gives the same point. The reference drew a disk of
    width 4 (radius 2); ``radius`` defaults to 4 for a seed that survives downsampling.
    """
    mask = check_mask(mask)
    rng = np.random.default_rng(rng)
    coords = np.argwhere(mask)                                         # (N, 2) row-major
    cy, cx = coords[rng.integers(len(coords))]
    return _finish(_disk(mask.shape, cy, cx, radius) & mask, mask, background_margin)


def centroid_pixel(mask: np.ndarray) -> tuple[int, int]:
    """The mask's centroid rounded to a pixel; if that pixel is outside the mask, the nearest foreground pixel."""
    cy, cx = ndimage.center_of_mass(mask)
    py, px = int(np.floor(cy + 0.5)), int(np.floor(cx + 0.5))
    if mask[py, px]:
        return py, px
    # Non-convex shapes (a ring, a crescent) can have their centroid in a hole; ties go to the first row-major pixel.
    coords = np.argwhere(mask)
    nearest = np.argmin((coords[:, 0] - cy) ** 2 + (coords[:, 1] - cx) ** 2)
    return int(coords[nearest, 0]), int(coords[nearest, 1])


def centroid(mask: Any, rng: Any = None, background_margin: int | None = None, radius: float = 4.0) -> np.ndarray:
    """Centroid seed (Kervadec 2019, ``centroid_strat``): a disk at the mask's centroid, clipped to the mask.

    Deterministic; ``rng`` is unused and keeps the registry's signature.
    """
    mask = check_mask(mask)
    cy, cx = centroid_pixel(mask)
    return _finish(_disk(mask.shape, cy, cx, radius) & mask, mask, background_margin)


def box(mask: Any, rng: Any = None, background_margin: int | None = None, margin: int = 0) -> np.ndarray:
    """Bounding-box label (Kervadec 2019, ``box_strat``): inside the box unlabelled, outside labelled background.

    ``margin`` grows the box by that many pixels on each side (clipped to the image). No pixel is labelled
    foreground: the box says where the object may be, not which pixels it covers. ``background_margin`` does not
    apply (the box already decides the background) and must be None.
    """
    mask = check_mask(mask)
    if background_margin is not None:
        raise ValueError("box labels fix the background themselves; leave background_margin=None")
    if margin < 0:
        raise ValueError(f"box margin must be >= 0, got {margin}")
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    y0, y1 = max(rows[0] - margin, 0), min(rows[-1] + margin, mask.shape[0] - 1)
    x0, x1 = max(cols[0] - margin, 0), min(cols[-1] + margin, mask.shape[1] - 1)
    weak = np.full(mask.shape, BACKGROUND, dtype=np.uint8)
    weak[y0:y1 + 1, x0:x1 + 1] = IGNORE
    return weak


WEAK_LABELS: dict[str, Callable[..., np.ndarray]] = {
    "erosion": erosion,
    "point": random_point,
    "centroid": centroid,
    "box": box,
}


def make_weak_label(kind: str, mask: Any, seed: Any = 0, background_margin: int | None = None,
                    **options: Any) -> np.ndarray:
    """Weak label of ``kind`` (a key of ``WEAK_LABELS``) from a binary mask (H, W) -> uint8 (H, W) (Kervadec 2019)."""
    if kind not in WEAK_LABELS:
        raise ValueError(f"unknown weak label kind {kind!r}; choose one of {', '.join(WEAK_LABELS)}")
    return WEAK_LABELS[kind](mask, seed, background_margin, **options)
