"""HiResCAM: Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural
networks", 2020, https://arxiv.org/abs/2011.08891.

The element-wise product of gradients and activations summed over channels, M = sum_k g_k * A_k: where Grad-CAM
averages each channel's gradient first, HiResCAM keeps it per position, so the map is exactly the per-position
contribution to the score of a model whose head is a linear layer after flattening (the paper's guarantee).
Grad-CAM element-wise (pytorch-grad-cam's ``GradCAMElementWise``) applies the ReLU to each product before the sum.
"""

from __future__ import annotations

from common.cam.base import BaseCAM


class HiResCAM(BaseCAM):
    """HiResCAM (Draelos & Carin 2020): sum_k g_k * A_k, position by position."""

    name = "hirescam"

    def raw_map(self, acts, grads, ctx):
        return (grads * acts).sum(1)  # (B, *s)


class GradCAMElementWise(BaseCAM):
    """Grad-CAM element-wise (pytorch-grad-cam): sum_k relu(g_k * A_k)."""

    name = "gradcam_elementwise"

    def raw_map(self, acts, grads, ctx):
        return (grads * acts).clamp_min(0).sum(1)  # (B, *s)
