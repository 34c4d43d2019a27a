"""Partial cross-entropy: cross-entropy over the labelled pixels of a weak label only.

Kervadec et al., "Constrained-CNN losses for weakly supervised segmentation", Medical Image Analysis 2019,
https://arxiv.org/abs/1805.04628, Eq. (2) and the ``CrossEntropy`` loss of github.com/LIVIAETS/SizeLoss_WSS.

Weak labels use the encoding of :mod:`common.weak.labels`: a class index (0 = background, 1 = foreground, ...)
for labelled pixels and ``IGNORE_INDEX`` (255) for unlabelled ones.

    loss = partial_cross_entropy(logits, weak)   # logits (B, C, H, W), weak (B, H, W) long
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

IGNORE_INDEX = 255


def partial_cross_entropy(logits: Tensor, weak: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Partial CE (Kervadec et al. 2019, Eq. 2): mean of -log p(label) over labelled pixels of the whole batch.

    ``logits`` (B, C, H, W) are raw network outputs; ``weak`` (B, H, W) holds class indices or ``ignore_index``.
    Returns a scalar; 0 (with a zero gradient, not NaN) when no pixel of the batch is labelled.
    """
    assert logits.dim() == 4, f"logits must be (B, C, H, W), got {tuple(logits.shape)}"
    b, c, h, w = logits.shape
    assert weak.shape == (b, h, w), f"weak label must be (B, H, W) = {(b, h, w)}, got {tuple(weak.shape)}"
    assert not weak.is_floating_point(), "weak label must hold integer class indices"
    labelled = weak != ignore_index                              # (B, H, W)
    bad = labelled & ((weak < 0) | (weak >= c))
    assert not bad.any(), f"weak label has values outside [0, {c}) other than ignore_index={ignore_index}"
    # log_softmax instead of the reference's log(p + 1e-10): same value, no underflow for confident logits.
    total = F.cross_entropy(logits, weak.long(), ignore_index=ignore_index, reduction="sum")
    # Pixels of the batch are pooled, as in the reference (loss /= mask.sum()); clamp keeps an all-unlabelled
    # batch at 0 where F.cross_entropy(reduction="mean") would return NaN.
    return total / labelled.sum().clamp(min=1)


class PartialCrossEntropy(nn.Module):
    """Module form of :func:`partial_cross_entropy` (Kervadec et al. 2019, Eq. 2)."""

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, weak: Tensor) -> Tensor:
        return partial_cross_entropy(logits, weak, self.ignore_index)


def labelled_fraction(weak: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Fraction of labelled pixels per image, (B,); handy to log how weak the supervision is."""
    assert weak.dim() == 3, f"weak label must be (B, H, W), got {tuple(weak.shape)}"
    return (weak != ignore_index).flatten(1).float().mean(dim=1)


__all__ = ["IGNORE_INDEX", "partial_cross_entropy", "PartialCrossEntropy", "labelled_fraction"]
