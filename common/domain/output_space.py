"""Output-space adversarial adaptation: a discriminator tells source from target segmentation maps, and the
segmenter learns to make its target maps look like source ones (the disc / cup shape prior carries across cameras).

AdaptSegNet (Tsai et al., CVPR 2018, https://arxiv.org/abs/1802.10349) and pOSAL (Wang et al., "Patch-based Output
Space Adversarial Learning for Joint Optic Disc and Cup Segmentation", IEEE TMI 2019, https://arxiv.org/abs/1902.07519)
feed the softmax maps; BEAL (Wang et al., MICCAI 2019, https://arxiv.org/abs/1906.11143) and ADVENT (Vu et al., CVPR
2019, https://arxiv.org/abs/1811.12833) feed entropy maps, whose target-domain "uncertain everywhere" look the
segmenter learns to remove.

Both losses are written so that one backward pass of their sum with the segmentation loss updates each network only
by its own objective: :func:`discriminator_loss` sees detached maps (no gradient reaches the segmenter) and
:func:`fooling_loss` calls the discriminator with detached weights (no gradient reaches the discriminator).

    maps_s, maps_t = output_maps(logits_s, "prob"), output_maps(logits_t, "prob")
    loss = ce + lam_adv * fooling_loss(disc, maps_t) + discriminator_loss(disc, maps_s, maps_t)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

SOURCE, TARGET = 1.0, 0.0  # discriminator labels
MAP_KINDS = ("prob", "entropy")


def weighted_self_information(prob: Tensor) -> Tensor:
    """ADVENT's map -p log p per class, divided by log C so that it lies in [0, 1]: (B, C, H, W) -> (B, C, H, W)."""
    c = prob.shape[1]
    return -prob * torch.log(prob.clamp_min(1e-12)) / math.log(max(c, 2))


def entropy(prob: Tensor) -> Tensor:
    """Normalised Shannon entropy of softmax maps, (B, C, H, W) -> (B, 1, H, W) in [0, 1]."""
    return weighted_self_information(prob).sum(1, keepdim=True)


def output_maps(logits: Tensor, kind: str = "prob") -> Tensor:
    """What the discriminator sees of (B, C, H, W) logits: softmax maps ("prob", pOSAL) or ADVENT's weighted
    self-information ("entropy", as BEAL's entropy discriminator)."""
    prob = torch.softmax(logits.float(), 1)
    if kind == "prob":
        return prob
    if kind == "entropy":
        return weighted_self_information(prob)
    raise ValueError(f"unknown output map {kind!r}; use one of {', '.join(MAP_KINDS)}")


def _bce(logits: Tensor, label: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


def discriminator_loss(disc: nn.Module, source_maps: Tensor, target_maps: Tensor) -> Tensor:
    """The discriminator's step: source maps -> 1, target maps -> 0 (BCE, halves averaged), on detached maps so
    that it trains the discriminator only."""
    return 0.5 * (_bce(disc(source_maps.detach()), SOURCE) + _bce(disc(target_maps.detach()), TARGET))


def frozen(disc: nn.Module, x: Tensor) -> Tensor:
    """``disc(x)`` with its parameters and buffers detached: gradients reach ``x`` only."""
    state = {k: v.detach() for k, v in (*disc.named_parameters(), *disc.named_buffers())}
    return functional_call(disc, state, (x,))


def fooling_loss(disc: nn.Module, target_maps: Tensor) -> Tensor:
    """The segmenter's adversarial step: its target maps should be judged "source" (label 1) by a fixed
    discriminator (the GAN generator loss of AdaptSegNet / pOSAL)."""
    return _bce(frozen(disc, target_maps), SOURCE)
