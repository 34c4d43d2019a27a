"""Gradient reversal (Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015,
https://arxiv.org/abs/1409.7495): the identity going forward, the gradient times -lambda going back, so a domain
classifier behind it learns to tell the domains apart while the features before it learn to hide them.

    from common.domain.grl import grad_reverse, dann_lambda
    logits = domain_classifier(grad_reverse(features, dann_lambda(progress)))
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, lam: float) -> Tensor:
        ctx.lam = lam
        return x.view_as(x)  # a new tensor node, values unchanged

    @staticmethod
    def backward(ctx, grad: Tensor):
        return -ctx.lam * grad, None


def grad_reverse(x: Tensor, lam: float = 1.0) -> Tensor:
    """``x`` unchanged; its gradient multiplied by ``-lam`` on the way back (Ganin & Lempitsky 2015)."""
    if lam < 0:
        raise ValueError(f"gradient reversal needs lambda >= 0, got {lam}")
    return _GradReverse.apply(x, float(lam))


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; ``lam`` may be changed between steps (a schedule)."""

    def __init__(self, lam: float = 1.0):
        super().__init__()
        self.lam = float(lam)

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.lam)

    def extra_repr(self) -> str:
        return f"lam={self.lam:g}"


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s ramp 2 / (1 + exp(-gamma p)) - 1 from 0 to ~1 over training progress p in [0, 1]: the domain
    signal is kept small while the classifier's features are still noise."""
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0
