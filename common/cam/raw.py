"""Keep the raw maps a CAM method computes (before ReLU, upsampling and min-max), for saving beside the drawn ones.

``explain`` hands each method one layer at a time, in the order of its ``layers`` mapping, and under test-time
augmentation (:mod:`common.cam.tta`) the image's own view first; so a method's first ``len(layers)`` raw maps are
those of the image itself, one per layer in that order (:meth:`KeepRaw.by_layer`).
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch

from common.cam.base import BaseCAM


class KeepRaw(BaseCAM):
    """A CAM method that also keeps its raw maps (B, h, w) at the layer's resolution, on the CPU."""

    def __init__(self, method: BaseCAM):
        self.method, self.name, self.raw = method, method.name, []

    @property
    def uses_gradients(self) -> bool:
        return self.method.uses_gradients

    def applies_to(self, acts, ctx) -> bool:
        return self.method.applies_to(acts, ctx)

    def raw_map(self, acts, grads, ctx):
        raw = self.method.raw_map(acts, grads, ctx)  # (B, h, w)
        self.raw.append(raw.detach().float().cpu())
        return raw

    def by_layer(self, layers: Sequence[Hashable]) -> dict[Hashable, torch.Tensor]:
        """{layer: raw maps (B, h, w)} of the unaugmented image, for the layers the method produced maps at (in
        the order it was run on them)."""
        layers = list(layers)
        assert len(self.raw) >= len(layers), f"{len(self.raw)} raw maps kept for {len(layers)} layers"
        return dict(zip(layers, self.raw, strict=False))  # later raw maps: the --tta views
