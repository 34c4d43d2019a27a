"""Grad-CAM: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, https://arxiv.org/abs/1610.02391.

Channel weights are the spatially averaged gradients of the target score: w_k = mean_ij dS/dA_k^ij.
"""

from __future__ import annotations

from common.cam.base import WeightedCAM, spatial_dims


class GradCAM(WeightedCAM):
    """Grad-CAM (Selvaraju et al. 2017): weights = global-average-pooled gradients."""

    name = "gradcam"

    def weights(self, acts, grads, ctx):
        return grads.mean(spatial_dims(grads))  # (B, C)
