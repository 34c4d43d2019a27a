"""Scores for explanation maps and boxes against ground-truth lesion masks.

Pointing game: Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016
(https://arxiv.org/abs/1608.00507). Energy-based pointing game: Wang et al., "Score-CAM", CVPRW 2020
(https://arxiv.org/abs/1910.01279).
"""

from __future__ import annotations

import numpy as np

from common.metrics._arrays import same_shape


def pointing_game(saliency, mask, tolerance: int = 15) -> bool:
    """Hit if the saliency maximum lies within ``tolerance`` pixels of the mask (saliency, mask: (H, W)).

    A flat map (an all-negative CAM after the ReLU, say) has no maximum and is a miss; argmax would otherwise
    pick pixel (0, 0) and credit whatever lies in the top-left corner, such as the phantom's L/R marker."""
    s, m = same_shape(saliency, mask, "pointing_game")
    if s.ndim != 2:
        raise ValueError(f"expected (H, W) maps, got {s.shape}")
    m = m.astype(bool)
    if not m.any():
        raise ValueError("pointing game needs a non-empty mask")
    if not s.max() > s.min():
        return False
    y, x = np.unravel_index(int(np.argmax(s)), s.shape)
    if tolerance <= 0:
        return bool(m[y, x])
    ys, xs = np.nonzero(m)
    return bool(((ys - y) ** 2 + (xs - x) ** 2).min() <= tolerance**2)


def energy_pointing_game(saliency, mask) -> float:
    """Share of the (non-negative) saliency energy that falls inside the mask, in [0, 1]."""
    s, m = same_shape(saliency, mask, "energy_pointing_game")
    s = np.clip(s.astype(np.float64), 0, None)
    total = s.sum()
    return float(s[m.astype(bool)].sum() / total) if total > 0 else 0.0


def mask_to_box(mask) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) inclusive-exclusive bounding box of a binary mask, or None if empty."""
    m = np.asarray(mask).astype(bool)
    if not m.any():
        return None
    ys, xs = np.nonzero(m)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def box_iou(a, b) -> float:
    """IoU of two (x0, y0, x1, y1) boxes with exclusive upper corners; 0 when either is None/empty."""
    if a is None or b is None:
        return 0.0
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    iw = max(0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return float(inter / union) if union > 0 else 0.0
