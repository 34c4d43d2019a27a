"""Size prior: the LV cavity's area in a slice lies in a known range, as the size penalty of ``common.losses.size``.

Kervadec et al., "Constrained-CNN losses for weakly supervised segmentation", MedIA 2019
(https://arxiv.org/abs/1805.04628), bound the soft size (sum of softmax probabilities) by [a, b] with a quadratic
penalty. There the bounds replace the missing pixel labels; as a prior of domain knowledge they come from anatomy (the
range of cavity areas a clinician expects at this resolution, here measured on the labelled volumes and widened by a
margin) and apply to any image, labelled or not. On an unlabelled slice it is not known whether the cavity is cut at
all (above the valve or below the apex it is not), so such a slice gets [0, b]: the prior forbids over-segmentation
everywhere and, on labelled slices where the cavity is present, under-segmentation too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from common.losses.size import size_penalty, tag_bounds


def size_range(masks: np.ndarray, margin: float = 0.2) -> tuple[float, float]:
    """[a, b]: the smallest and largest non-zero area of bool masks (N, H, W), widened by ``margin`` (0.2: a 20 %
    lower a, a 20 % higher b). ValueError when no mask holds the structure."""
    masks = np.asarray(masks, bool)
    assert masks.ndim == 3, f"masks must be (N, H, W), got {masks.shape}"
    areas = masks.reshape(len(masks), -1).sum(1)
    areas = areas[areas > 0]
    if not len(areas):
        raise ValueError("no mask holds the structure: no size range to learn")
    return float(areas.min() * (1 - margin)), float(areas.max() * (1 + margin))


def size_bounds(present: Tensor | None, n: int, low: float, high: float) -> Tensor:
    """(n, 2) bounds: [low, high] where the structure is ``present``, [0, 0] where it is known absent; ``present``
    None (unlabelled images): [0, high] for every image."""
    if present is None:
        return torch.tensor([[0.0, float(high)]]).repeat(n, 1)
    assert present.shape == (n,), f"present must be ({n},), got {tuple(present.shape)}"
    return tag_bounds(present, low, high)


def size_prior_loss(logits: Tensor, cls: int, low: float, high: float, present: Tensor | None = None) -> Tensor:
    """Kervadec's size penalty (mean over images of C(V) / (H W)) of class ``cls`` with :func:`size_bounds`;
    logits (B, K, H, W)."""
    bounds = size_bounds(None if present is None else present.cpu(), logits.shape[0], low, high)
    return size_penalty(logits.float(), bounds.to(logits.device), cls)
