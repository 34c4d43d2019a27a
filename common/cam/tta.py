"""Test-time augmentation of class activation maps: explain flipped copies, flip the maps back, average.

A single-view CAM inherits two errors that do not depend on the lesion: the upsampling places feature cell k
at ``s*k + s/2 - 0.5`` while a torchvision DenseNet's cell centre lies 1.5 px earlier (the stem's padding),
and a feature that learnt to fire beside its evidence fires beside it in a fixed direction of the image grid.
A flipped copy mirrors both, so the mean over the flips cancels them where a lesion's evidence agrees. The
same averaging is pytorch-grad-cam's ``aug_smooth`` (horizontal flip x input intensity 0.9 / 1 / 1.1, via
ttach; kept here as ``"hflip-intensity"``) and the flip inference of weakly supervised segmentation
(Ahn & Kwak 2018, https://arxiv.org/abs/1803.10464). Radiographs come in any orientation, so the
flips ``"flips"`` are label-preserving for them.

Usage::

    logits, maps = explain_tta(model, x, ("cam", "gradcam"), block_layers(model), target=1, tta="flips")
"""

from __future__ import annotations

from typing import Hashable, Mapping

import torch
from torch import nn

from common.cam.context import Target, resolve_targets
from common.cam.explain import explain
from common.cam.normalize import minmax_per_image

# name -> views, each (dims to flip, input intensity factor); the first view is always the image itself
TTA: dict[str, tuple[tuple[tuple[int, ...], float], ...]] = {
    "none": (((), 1.0),),
    "hflip": (((), 1.0), ((-1,), 1.0)),
    "flips": (((), 1.0), ((-1,), 1.0), ((-2,), 1.0), ((-2, -1), 1.0)),
    "hflip-intensity": tuple((dims, f) for dims in ((), (-1,)) for f in (1.0, 0.9, 1.1)),
}


def explain_tta(model: nn.Module, x: torch.Tensor, methods=("cam", "gradcam"),
                layers: Mapping[Hashable, nn.Module] | None = None, target: Target = None,
                head: nn.Linear | None = None, tta: str = "flips"):
    """:func:`common.cam.explain` averaged over the views of ``TTA[tta]``.

    Every view explains the class resolved on the unaugmented image (so ``target=None`` cannot switch class
    between views). Each view's maps are mapped back to the image's frame, averaged and rescaled to [0, 1].
    Returns (logits (B, K) of the unaugmented image, {method: {layer: (B, H, W)}}), as ``explain`` does.
    """
    if tta not in TTA:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose from {sorted(TTA)}")
    assert x.ndim == 4, f"expected (B, C, H, W), got {tuple(x.shape)}"
    views = TTA[tta]
    assert views[0] == ((), 1.0), "the first view must be the image itself"
    logits, total = explain(model, x, methods, layers, target=target, head=head)
    if len(views) == 1:
        return logits, total
    target = resolve_targets(logits, target)  # (B,) fixed for every view
    for dims, factor in views[1:]:
        xv = x.flip(dims) if dims else x
        _, maps = explain(model, xv * factor if factor != 1.0 else xv, methods, layers, target=target, head=head)
        for key, per_layer in maps.items():
            for name, m in per_layer.items():  # (B, H, W) in the view's frame
                total[key][name] = total[key][name] + (m.flip(dims) if dims else m)
    return logits, {k: {n: minmax_per_image(m / len(views)) for n, m in v.items()} for k, v in total.items()}
