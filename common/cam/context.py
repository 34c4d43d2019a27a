"""What a class activation map explains: the target class of each image, its score, and what a method is given.

Targets: for a 1-logit (binary, "abnormal") head, target class 1 scores the logit and class 0 its negation;
for a K-logit head, class c scores logit c. Default: the predicted class. :func:`score_coefficients` is the
single place that turns a class target into a score; CAM methods, the evidence diagnostic
(:mod:`common.cam.evidence`) and the reports all go through it. Any other target (a segmentation region, a pixel,
a function of the output) is a callable of :mod:`common.cam.targets`; :func:`make_scorer` turns every kind into one
``scorer(output, rows) -> (N,)``. This module imports only :mod:`common.cam.targets` of ``common.cam``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from common.cam.targets import ClassTarget, Scorer, SegmentationTarget

# a class (None: the predicted one), one class per image, a callable of the output, or one callable per image
Target = Union[None, int, Sequence[int], torch.Tensor, Callable, Sequence[Callable]]


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


def is_class_target(target: Target) -> bool:
    """Whether ``target`` is a class index (or None / one per image) rather than a callable."""
    if target is None or isinstance(target, (int, torch.Tensor)):
        return True
    return isinstance(target, Sequence) and not isinstance(target, str) and not any(callable(t) for t in target)


def make_scorer(output: torch.Tensor, target: Target = None):
    """(scorer, targets (B,) long or None, coef (B, K) or None) for the model's ``output`` (detached is fine).

    On a (B, K) output a class target keeps its meaning (``resolve_targets``, ``score_coefficients``); on a
    segmentation output (B, K, *spatial) one class index means :class:`SegmentationTarget` of that class over the
    pixels predicted as it; a callable (or one per image) is used as given.
    """
    if is_class_target(target):
        if output.ndim == 2:
            targets = resolve_targets(output, target)
            coef = score_coefficients(targets, output.shape[1]).to(output.dtype)
            return Scorer(ClassTarget(coef)), targets, coef
        if isinstance(target, int) or (torch.is_tensor(target) and target.numel() == 1):
            return Scorer(SegmentationTarget(int(target))), None, None
        raise ValueError(f"the model's output is {tuple(output.shape)}, not class logits (B, K): give one class index "
                         "(its predicted region is explained) or a target callable such as SegmentationTarget")
    return Scorer(target), None, None


@dataclass
class Context:
    """What a method may need beyond one layer's tensors: the model, the input, the targets, the head."""

    model: nn.Module
    x: torch.Tensor  # (B, C, *spatial): (B, C, H, W) or (B, C, D, H, W)
    logits: torch.Tensor  # the model's output, detached: (B, K) logits, or (B, K, *spatial) for a segmenter
    targets: torch.Tensor | None  # (B,) long for class targets, None for a target callable
    coef: torch.Tensor | None  # (B, K) from score_coefficients, None for a target callable
    head: nn.Linear | None
    score_fn: Callable | None = None  # (output (N, ...), rows (N,) | None) -> (N,), from make_scorer
    layer: nn.Module | None = None  # the layer a method is being run on (Ablation-CAM replaces its output)

    def scores(self, logits: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Target scores (N,) of outputs (N, ...); ``rows`` maps each of the N rows to its image."""
        if self.score_fn is not None:
            return self.score_fn(logits, rows)
        coef = self.coef if rows is None else self.coef[rows]
        return (coef * logits).sum(1)
