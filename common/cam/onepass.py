"""The one forward and one backward pass every CAM method shares: configured methods in, maps out.

The model is frozen (eval mode, no parameter gradients, full fp32 precision) and hooked on all layers at once;
the gradient methods share a single backward pass that stops at the first hooked layer and computes no weight
gradients. Score-CAM adds its masked forward passes afterwards. Every flag and hook is restored on return or on
an exception. :func:`common.cam.explain` (method names, default layers) and ``BaseCAM.__call__`` both run it; it
takes any object with the method interface (``uses_gradients``, ``applies_to``, ``raw_map``: see
:class:`common.cam.base.BaseCAM`), so it needs nothing from the method modules and they can import it.
"""

from __future__ import annotations

from typing import Hashable, Mapping

import torch
from torch import nn

from common.cam.context import Context, Target, resolve_targets, score_coefficients
from common.cam.hooks import LayerCapture, frozen
from common.cam.normalize import normalize_maps


def one_pass(model: nn.Module, x: torch.Tensor, methods: Mapping[str, object], layers: Mapping[Hashable, nn.Module],
             target: Target = None, head: nn.Linear | None = None):
    """Maps of each configured method at each layer for a batch x (B, C, H, W).

    Returns (logits (B, K) detached, {method key: {layer name: maps (B, H, W) float32 in [0, 1]}}), the layers in
    the order of ``layers``; a method with no layer it applies to (CAM without the pooled features) is a ValueError.
    """
    assert x.ndim == 4, f"expected (B, C, H, W), got {tuple(x.shape)}"
    if not methods:
        raise ValueError("no CAM method given")
    needs_grad = any(m.uses_gradients for m in methods.values())
    maps: dict[str, dict[Hashable, torch.Tensor]] = {key: {} for key in methods}
    with frozen(model):
        with LayerCapture(layers, track_grad=needs_grad) as capture:
            with torch.set_grad_enabled(needs_grad):
                logits = model(x)
            assert logits.ndim == 2 and logits.shape[0] == x.shape[0], f"need logits (B, K), got {tuple(logits.shape)}"
            targets = resolve_targets(logits.detach(), target)
            coef = score_coefficients(targets, logits.shape[1]).to(logits.dtype)
            # One backward for every layer; the graph is freed right after.
            grads = capture.gradients((coef * logits).sum()) if needs_grad else {}
            capture.check_unmodified()
        acts = {name: capture.activations[name].detach() for name in layers}  # the caller's layer order
        ctx = Context(model, x.detach(), logits.detach(), targets, coef, head)
        with torch.no_grad():
            for key, method in methods.items():
                for name, a in acts.items():
                    assert a.ndim == 4, f"layer {name!r} output must be (B, C, h, w), got {tuple(a.shape)}"
                    if method.applies_to(a, ctx):
                        raw = method.raw_map(a, grads.get(name), ctx)  # (B, h, w)
                        maps[key][name] = normalize_maps(raw, tuple(x.shape[-2:]))
                if not maps[key]:
                    raise ValueError(f"{key}: no hooked layer qualifies (CAM needs the features the linear head pools)")
    return ctx.logits, maps
