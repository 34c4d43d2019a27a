"""XGrad-CAM: Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
BMVC 2020, https://arxiv.org/abs/2008.02312.

Weights normalise the gradient by the activation mass: w_k = sum_ij A_k^ij g_k^ij / sum_ij A_k^ij.
"""

from __future__ import annotations

from common.cam.base import WeightedCAM, spatial_dims


class XGradCAM(WeightedCAM):
    """XGrad-CAM (Fu et al. 2020): activation-weighted gradients over the activation sum."""

    name = "xgradcam"
    eps = 1e-7  # guards channels whose activations sum to zero

    def weights(self, acts, grads, ctx):
        dims = spatial_dims(acts)
        sum_acts = acts.sum(dims, keepdim=True)  # (B, C, 1, 1[, 1])
        return (grads * acts / (sum_acts + self.eps)).sum(dims)  # (B, C)
