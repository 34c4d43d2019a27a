"""CAM: Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016,
https://arxiv.org/abs/1512.04150.

Closed form: the target's linear-head weights times the features the head pools,
M = sum_k w_k A_k (bias left out, as in the paper). Only defined at the layer whose global average
pool feeds the linear head -- for DenseNetClassifier, ``model.relu`` (block 4). There the gradient of
the score w.r.t. A_k is w_k / (h w) at every position, so Grad-CAM gives the same map up to scale.
A model pooling its class map by log-sum-exp instead (``DenseNetClassifier(pooling="lse")``, whose
``head_logits`` this module uses) keeps both facts: the map is still sum_k w_k A_k (the class map it
pools, less the bias), and the positional gradients w_k softmax(r s) still average to w_k / (h w).
"""

from __future__ import annotations

import torch

from common.cam.base import Context, WeightedCAM, spatial_dims


class CAM(WeightedCAM):
    """CAM (Zhou et al. 2016): head weights x pooled features; no gradients."""

    name = "cam"
    uses_gradients = False

    def applies_to(self, acts: torch.Tensor, ctx: Context) -> bool:
        # Checked numerically rather than by module identity: the layer is the right one exactly when
        # pooling its output and applying the head reproduces the logits.
        if ctx.head is None or ctx.coef is None or acts.ndim < 3 or acts.shape[1] != ctx.head.in_features:
            return False
        head_logits = getattr(ctx.model, "head_logits", None)  # DenseNetClassifier: average or log-sum-exp pool
        logits = head_logits(acts) if head_logits is not None else ctx.head(acts.mean(spatial_dims(acts)))  # (B, K)
        tol = 1e-4 * (1.0 + ctx.logits.abs().max().item())
        return logits.shape == ctx.logits.shape and torch.allclose(logits, ctx.logits, rtol=1e-4, atol=tol)

    def weights(self, acts, grads, ctx):
        return ctx.coef @ ctx.head.weight.to(acts.dtype)  # (B, K) @ (K, C) -> (B, C)
