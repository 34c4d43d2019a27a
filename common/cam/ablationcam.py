"""Ablation-CAM: Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
Gradient-free Localization", WACV 2020,
https://openaccess.thecvf.com/content_WACV_2020/papers/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.pdf

Gradient-free: channel k's weight is the relative drop of the target score when that channel of the layer is
ablated, w_k = (y - y_k) / y. The ablated copies re-run the model with the layer's output replaced by the
image's own activations with channel k set to 0 (:func:`common.cam.hooks.replaced_output`), ``batch_size`` copies
per forward pass, one pass per channel in all. Where the layer's activations can be negative (no ReLU before it),
zero is not "off", and the channel is set far below the minimum instead (min - 1e7, pytorch-grad-cam's
value; the reference lowers it further for each later copy of a batch, which changes nothing once the channel is
that far below the rest). Same weights as pytorch-grad-cam's ``AblationCAM`` with all channels ablated.
"""

from __future__ import annotations

import torch

from common.cam.base import Context, WeightedCAM
from common.cam.hooks import replaced_output

FAR_BELOW = 1e7  # how far below the layer's minimum a channel is set where zero is not its "off" value


class AblationCAM(WeightedCAM):
    """Ablation-CAM (Desai & Ramaswamy 2020): weights = relative score drop when a channel is ablated."""

    name = "ablationcam"
    uses_gradients = False

    def __init__(self, batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def weights(self, acts, grads, ctx: Context):
        if ctx.layer is None:
            raise ValueError("Ablation-CAM needs the layer it explains (run it through explain / one_pass)")
        B, C = acts.shape[:2]
        original = ctx.scores(ctx.logits).to(acts.dtype)  # (B,)
        ablated = torch.empty(B, C, dtype=acts.dtype, device=acts.device)
        for b in range(B):
            lowest = acts[b].min()
            value = 0.0 if lowest == 0 else float(lowest) - FAR_BELOW
            for start in range(0, C, self.batch_size):
                chans = torch.arange(start, min(start + self.batch_size, C), device=acts.device)
                n = len(chans)
                copies = acts[b:b + 1].repeat(n, *([1] * (acts.ndim - 1)))  # (n, C, *s)
                copies[torch.arange(n, device=acts.device), chans] = value
                rows = torch.full((n,), b, dtype=torch.long, device=acts.device)
                with replaced_output(ctx.layer, lambda out, c=copies: c):
                    out = ctx.model(ctx.x[b:b + 1].expand(n, *ctx.x.shape[1:]))
                ablated[b, chans] = ctx.scores(out, rows).to(acts.dtype)
        return (original[:, None] - ablated) / original[:, None]  # (B, C)
