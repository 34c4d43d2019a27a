"""The one forward and one backward pass every CAM method shares: configured methods in, maps out.

The model is frozen (eval mode, no parameter gradients, full fp32 precision) and hooked on all layers at once;
the gradient methods share a single backward pass that stops at the first hooked layer and computes no weight
gradients. Score-CAM and Ablation-CAM add their masked / ablated forward passes afterwards. Every flag and hook is
restored on return or on an exception. :func:`common.cam.explain` (method names, default layers) and
``BaseCAM.__call__`` both run it; it takes any object with the method interface (``uses_gradients``,
``applies_to``, ``raw_map``: see :class:`common.cam.base.BaseCAM`), so it needs nothing from the method modules and
they can import it.

Inputs are images (B, C, H, W) or volumes (B, C, D, H, W); the model's output is class logits (B, K) or a
segmentation (B, K, *spatial); the target is a class or any callable of that output (:mod:`common.cam.targets`).
A token model's layer output (B, tokens, C) becomes (B, C, h, w) through ``reshape_transform``, applied to the
activations and to their gradients (as pytorch-grad-cam's ``reshape_transform``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Hashable, Mapping, Union

import torch
from torch import nn

from common.cam.context import Context, Target, make_scorer
from common.cam.hooks import LayerCapture, frozen
from common.cam.normalize import normalize_maps

ReshapeTransform = Union[None, Callable, Mapping[Hashable, Callable]]


def _reshaper(reshape_transform: ReshapeTransform, name: Hashable):
    if reshape_transform is None:
        return None
    if isinstance(reshape_transform, Mapping):
        return reshape_transform.get(name)
    return reshape_transform


def one_pass(model: nn.Module, x: torch.Tensor, methods: Mapping[str, object], layers: Mapping[Hashable, nn.Module],
             target: Target = None, head: nn.Linear | None = None, raw: bool = False,
             reshape_transform: ReshapeTransform = None):
    """Maps of each configured method at each layer for a batch x (B, C, H, W) or (B, C, D, H, W).

    Returns (output detached, {method key: {layer name: maps (B, *S) float32 in [0, 1]}}) with S = x's spatial
    shape, the layers in the order of ``layers``; with ``raw=True`` also {method key: {layer name: raw maps (B, *s)
    float32}} at the layer's resolution, before ReLU, upsampling and min-max. A method with no layer it applies to
    (CAM without the pooled features) is a ValueError; so is a target whose score is not one number per image.
    """
    assert x.ndim in (4, 5), f"expected (B, C, H, W) or (B, C, D, H, W), got {tuple(x.shape)}"
    if not methods:
        raise ValueError("no CAM method given")
    needs_grad = any(m.uses_gradients for m in methods.values())
    maps: dict[str, dict[Hashable, torch.Tensor]] = {key: {} for key in methods}
    raws: dict[str, dict[Hashable, torch.Tensor]] = {key: {} for key in methods}
    with frozen(model):
        with LayerCapture(layers, track_grad=needs_grad) as capture:
            with torch.set_grad_enabled(needs_grad):
                output = model(x)
                if not torch.is_tensor(output) or output.ndim < 2 or output.shape[0] != x.shape[0]:
                    got = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
                    raise ValueError(f"need the model's output (B, K) or (B, K, *spatial) for B={x.shape[0]}, "
                                     f"got {got}")
                scorer, targets, coef = make_scorer(output.detach(), target)
                score = scorer(output)  # (B,), shape checked by the scorer
            # One backward for every layer; the graph is freed right after.
            grads = capture.gradients(score.sum()) if needs_grad else {}
            capture.check_unmodified()
        acts = {name: capture.activations[name].detach() for name in layers}  # the caller's layer order
        for name in acts:
            reshape = _reshaper(reshape_transform, name)
            if reshape is not None:
                acts[name] = reshape(acts[name])
                if name in grads:
                    grads[name] = reshape(grads[name])
        ctx = Context(model, x.detach(), output.detach(), targets, coef, head, score_fn=scorer)
        size = tuple(x.shape[2:])
        with torch.no_grad():
            for key, method in methods.items():
                for name, a in acts.items():
                    assert a.ndim == x.ndim, (f"layer {name!r} output must be (B, C, *s) with {x.ndim - 2} spatial "
                                              f"dims like the input, got {tuple(a.shape)} (token layers need "
                                              "reshape_transform)")
                    layer_ctx = replace(ctx, layer=layers[name])
                    if method.applies_to(a, layer_ctx):
                        r = method.raw_map(a, grads.get(name), layer_ctx)  # (B, *s)
                        maps[key][name] = normalize_maps(r, size)
                        if raw:
                            raws[key][name] = r.detach().float()
                if not maps[key]:
                    raise ValueError(f"{key}: no hooked layer qualifies (CAM needs the features the linear head pools "
                                     "and a class target)")
    return (ctx.logits, maps, raws) if raw else (ctx.logits, maps)
