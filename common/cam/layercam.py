"""Layer-CAM: Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
IEEE TIP 2021, https://doi.org/10.1109/TIP.2021.3089943.

Each position keeps its own weight, the positive gradient there: M = sum_k relu(g_k) * A_k. Suited to
shallow layers (dense blocks 1-2), where channel-averaged gradients wash out.
"""

from __future__ import annotations

from common.cam.base import BaseCAM


class LayerCAM(BaseCAM):
    """Layer-CAM (Jiang et al. 2021): element-wise positive-gradient weighting."""

    name = "layercam"

    def raw_map(self, acts, grads, ctx):
        return (grads.clamp_min(0) * acts).sum(1)  # (B, *s)
