"""Faithfulness of a saliency map by deletion and insertion curves.

Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018
(https://arxiv.org/abs/1806.07421). Deletion removes the most salient pixels first (replaced by a
baseline) and tracks the target score: a faithful map makes it fall fast (low AUC). Insertion starts
from the baseline and restores the most salient pixels first: a faithful map makes it rise fast (high AUC).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def _auc(curve: np.ndarray) -> float:
    """Trapezoidal area under a curve sampled at equal steps over [0, 1]."""
    return float(((curve[1:] + curve[:-1]) / 2).mean())


@torch.no_grad()
def deletion_insertion(score_fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, saliency: torch.Tensor,
                       steps: int = 16, baseline: torch.Tensor | None = None) -> dict:
    """Deletion and insertion curves and AUCs for one image.

    score_fn: (N, C, H, W) -> (N,) target probability. image: (C, H, W). saliency: (H, W).
    baseline: (C, H, W) image that "removes" information (default zeros); the blurred image is a
    common alternative. Pixels are ranked by saliency (ties broken by position, stable sort); step k
    of ``steps`` changes the top k/steps of them. All 2 * (steps + 1) images go through score_fn in one batch.
    """
    assert image.ndim == 3 and saliency.shape == image.shape[1:], (tuple(image.shape), tuple(saliency.shape))
    c, h, w = image.shape
    base = torch.zeros_like(image) if baseline is None else baseline
    order = torch.argsort(saliency.flatten(), descending=True, stable=True)  # most salient first
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    counts = torch.round(torch.linspace(0, h * w, steps + 1, device=image.device)).long()  # pixels changed per step
    changed = (rank.view(1, h, w) < counts.view(-1, 1, 1)).unsqueeze(1)  # (steps+1, 1, H, W)
    deleted = torch.where(changed, base, image)  # (steps+1, C, H, W)
    inserted = torch.where(changed, image, base)
    scores = score_fn(torch.cat([deleted, inserted])).float().cpu().numpy()
    deletion, insertion = scores[: steps + 1], scores[steps + 1:]
    return {"deletion_auc": _auc(deletion), "insertion_auc": _auc(insertion),
            "deletion_curve": deletion.tolist(), "insertion_curve": insertion.tolist()}
