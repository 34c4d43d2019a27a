"""What a CAM explains, as a function of the model's output: one score per image, whose gradient the methods use.

A target is any callable ``score(output) -> (N,)`` of the model's output for N images (the batch itself, or for
the gradient-free methods the masked / ablated copies of its images; ``rows`` then says which image each row is a
copy of). Short forms, as before: a class index, one per image, or None (the predicted class) for a (B, K) classifier
output (:func:`common.cam.context.resolve_targets`); a list of B per-image callables, each given one image's output
as pytorch-grad-cam's targets are (https://github.com/jacobgil/pytorch-grad-cam); a class index on a segmentation
output (B, K, *spatial) means :class:`SegmentationTarget` of that class over the pixels predicted as it.

Segmentation: SEG-Grad-CAM (Vinogradova, Dibrov, Myers, "Towards Interpretable Semantic Segmentation via Gradient-
weighted Class Activation Mapping", AAAI 2020 student abstract, https://arxiv.org/abs/2002.11434) explains the sum of
a class's logits over a region of pixels -- one pixel, an object's mask, or everything predicted as the class.
This module imports no other part of ``common.cam``.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import torch


def _accepts_rows(fn: Callable) -> bool:
    try:
        return "rows" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


class SegmentationTarget:
    """SEG-Grad-CAM (Vinogradova et al. 2020): the logits of ``category`` summed over a region of each image.

    mask: (*spatial) for every image, (B, *spatial) one per image (bool or float weights), or None for the pixels
    the model predicts as ``category`` (argmax over classes; for a 1-channel output, logit > 0).
    For an (H, W) mask it scores what pytorch-grad-cam's ``SemanticSegmentationTarget(category, mask)`` scores.
    """

    def __init__(self, category: int, mask: torch.Tensor | None = None):
        self.category = int(category)
        self.mask = None if mask is None else torch.as_tensor(mask)

    def region(self, output: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The weights (N, *spatial) the logits are summed with."""
        N, K, spatial = output.shape[0], output.shape[1], tuple(output.shape[2:])
        if self.mask is None:
            logits = output.detach()
            pred = logits[:, 0] > 0 if K == 1 else logits.argmax(1) == self.category
            return pred.to(output.dtype)
        mask = self.mask.to(device=output.device, dtype=output.dtype)
        if tuple(mask.shape) == spatial:
            return mask.expand(N, *spatial)
        if mask.ndim == len(spatial) + 1 and tuple(mask.shape[1:]) == spatial:
            if rows is None and mask.shape[0] != N:
                raise ValueError(f"SegmentationTarget: {mask.shape[0]} masks for {N} images")
            return mask if rows is None else mask[rows.to(mask.device)]
        raise ValueError(f"SegmentationTarget: mask {tuple(mask.shape)} fits neither the output's spatial shape "
                         f"{spatial} nor one per image (B, *{spatial})")

    def __call__(self, output: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        if output.ndim < 3:
            raise ValueError(f"SegmentationTarget needs a segmentation output (B, K, *spatial), got "
                             f"{tuple(output.shape)}")
        if not 0 <= self.category < output.shape[1]:
            raise ValueError(f"SegmentationTarget: class {self.category} out of range for {output.shape[1]} classes")
        weights = self.region(output, rows)  # (N, *spatial)
        return (output[:, self.category] * weights).flatten(1).sum(1)  # (N,)


class PixelTarget:
    """The logit of ``category`` at one pixel / voxel ``index`` (a tuple of spatial coordinates)."""

    def __init__(self, category: int, index: Sequence[int]):
        self.category, self.index = int(category), tuple(int(i) for i in index)

    def __call__(self, output: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        if output.ndim != 2 + len(self.index):
            raise ValueError(f"PixelTarget at {self.index} needs an output (B, K, {len(self.index)} spatial dims), "
                             f"got {tuple(output.shape)}")
        return output[(slice(None), self.category, *self.index)]  # (N,)


class ClassTarget:
    """Class targets of a (B, K) head as one linear score: score_b = coef[b] . logits[b] (see ``context``)."""

    def __init__(self, coef: torch.Tensor):
        self.coef = coef  # (B, K)

    def __call__(self, output: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        coef = self.coef if rows is None else self.coef[rows]
        return (coef.to(output.dtype) * output).sum(1)  # (N,)


class Scorer:
    """Any target as ``scorer(output, rows=None) -> (N,)``, with its output's shape checked: one clear error."""

    def __init__(self, target):
        if isinstance(target, (list, tuple)) and target and all(callable(t) for t in target):
            self.per_image, self.fn, self.rows_arg = list(target), None, False
        elif callable(target):
            self.per_image, self.fn, self.rows_arg = None, target, _accepts_rows(target)
        else:
            raise TypeError(f"a target must be a class index or a callable, got {type(target).__name__}")
        self.name = getattr(target, "__name__", type(target).__name__)

    def __call__(self, output: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        N = output.shape[0]
        if self.per_image is not None:
            index = range(N) if rows is None else rows.tolist()
            if rows is None and len(self.per_image) != N:
                raise ValueError(f"{len(self.per_image)} per-image targets for a batch of {N}")
            scores = []
            for n, b in enumerate(index):
                one = self.per_image[b](output[n])
                if not torch.is_tensor(one) or one.numel() != 1:
                    _wrong(one, "a per-image target", (), tuple(output[n].shape))
                scores.append(one.reshape(()))
            score = torch.stack(scores)
        else:
            score = self.fn(output, rows=rows) if self.rows_arg else self.fn(output)
        if not torch.is_tensor(score) or tuple(score.shape) != (N,):
            _wrong(score, f"target {self.name}", (N,), tuple(output.shape))
        return score


def _wrong(score, what: str, want: tuple, out_shape: tuple):
    got = tuple(score.shape) if torch.is_tensor(score) else type(score).__name__
    of = f" of the output {out_shape}" if out_shape else ""
    raise ValueError(f"{what} returned {got}{of}; it must return one score per image, shape {want or '()'}")
