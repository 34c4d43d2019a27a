"""The interface of a class-activation-map method, and the channel-weighted family most methods belong to.

Each method (CAM, Grad-CAM, ...) turns one layer's activations (and, if it uses them, the gradients of
the target score) into a raw (B, h, w) map; :func:`common.cam.normalize.normalize_maps` then applies the ReLU,
bilinear upsampling to the input size and per-image min-max scaling to [0, 1] -- the same post-processing as
pytorch-grad-cam (https://github.com/jacobgil/pytorch-grad-cam), whose split into a base class and small
subclasses this package follows. The pass that runs the methods (one forward, one backward for all methods and
layers) is :mod:`common.cam.onepass`; what a target means is :mod:`common.cam.context`, whose names this module
re-exports so ``from common.cam.base import resolve_targets`` keeps working. Imports run one way only:
context, normalize, hooks <- onepass <- base <- the methods <- registry <- explain.
"""

from __future__ import annotations

from typing import Hashable, Mapping

import torch
from torch import nn

from common.cam.context import (
    Context,
    Target,
    class_probabilities,
    linear_head,
    resolve_targets,
    score_coefficients,
)
from common.cam.normalize import minmax_per_image, normalize_maps
from common.cam.onepass import one_pass

__all__ = ["BaseCAM", "WeightedCAM", "spatial_dims",
           "Context", "Target", "class_probabilities", "linear_head", "resolve_targets",
           "score_coefficients", "minmax_per_image", "normalize_maps"]


class BaseCAM:
    """A CAM method: one layer's activations (+ gradients) -> raw (B, *s) map before ReLU (2D or 3D)."""

    name = "base"
    uses_gradients = True

    def applies_to(self, acts: torch.Tensor, ctx: Context) -> bool:
        """Whether the method is defined at this layer (only CAM restricts it)."""
        return True

    def raw_map(self, acts: torch.Tensor, grads: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        """acts, grads (B, C, *s) with s = (h, w) or (d, h, w) -> raw map (B, *s)."""
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, layers: nn.Module | Mapping[Hashable, nn.Module],
                 target: Target = None):
        """Maps for one method: (B, *S) for a single layer module, {name: (B, *S)} for a mapping (S = x's spatial)."""
        single = isinstance(layers, nn.Module)
        _, maps = one_pass(model, x, {self.name: self}, {0: layers} if single else dict(layers), target=target,
                           head=linear_head(model))
        return maps[self.name][0] if single else maps[self.name]


class WeightedCAM(BaseCAM):
    """Methods whose map is a channel-weighted sum of activations: sum_k w_k A_k."""

    def weights(self, acts: torch.Tensor, grads: torch.Tensor | None, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    def raw_map(self, acts, grads, ctx):
        w = self.weights(acts, grads, ctx)  # (B, C)
        assert w.shape == acts.shape[:2], f"weights {tuple(w.shape)} vs activations {tuple(acts.shape)}"
        return torch.einsum("bc,bc...->b...", w.to(acts.dtype), acts)  # (B, *s)


def spatial_dims(t: torch.Tensor) -> tuple[int, ...]:
    """The spatial dimensions of a (B, C, *s) tensor: (2, 3) in 2D, (2, 3, 4) in 3D."""
    return tuple(range(2, t.ndim))
