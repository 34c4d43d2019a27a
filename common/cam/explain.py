"""Class activation maps for several methods and layers from ONE forward and ONE backward pass.

Methods: CAM (Zhou et al. 2016, https://arxiv.org/abs/1512.04150), Grad-CAM (Selvaraju et al. 2017,
https://arxiv.org/abs/1610.02391) and the variants in :data:`common.cam.registry.METHODS`.

:func:`explain` resolves method names and default layers; the pass itself (the model frozen and hooked on all
layers at once, one backward shared by the gradient methods, every flag and hook restored) is
:func:`common.cam.onepass.one_pass`.

Usage::

    logits, maps = explain(model, x, methods=("cam", "gradcam"), layers=block_layers(model))
    maps["gradcam"][4]   # (B, H, W) float32 in [0, 1] at input resolution
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence, Union

import torch
from torch import nn

from common.cam.base import BaseCAM
from common.cam.context import Target, linear_head
from common.cam.onepass import one_pass
from common.cam.registry import METHODS

MethodSpec = Union[str, BaseCAM]


def _methods(methods: Sequence[MethodSpec] | Mapping[str, MethodSpec]) -> dict[str, BaseCAM]:
    """Names or instances -> {key: instance}; a mapping lets two settings of one method coexist."""
    items = methods.items() if isinstance(methods, Mapping) else ((getattr(m, "name", m), m) for m in methods)
    out = {}
    for key, spec in items:
        if isinstance(spec, str):
            if spec not in METHODS:
                raise ValueError(f"unknown CAM method {spec!r}; choose from {sorted(METHODS)}")
            spec = METHODS[spec]()
        out[key] = spec
    if not out:
        raise ValueError("no CAM method given")
    return out


def explain(model: nn.Module, x: torch.Tensor,
            methods: Sequence[MethodSpec] | Mapping[str, MethodSpec] = ("cam", "gradcam"),
            layers: Mapping[Hashable, nn.Module] | None = None, target: Target = None, head: nn.Linear | None = None):
    """Maps of each method at each layer for a batch (Zhou 2016 / Selvaraju 2017 and variants).

    model: returns logits (B, K); K = 1 is a binary head (target 1 = the logit, 0 = its negation).
    x: (B, C, H, W) model input on the model's device.
    methods: names from METHODS or configured instances (e.g. ``ScoreCAM(top_k=64)``), or {key: method}.
    layers: {name: module}; default ``model.cam_layers()`` (the four dense blocks of a DenseNetClassifier).
    target: None (predicted class), one class for all images, or one per image.
    head: the linear layer CAM uses; default ``model.classifier`` / ``model.fc``.

    Returns (logits (B, K) detached, {method key: {layer name: maps (B, H, W) float32 in [0, 1]}}).
    CAM appears only at the layer(s) whose pooled output feeds the head; asking for CAM where no
    such layer is hooked raises ValueError.
    """
    assert x.ndim == 4, f"expected (B, C, H, W), got {tuple(x.shape)}"
    methods = _methods(methods)
    if layers is None:
        if not hasattr(model, "cam_layers"):
            raise ValueError("give layers={name: module}; this model has no cam_layers()")
        layers = model.cam_layers()
    return one_pass(model, x, methods, layers, target=target, head=head if head is not None else linear_head(model))
