"""AdaBN (Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation", ICLR workshop 2017,
https://arxiv.org/abs/1603.04779): keep a source-trained network's weights and replace its batch-norm statistics by
the target domain's, so that each layer's target features are whitened as the source features were in training.

    adapt_batchnorm(model, target_images)   # (N, C, H, W); the model's running means / variances become the target's
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, images: Tensor, batch_size: int = 32) -> int:
    """Recompute every BatchNorm layer's running mean and variance as the average over ``images`` (B, C, H, W) of
    its batch statistics (momentum None: a cumulative average); weights and biases are untouched. Returns the
    number of BatchNorm layers reset; the model is left in eval mode."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    device = next(model.parameters()).device
    model.train()
    try:
        for chunk in images.split(batch_size):
            model(chunk.to(device))
    finally:
        for m, momentum in zip(layers, saved, strict=True):
            m.momentum = momentum
        model.eval()
    return len(layers)
