"""Score-CAM: Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
Networks", CVPR-W 2020, https://arxiv.org/abs/1910.01279.

Gradient-free: every channel A_k, upsampled to the input and min-max scaled to [0, 1], masks the input;
the target score of the masked image is that channel's score, and the channel weights are the softmax of
the scores over channels (pytorch-grad-cam's formulation; the paper's baseline term cancels in the
softmax). Masks are upsampled with ``align_corners=True`` by default, as pytorch-grad-cam does; the
authors' code uses False.

Cost is one forward pass per channel (1664 at DenseNet169's block 4), so:
* masked images of all images and channels are pushed through the model in batches of ``batch_size``
  and built chunk by chunk (never all C x 3 x H x W at once);
* channels that are constant at the layer (e.g. dead after a ReLU) give an all-zero masked image, whose
  score is computed once instead of once per channel;
* convolution -> BatchNorm pairs are folded into single convolutions in an inference copy of the
  model for the masked passes (:mod:`common.models.fold`; same outputs up to float rounding);
* ``top_k`` keeps only the k channels ranked highest by mean activation (``rank_by="activation"``) or by
  Grad-CAM weight (``rank_by="gradient"``, which costs the shared backward pass); the other channels get
  weight 0. ``channels`` fixes an explicit subset instead (used to compare against the reference).
"""

from __future__ import annotations

from typing import Sequence

import torch

from common.cam.base import Context, WeightedCAM, spatial_dims
from common.cam.normalize import upsample
from common.models.fold import cached_folded_copy


class ScoreCAM(WeightedCAM):
    """Score-CAM (Wang et al. 2020): channel weights from the scores of channel-masked inputs."""

    name = "scorecam"

    def __init__(self, top_k: int | None = None, rank_by: str = "activation", channels: Sequence[int] | None = None,
                 batch_size: int = 32, align_corners: bool = True, channels_last: bool = True,
                 fold_bn: bool = True):
        if rank_by not in ("activation", "gradient"):
            raise ValueError(f"rank_by must be 'activation' or 'gradient', got {rank_by!r}")
        if top_k is not None and channels is not None:
            raise ValueError("give top_k or channels, not both")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.top_k, self.rank_by, self.batch_size = top_k, rank_by, batch_size
        self.channels = None if channels is None else list(channels)
        self.align_corners = align_corners
        self.channels_last = channels_last  # faster oneDNN/cuDNN convolutions; same arithmetic
        self.fold_bn = fold_bn

    @property
    def uses_gradients(self) -> bool:
        return self.top_k is not None and self.rank_by == "gradient"

    def _select(self, acts: torch.Tensor, grads: torch.Tensor | None) -> torch.Tensor:
        """Channel indices (B, K) to score."""
        B, C = acts.shape[:2]
        if self.channels is not None:
            return torch.as_tensor(self.channels, device=acts.device).expand(B, -1)
        if self.top_k is None or self.top_k >= C:
            return torch.arange(C, device=acts.device).expand(B, -1)
        dims = spatial_dims(acts)
        rank = acts.mean(dims) if self.rank_by == "activation" else grads.mean(dims)  # (B, C)
        return rank.topk(self.top_k, dim=1).indices

    def weights(self, acts, grads, ctx: Context):
        B, C = acts.shape[:2]
        size, dims = tuple(ctx.x.shape[2:]), spatial_dims(ctx.x)
        chan = self._select(acts, grads)  # (B, K)
        K = chan.shape[1]
        flat_acts = acts.reshape(B, C, -1)
        constant = (flat_acts.amax(2) == flat_acts.amin(2)).gather(1, chan).reshape(-1)  # (B*K,)
        scores = torch.empty(B * K, device=acts.device)
        net = ctx.model
        if self.fold_bn and not ctx.model.training:  # folding needs BN's running statistics (eval mode)
            folded, n_folded = cached_folded_copy(ctx.model)
            net = folded if n_folded else ctx.model
        if constant.any():
            zero_logits = net(self._layout(torch.zeros_like(ctx.x[:1])))  # (1, K_out): shared by all
            rows = torch.arange(B, device=acts.device).repeat_interleave(K)[constant]
            scores[constant] = ctx.scores(zero_logits.expand(len(rows), *zero_logits.shape[1:]), rows)
        todo = torch.nonzero(~constant).flatten()
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start:start + self.batch_size]
            rows = idx // K
            maps = acts[rows, chan[rows, idx % K]][:, None]  # (n, 1, *s)
            masks = upsample(maps, size, align_corners=self.align_corners)
            lo = masks.amin(dims, keepdim=True)
            hi = masks.amax(dims, keepdim=True)
            masks = (masks - lo) / (hi - lo + 1e-8)  # (n, 1, *S) in [0, 1]
            logits = net(self._layout(ctx.x[rows] * masks))  # (n, K_out)
            scores[idx] = ctx.scores(logits, rows).to(scores.dtype)
        weights = torch.zeros(B, C, device=acts.device, dtype=scores.dtype)
        weights.scatter_(1, chan, torch.softmax(scores.reshape(B, K), dim=1))
        return weights  # (B, C), zero outside the scored channels

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if not self.channels_last:
            return x
        return x.contiguous(memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d)
