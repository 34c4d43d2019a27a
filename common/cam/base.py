"""Shared base for class-activation-map methods: targets, the method interface, map post-processing.

Each method (CAM, Grad-CAM, ...) turns one layer's activations (and, if it uses them, the gradients of
the target score) into a raw (B, h, w) map; :func:`normalize_maps` then applies the ReLU, bilinear
upsampling to the input size and per-image min-max scaling to [0, 1] -- the same post-processing as
pytorch-grad-cam (https://github.com/jacobgil/pytorch-grad-cam), whose split into a base class and
small subclasses this package follows. The orchestration (one forward, one backward for all methods
and layers) lives in :mod:`common.cam.explain`.

Targets: for a 1-logit (binary, "abnormal") head, target class 1 scores the logit and class 0 its
negation; for a K-logit head, class c scores logit c. Default: the predicted class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence, Union

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


def normalize_maps(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """ReLU, bilinear upsampling to ``size``, min-max to [0, 1] per image: (B, h, w) -> (B, H, W) float32."""
    assert raw.ndim == 3, f"expected raw maps (B, h, w), got {tuple(raw.shape)}"
    maps = raw.float().clamp_min(0)[:, None]  # (B, 1, h, w)
    if maps.shape[-2:] != tuple(size):
        maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
    return minmax_per_image(maps[:, 0])  # (B, H, W)


def minmax_per_image(maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> each map rescaled to [0, 1]; a constant (e.g. all-zero) map becomes all zeros."""
    lo = maps.amin((1, 2), keepdim=True)
    hi = maps.amax((1, 2), keepdim=True)
    # No additive epsilon: it would shrink maps with a small range (shallow layers) away from 1.
    return (maps - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))


class BaseCAM:
    """A CAM method: one layer's activations (+ gradients) -> raw (B, h, w) map before ReLU."""

    name = "base"
    uses_gradients = True

    def applies_to(self, acts: torch.Tensor, ctx: Context) -> bool:
        """Whether the method is defined at this layer (only CAM restricts it)."""
        return True

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, layers: nn.Module | Mapping[Hashable, nn.Module],
                 target: Target = None):
        """Maps for one method: (B, H, W) for a single layer module, {name: (B, H, W)} for a mapping."""
        from common.cam.explain import explain  # explain builds on this module

        single = isinstance(layers, nn.Module)
        _, maps = explain(model, x, methods={self.name: self}, layers={0: layers} if single else layers, target=target)
        return maps[self.name][0] if single else maps[self.name]


class WeightedCAM(BaseCAM):
    """Methods whose map is a channel-weighted sum of activations: sum_k w_k A_k."""

    def weights(self, acts: torch.Tensor, grads: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    def raw_map(self, acts, grads, ctx):
        w = self.weights(acts, grads, ctx)  # (B, C)
        assert w.shape == acts.shape[:2], f"weights {tuple(w.shape)} vs activations {tuple(acts.shape)}"
        return torch.einsum("bc,bchw->bhw", w.to(acts.dtype), acts)  # (B, h, w)
