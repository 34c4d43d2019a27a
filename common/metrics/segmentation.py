"""Overlap metrics for segmentation masks."""

from __future__ import annotations

import numpy as np

from common.metrics._arrays import same_shape


def _binary(pred, target, label):
    pred, target = same_shape(pred, target, "dice/iou")
    if label is None:
        return pred.astype(bool), target.astype(bool)
    return pred == label, target == label


def dice(pred, target, label: int | None = None, empty: float = 1.0, per_image: bool = False):
    """Dice = 2|P∩T| / (|P|+|T|). ``label`` picks one class from label maps; both empty -> ``empty``.

    per_image=True treats the first axis as the batch and returns one value per image.
    """
    p, t = _binary(pred, target, label)
    if per_image:
        return np.array([dice(pi, ti, None, empty) for pi, ti in zip(p, t)], dtype=np.float64)
    denom = p.sum() + t.sum()
    return float(empty) if denom == 0 else float(2.0 * np.logical_and(p, t).sum() / denom)


def iou(pred, target, label: int | None = None, empty: float = 1.0, per_image: bool = False):
    """Jaccard index |P∩T| / |P∪T|; both empty -> ``empty``."""
    p, t = _binary(pred, target, label)
    if per_image:
        return np.array([iou(pi, ti, None, empty) for pi, ti in zip(p, t)], dtype=np.float64)
    union = np.logical_or(p, t).sum()
    return float(empty) if union == 0 else float(np.logical_and(p, t).sum() / union)
