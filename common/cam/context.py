"""What a class activation map explains: the target class of each image, its score, and what a method is given.

Targets: for a 1-logit (binary, "abnormal") head, target class 1 scores the logit and class 0 its negation;
for a K-logit head, class c scores logit c. Default: the predicted class. :func:`score_coefficients` is the
single place that turns a target into a score; CAM methods, the evidence diagnostic (:mod:`common.cam.evidence`)
and the reports all go through it. This module imports no other part of ``common.cam``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

Target = Union[None, int, Sequence[int], torch.Tensor]


def resolve_targets(logits: torch.Tensor, target: Target = None) -> torch.Tensor:
    """Target class per image (B,) long: given, or the predicted class (logit > 0 for a 1-logit head)."""
    assert logits.ndim == 2, f"expected logits (B, K), got {tuple(logits.shape)}"
    B, K = logits.shape
    if target is None:
        return (logits[:, 0] > 0).long() if K == 1 else logits.argmax(1)
    t = torch.as_tensor(target, dtype=torch.long, device=logits.device).reshape(-1)
    t = t.expand(B) if t.numel() == 1 else t
    n_classes = 2 if K == 1 else K
    if t.shape != (B,) or t.min() < 0 or t.max() >= n_classes:
        raise ValueError(f"target must be one class or B={B} classes in [0, {n_classes}); got {target!r}")
    return t.clone()


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(B, K) logits -> (B, classes) float probabilities: a 1-logit head as [1 - p, p] with p = sigmoid (class 1 is
    the logit's, as in ``resolve_targets``), a K-output head as the softmax over its K classes."""
    assert logits.ndim == 2, f"expected logits (B, K), got {tuple(logits.shape)}"
    logits = logits.detach().float()
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], 1)
    return torch.softmax(logits, 1)


def score_coefficients(targets: torch.Tensor, num_outputs: int) -> torch.Tensor:
    """(B, K) matrix S with score_b = S[b] . logits[b]: the single place that defines what a target means."""
    if num_outputs == 1:
        return (2.0 * targets.float() - 1.0)[:, None]  # class 1 -> +logit, class 0 -> -logit
    return F.one_hot(targets, num_outputs).float()


def linear_head(model: nn.Module) -> nn.Linear | None:
    """The final linear layer CAM weights come from (``classifier`` or ``fc``), or None."""
    for name in ("classifier", "fc", "head"):
        module = getattr(model, name, None)
        if isinstance(module, nn.Linear):
            return module
    return None


@dataclass
class Context:
    """What a method may need beyond one layer's tensors: the model, the input, the targets, the head."""

    model: nn.Module
    x: torch.Tensor  # (B, 3, H, W)
    logits: torch.Tensor  # (B, K), detached
    targets: torch.Tensor  # (B,) long
    coef: torch.Tensor  # (B, K) from score_coefficients
    head: nn.Linear | None

    def scores(self, logits: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Target scores (N,) of logits (N, K); ``rows`` maps each of the N rows to its image."""
        coef = self.coef if rows is None else self.coef[rows]
        return (coef * logits).sum(1)
