"""Grad-CAM++: Chattopadhyay et al., "Grad-CAM++: Improved Visual Explanations for Deep Convolutional
Networks", WACV 2018, https://arxiv.org/abs/1710.11063.

Weights w_k = sum_ij alpha_k^ij relu(g_k^ij) with the closed-form alpha of the paper's Eq. 19, taken
with first-order gradients only (g^2 and g^3 stand in for the higher derivatives, exact when the score
is an exponential), as pytorch-grad-cam does. alpha is zero where the gradient is zero.
"""

from __future__ import annotations

import torch

from common.cam.base import WeightedCAM, spatial_dims


class GradCAMPlusPlus(WeightedCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018): pixel-weighted positive gradients."""

    name = "gradcampp"
    eps = 1e-6  # keeps alpha finite where 2 g^2 + (sum A) g^3 vanishes

    def weights(self, acts, grads, ctx):
        g2 = grads.pow(2)
        g3 = g2 * grads
        dims = spatial_dims(acts)
        sum_acts = acts.sum(dims, keepdim=True)  # (B, C, 1, 1[, 1])
        alpha = g2 / (2 * g2 + sum_acts * g3 + self.eps)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (alpha * grads.clamp_min(0)).sum(dims)  # (B, C)
