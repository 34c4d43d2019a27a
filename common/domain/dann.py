"""Feature-level domain-adversarial training (DANN: Ganin et al., "Domain-Adversarial Training of Neural Networks",
JMLR 2016, https://arxiv.org/abs/1505.07818): a domain classifier on the encoder's features, behind a gradient
reversal layer, so that one backward pass trains the classifier to separate the domains and the encoder to make them
inseparable.

    loss = ce + domain_adversarial_loss(domain_head, feats_source, feats_target, lam=dann_lambda(progress))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.domain.grl import grad_reverse


def domain_adversarial_loss(head: nn.Module, source: Tensor, target: Tensor, lam: float = 1.0) -> Tensor:
    """BCE of ``head`` telling source features (label 1) from target ones (label 0) through gradient reversal of
    strength ``lam``: minimising it trains ``head`` to tell them apart and the encoder (by -lam x the gradient) to
    hide the difference."""
    feats = grad_reverse(torch.cat([source, target]), lam)                       # (Bs + Bt, C, h, w)
    logits = head(feats).reshape(-1)
    labels = torch.cat([torch.ones(len(source)), torch.zeros(len(target))]).to(logits)
    return F.binary_cross_entropy_with_logits(logits, labels)


@torch.no_grad()
def domain_accuracy(head: nn.Module, source: Tensor, target: Tensor) -> float:
    """Share of images whose domain ``head`` gets right (0.5: the features hide the domain)."""
    logits = head(torch.cat([source, target])).reshape(-1)
    labels = torch.cat([torch.ones(len(source)), torch.zeros(len(target))]).to(logits)
    return float(((logits > 0).float() == labels).float().mean())
