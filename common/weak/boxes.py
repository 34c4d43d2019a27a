"""Weakly supervised object localization from class activation maps.

Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016
(https://arxiv.org/abs/1512.04150): threshold the CAM at a fraction of its maximum (they used 20 %),
take the largest connected component and its bounding box. Otsu's threshold (scikit-image) is the
parameter-free alternative.
"""

from __future__ import annotations

import numpy as np
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops


def binarize(saliency: np.ndarray, threshold: float | str) -> np.ndarray:
    """(H, W) map -> bool mask: map >= threshold x max, or Otsu's threshold with ``threshold="otsu"``."""
    s = np.asarray(saliency, dtype=np.float32)
    assert s.ndim == 2, s.shape
    if threshold == "otsu":
        if s.max() == s.min():
            return np.zeros_like(s, dtype=bool)
        return s > threshold_otsu(s)
    return s >= float(threshold) * s.max() if s.max() > 0 else np.zeros_like(s, dtype=bool)


def component_boxes(binary: np.ndarray) -> list[tuple[tuple[int, int, int, int], int]]:
    """Connected components (8-connectivity) as [((x0, y0, x1, y1), area)], largest first; x1/y1 exclusive."""
    regions = regionprops(label(np.asarray(binary, dtype=bool), connectivity=2))
    boxes = [((r.bbox[1], r.bbox[0], r.bbox[3], r.bbox[2]), int(r.area)) for r in regions]
    return sorted(boxes, key=lambda b: -b[1])


def localize(saliency: np.ndarray, threshold: float | str = 0.2):
    """(binary region, box of its largest component or None) for one map."""
    binary = binarize(saliency, threshold)
    boxes = component_boxes(binary)
    return binary, (boxes[0][0] if boxes else None)
