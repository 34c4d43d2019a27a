"""Losses for weakly supervised segmentation (Kervadec et al. 2019, https://arxiv.org/abs/1805.04628).

- :mod:`common.losses.partial_ce`: cross-entropy over the labelled pixels of a weak label.
- :mod:`common.losses.size`: the size penalty (2D and per volume) and the bounds it is given.
"""

from common.losses.partial_ce import IGNORE_INDEX, PartialCrossEntropy, labelled_fraction, partial_cross_entropy
from common.losses.size import (
    BOUND_KINDS,
    SizePenalty,
    bounds_from_masks,
    common_bounds,
    interval_penalty,
    loose_bounds,
    mask_sizes,
    object_region,
    precise_bounds,
    scale_to_shape,
    size_penalty,
    soft_size,
    tag_bounds,
    upper_bounds,
    volume_size_penalty,
)

__all__ = [
    "IGNORE_INDEX", "PartialCrossEntropy", "labelled_fraction", "partial_cross_entropy",
    "BOUND_KINDS", "SizePenalty", "bounds_from_masks", "common_bounds", "interval_penalty", "loose_bounds",
    "mask_sizes", "object_region", "precise_bounds", "scale_to_shape", "size_penalty", "soft_size", "tag_bounds",
    "upper_bounds", "volume_size_penalty",
]
