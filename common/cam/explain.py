"""Class activation maps for several methods and layers from ONE forward and ONE backward pass.

Methods: CAM (Zhou et al. 2016, https://arxiv.org/abs/1512.04150), Grad-CAM (Selvaraju et al. 2017,
https://arxiv.org/abs/1610.02391) and the variants in :data:`common.cam.registry.METHODS`.

:func:`explain` resolves method names and default layers; the pass itself (the model frozen and hooked on all
layers at once, one backward shared by the gradient methods, every flag and hook restored) is
:func:`common.cam.onepass.one_pass`.

Usage::

    logits, maps = explain(model, x, methods=("cam", "gradcam"), layers=block_layers(model))
    maps["gradcam"][4]   # (B, H, W) float32 in [0, 1] at input resolution
    # a segmenter (SEG-Grad-CAM): the LV logits summed over the predicted LV, maps and raw maps of two layers
    out, maps, raw = explain(enet, x, ("gradcam", "hirescam"), {"down2": enet.down2, "stage3": enet.stage3},
                             target=SegmentationTarget(1), raw=True)
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence, Union

import torch
from torch import nn

from common.cam.base import BaseCAM
from common.cam.context import Target, linear_head
from common.cam.onepass import ReshapeTransform, one_pass
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
            layers: Mapping[Hashable, nn.Module] | None = None, target: Target = None, head: nn.Linear | None = None,
            raw: bool = False, reshape_transform: ReshapeTransform = None):
    """Maps of each method at each layer for a batch (Zhou 2016 / Selvaraju 2017 and variants).

    model: returns logits (B, K) (K = 1 is a binary head: target 1 = the logit, 0 = its negation) or a
        segmentation (B, K, *spatial).
    x: (B, C, H, W) or (B, C, D, H, W) model input on the model's device; maps are images or volumes to match.
    methods: names from METHODS or configured instances (e.g. ``ScoreCAM(top_k=64)``), or {key: method}.
    layers: {name: module}; default ``model.cam_layers()`` (the four dense blocks of a DenseNetClassifier).
    target: None (predicted class), one class for all images, or one per image; or a callable of the output
        returning one score per image (:mod:`common.cam.targets`: ``SegmentationTarget``, ``PixelTarget``), or B
        per-image callables as pytorch-grad-cam takes them. On a segmentation output a class index c means
        ``SegmentationTarget(c)``: the logits of c summed over the pixels predicted as c.
    head: the linear layer CAM uses; default ``model.classifier`` / ``model.fc``.
    raw: also return the raw maps (B, *s) at each layer's resolution, before ReLU, upsampling and min-max.
    reshape_transform: a function (or {layer name: function}) turning a token layer's output (B, N, C) into
        (B, C, h, w), applied to its activations and gradients.

    Returns (output detached, {method key: {layer name: maps (B, *S) float32 in [0, 1]}}), and with ``raw=True``
    the raw maps {method key: {layer name: (B, *s)}} as a third element.
    CAM appears only at the layer(s) whose pooled output feeds the head; asking for CAM where no
    such layer is hooked raises ValueError.
    """
    assert x.ndim in (4, 5), f"expected (B, C, H, W) or (B, C, D, H, W), got {tuple(x.shape)}"
    methods = _methods(methods)
    if layers is None:
        if not hasattr(model, "cam_layers"):
            raise ValueError("give layers={name: module}; this model has no cam_layers()")
        layers = model.cam_layers()
    return one_pass(model, x, methods, layers, target=target, head=head if head is not None else linear_head(model),
                    raw=raw, reshape_transform=reshape_transform)
