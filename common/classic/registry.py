"""The classic segmenters by name, and ``segment``: method -> foreground -> the component the prior names."""

from __future__ import annotations

from typing import Callable

import numpy as np

from common.classic.contours import chan_vese_mask, morph_acwe_mask
from common.classic.select import select_component
from common.classic.threshold import otsu_mask
from common.classic.watershed import watershed_mask

SEGMENTERS: dict[str, Callable[[np.ndarray, np.ndarray | None], np.ndarray]] = {
    "otsu": otsu_mask,
    "watershed": watershed_mask,
    "chan-vese": chan_vese_mask,
    "morph-acwe": morph_acwe_mask,
}


def segment(image: np.ndarray, method: str, prior: str, roi: np.ndarray | None = None, **select_kw) -> np.ndarray:
    """One structure's mask (H, W) bool from a grey image (H, W): ``SEGMENTERS[method]``'s bright foreground inside
    ``roi``, then :func:`common.classic.select.select_component` with ``prior``."""
    if method not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {method!r}; choose from {', '.join(SEGMENTERS)}")
    image = np.asarray(image, np.float64)
    assert image.ndim == 2, image.shape
    return select_component(SEGMENTERS[method](image, roi), image, prior, **select_kw)
