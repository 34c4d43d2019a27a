"""Size penalty for weakly supervised segmentation, and the bounds it is given.

Kervadec, Dolz, Tang, Granger, Boykov, Ben Ayed, "Constrained-CNN losses for weakly supervised segmentation",
Medical Image Analysis 2019, https://arxiv.org/abs/1805.04628, Eq. (5); reference code
github.com/LIVIAETS/SizeLoss_WSS (``NaivePenalty``, ``BatchNaivePenalty`` and the bounds of ``bounds.py``).

The predicted size of the target class is the sum of its softmax probabilities, V = sum_p S_p. It is pushed into
[a, b] by a quadratic penalty, zero inside the interval:

    C(V) = (V - b)^2 if V > b,   (V - a)^2 if V < a,   0 otherwise.

Normalisation: each image's C(V) is divided by its pixel count H*W and the result averaged over the batch.
This is what the reference's ``NaivePenalty`` does (``res / (w * h)`` then ``.mean()``); without it the penalty
grows with the square of the image area and swamps the cross-entropy. The reference then weights the term by
lambda = 1e-2 (``acdc.make``); that weight is left to the caller.

Bounds are a float tensor (B, 2) of [a, b] per image, in pixels.

    loss = ce + 1e-2 * size_penalty(logits, common_bounds(present, (H, W)))   # logits (B, C, H, W)
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REFERENCE_SHAPE = (256, 256)  # image size for which Kervadec's common bounds [60, 2000] (ACDC LV) were set


def soft_size(logits: Tensor, cls: int = 1, region: Tensor | None = None) -> Tensor:
    """Soft size of class ``cls`` per image (Kervadec 2019, Eq. 4): sum of its softmax probabilities, (B,).

    ``region`` (B, H, W) bool, when given, limits the sum to those pixels (see :func:`object_region`).
    """
    assert logits.dim() == 4, f"logits must be (B, C, H, W), got {tuple(logits.shape)}"
    assert 0 <= cls < logits.shape[1], f"class {cls} out of range for {logits.shape[1]} channels"
    prob = F.softmax(logits, dim=1)[:, cls]                          # (B, H, W)
    if region is not None:
        assert region.shape == prob.shape, f"region must be {tuple(prob.shape)}, got {tuple(region.shape)}"
        prob = prob * region.to(prob.dtype)
    return prob.sum(dim=(1, 2))                                      # (B,)


def object_region(weak: Tensor, background: int = 0) -> Tensor:
    """Where the object may lie: every pixel the weak label (B, H, W) does not mark ``background``.

    Seed labels (eroded mask, points) mark no background by default, so this is the whole image and changes
    nothing (with a background margin it is the unlabelled band plus the seeds). A box marks everything
    outside it: a size measured over the whole image can then be met by a faint
    haze of probability spread over the many background pixels (each below 0.5, so no pixel is segmented)
    -- the cross-entropy there barely objects. Measured inside the box only, the size has to be reached
    where the object is. This is the box prior of Kervadec et al., "Bounding boxes for weakly supervised
    segmentation: Global constraints get close to full supervision", MIDL 2020 (https://arxiv.org/abs/2004.06816),
    whose emptiness constraint forbids any foreground outside the box.
    """
    assert weak.dim() == 3, f"weak label must be (B, H, W), got {tuple(weak.shape)}"
    return weak != background


def _check_bounds(bounds: Tensor, n: int) -> None:
    assert bounds.shape == (n, 2), f"bounds must be ({n}, 2) = [low, high] per item, got {tuple(bounds.shape)}"
    assert bool((bounds[:, 0] <= bounds[:, 1]).all()), "every bound needs low <= high"


def interval_penalty(size: Tensor, bounds: Tensor) -> Tensor:
    """Quadratic interval penalty C(V) of Kervadec 2019, Eq. (5), element-wise: size (N,), bounds (N, 2) -> (N,)."""
    assert size.dim() == 1, f"size must be (N,), got {tuple(size.shape)}"
    _check_bounds(bounds, size.shape[0])
    low, high = bounds[:, 0].to(size), bounds[:, 1].to(size)
    # With low <= high at most one of the two terms is non-zero, which gives the three branches of Eq. (5).
    return F.relu(size - high) ** 2 + F.relu(low - size) ** 2


def size_penalty(logits: Tensor, bounds: Tensor, cls: int = 1, region: Tensor | None = None) -> Tensor:
    """Size penalty (Kervadec 2019, Eq. 5): mean over images of C(V) / (H*W); logits (B, C, H, W), bounds (B, 2).

    ``region`` (B, H, W) bool: measure V only there (:func:`object_region`)."""
    _, _, h, w = logits.shape
    return (interval_penalty(soft_size(logits, cls, region), bounds) / (h * w)).mean()


class SizePenalty(nn.Module):
    """Module form of :func:`size_penalty` (Kervadec et al. 2019, Eq. 5)."""

    def __init__(self, cls: int = 1):
        super().__init__()
        self.cls = cls

    def forward(self, logits: Tensor, bounds: Tensor) -> Tensor:
        return size_penalty(logits, bounds, self.cls)


def volume_size_penalty(logits: Tensor, volume_ids: Tensor, slice_sizes: Tensor, margin: float = 0.1,
                        cls: int = 1, region: Tensor | None = None) -> Tensor:
    """3D size penalty (Kervadec 2019, Sec. 4 "3D", ``BatchNaivePenalty``): bound each volume's summed size.

    The batch holds 2D slices; ``volume_ids`` (B,) says which volume each comes from and ``slice_sizes`` (B,) is
    each slice's true size. For every volume in the batch the predicted sizes of its slices are summed and
    bounded by [(1 - margin) T, (1 + margin) T], T the summed true size of the same slices (the whole volume's
    size when the batch holds all its slices, as the reference's ``--group_train`` arranges).
    Returns the mean over volumes of C(V) / (H*W): divided by one slice's area, as in the reference.
    ``region`` (B, H, W) bool: measure the slices' sizes only there (:func:`object_region`).
    """
    b, _, h, w = logits.shape
    assert volume_ids.shape == (b,), f"volume_ids must be (B,) = ({b},), got {tuple(volume_ids.shape)}"
    assert slice_sizes.shape == (b,), f"slice_sizes must be (B,) = ({b},), got {tuple(slice_sizes.shape)}"
    assert margin >= 0, "margin must be >= 0"
    _, inverse = torch.unique(volume_ids, return_inverse=True)
    n_vol = int(inverse.max()) + 1
    pred = soft_size(logits, cls, region)                                   # (B,)
    pred_vol = pred.new_zeros(n_vol).index_add(0, inverse, pred)            # (V,)
    true_vol = pred.new_zeros(n_vol).index_add(0, inverse, slice_sizes.to(pred).detach())
    bounds = torch.stack([(1 - margin) * true_vol, (1 + margin) * true_vol], dim=1).clamp(min=0)   # (V, 2)
    return (interval_penalty(pred_vol, bounds) / (h * w)).mean()


# ---------------------------------------------------------------------------------------------- bound makers


def mask_sizes(masks: Tensor) -> Tensor:
    """True size (foreground pixel count) of each binary mask (B, H, W) -> float (B,)."""
    assert masks.dim() == 3, f"masks must be (B, H, W), got {tuple(masks.shape)}"
    return (masks > 0).flatten(1).sum(dim=1).float()


def tag_bounds(present: Tensor, low: float, high: float) -> Tensor:
    """Image-tag bounds (Kervadec 2019, ``TagBounds``): [low, high] where the class is present, [0, 0] where not."""
    assert present.dim() == 1, f"present must be (B,), got {tuple(present.shape)}"
    assert 0 <= low <= high, f"need 0 <= low <= high, got [{low}, {high}]"
    on = present.bool().float().unsqueeze(1)                               # (B, 1)
    return on * torch.tensor([[float(low), float(high)]], device=present.device)   # (B, 2)


def scale_to_shape(value: float, image_shape: Sequence[int],
                   reference_shape: Sequence[int] = REFERENCE_SHAPE) -> float:
    """Rescale a pixel count set at ``reference_shape`` to ``image_shape`` by the ratio of their areas."""
    return float(value) * (image_shape[0] * image_shape[1]) / (reference_shape[0] * reference_shape[1])


def common_bounds(present: Tensor, image_shape: Sequence[int], low: float = 60.0, high: float = 2000.0,
                  reference_shape: Sequence[int] = REFERENCE_SHAPE) -> Tensor:
    """Common bounds (Kervadec 2019, Sec. 4.2): one [low, high] for every positive image, scaled to the image area.

    Like the reference (``TagBounds`` with values [60, 2000]) they use the image tag: [0, 0] when absent.
    """
    return tag_bounds(present, scale_to_shape(low, image_shape, reference_shape),
                      scale_to_shape(high, image_shape, reference_shape))


def precise_bounds(sizes: Tensor, margin: float = 0.1) -> Tensor:
    """Precise bounds (Kervadec 2019, ``PreciseBounds``): [(1 - margin) s, (1 + margin) s] from the true size s."""
    assert sizes.dim() == 1 and margin >= 0
    s = sizes.float()
    return torch.stack([(1 - margin) * s, (1 + margin) * s], dim=1).clamp(min=0)       # (B, 2)


def upper_bounds(sizes: Tensor, margin: float = 0.1) -> Tensor:
    """Upper-only bounds: [0, (1 + margin) s]. (The reference's ``PreciseUpper`` uses low = 1 for present images.)"""
    bounds = precise_bounds(sizes, margin)
    bounds[:, 0] = 0
    return bounds


def loose_bounds(present: Tensor, image_shape: Sequence[int]) -> Tensor:
    """Loose bounds: [1, H*W] for present images, [0, 0] for absent ones (the reference's ``loose`` setting)."""
    return tag_bounds(present, 1.0, float(image_shape[0] * image_shape[1]))


BOUND_KINDS = ("common", "precise", "upper", "loose")


def bounds_from_masks(kind: str, masks: Tensor, margin: float = 0.1, low: float = 60.0, high: float = 2000.0,
                      reference_shape: Sequence[int] = REFERENCE_SHAPE) -> Tensor:
    """Make (B, 2) bounds of one of ``BOUND_KINDS`` from full binary masks (B, H, W) (Kervadec 2019, Sec. 4.2).

    The masks stand in for the annotator's knowledge: common and loose bounds read only the tag (class present or
    not), precise and upper bounds read the true size.
    """
    sizes = mask_sizes(masks)
    shape = tuple(masks.shape[-2:])
    if kind == "common":
        return common_bounds(sizes > 0, shape, low, high, reference_shape)
    if kind == "precise":
        return precise_bounds(sizes, margin)
    if kind == "upper":
        return upper_bounds(sizes, margin)
    if kind == "loose":
        return loose_bounds(sizes > 0, shape)
    raise ValueError(f"unknown bound kind {kind!r}; choose one of {', '.join(BOUND_KINDS)}")
