"""Shape priors: compactness (a training loss) and convexity (post-processing).

Compactness is the isoperimetric ratio C = P^2 / (4 pi A): 1 for a disc, 4 / pi for a square, larger for ragged or
scattered shapes. The LV cavity in short axis is close to a disc, so a segmenter can be pushed towards low C.
Kervadec et al., "Beyond pixel-wise supervision for segmentation: a few global shape descriptors might be surprisingly
good!", MIDL 2021 (https://arxiv.org/abs/2105.00859), supervise such descriptors; here C is a prior penalised on any
image, labelled or not. Its soft form measures the area as the sum of probabilities and the perimeter as their total
variation, sum |grad p| (central differences), which equals the perimeter for a smooth enough 0/1 map.

Convexity: the cavity with its papillary muscles (inside the label in ACDC) is about convex, so its convex hull
replaces each ragged or notched blob of the prediction (star / convex shape priors: Mirikharaji & Hamarneh, MICCAI 2018,
https://arxiv.org/abs/1806.05066).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.measure import perimeter
from skimage.morphology import convex_hull_image
from torch import Tensor


def compactness(mask: np.ndarray) -> float:
    """Isoperimetric ratio P^2 / (4 pi A) of a bool mask (H, W), perimeter by skimage's 4-connected estimate;
    inf for an empty mask."""
    mask = np.asarray(mask, bool)
    assert mask.ndim == 2, f"mask must be (H, W), got {mask.shape}"
    area = mask.sum()
    return float(perimeter(mask, 4) ** 2 / (4 * math.pi * area)) if area else math.inf


def soft_perimeter(prob: Tensor) -> Tensor:
    """Total variation sum |grad p| of probabilities (B, H, W) -> (B,), central differences, zero padding outside."""
    assert prob.dim() == 3, f"prob must be (B, H, W), got {tuple(prob.shape)}"
    p = F.pad(prob, (1, 1, 1, 1))                                   # zero outside: the border counts as an edge
    gy = (p[:, 2:, 1:-1] - p[:, :-2, 1:-1]) / 2                     # (B, H, W)
    gx = (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]) / 2
    grad = torch.sqrt(gx ** 2 + gy ** 2 + 1e-8)
    # Central differences of a step spread it over the two pixels beside it: sum over the ring of pixels at the
    # edge and one outside. Pixels off the object and its edge contribute sqrt(eps) each: removed.
    return (grad - 1e-4).clamp(min=0).flatten(1).sum(1)


def soft_compactness(prob: Tensor) -> Tensor:
    """Soft isoperimetric ratio P^2 / (4 pi A m) of probabilities (B, H, W) -> (B,): P = sum |grad p|, A = sum p,
    m = sum p^2 / sum p the map's mean height. P^2 / A alone scales with the height of the map (a shape at
    probability a has a times its perimeter and area), so it would be lowered by fading the class everywhere; with
    m it is the same for a shape at any height, and P^2 / (4 pi A) for a 0/1 map."""
    flat = prob.flatten(1)
    area = flat.sum(1).clamp(min=1e-6)
    height = (flat ** 2).sum(1) / area
    return soft_perimeter(prob) ** 2 / (4 * math.pi * area * height.clamp(min=1e-6))


def compactness_loss(logits: Tensor, cls: int, min_area: float = 4.0) -> Tensor:
    """Mean of (C - 1) over the images whose soft area of class ``cls`` is at least ``min_area`` pixels (0 when none):
    logits (B, K, H, W). C >= 1 for a disc-like shape, so the loss is about 0 for a clean disc."""
    assert logits.dim() == 4 and 0 <= cls < logits.shape[1], tuple(logits.shape)
    prob = torch.softmax(logits.float(), 1)[:, cls]                 # (B, H, W)
    area = prob.flatten(1).sum(1)
    keep = area >= min_area                                         # an absent class has no shape to judge
    if not bool(keep.any()):
        return logits.sum() * 0.0                                   # keeps the graph (and the device) of logits
    return (soft_compactness(prob[keep]) - 1.0).clamp(min=0).mean()


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """Each connected component of a bool mask replaced by its convex hull, slice by slice for (D, H, W); empty
    slices stay empty. Per component: the hull of two blobs would bridge them (a false blob would drag the cavity
    across the image); which blob is the cavity is the connectivity prior's question (``topology.lv_prior``)."""
    mask = np.asarray(mask, bool)
    if mask.ndim == 3:
        return np.stack([convex_hull(m) for m in mask])
    assert mask.ndim == 2, f"mask must be (H, W) or (D, H, W), got {mask.shape}"
    labels, n = ndimage.label(mask)
    out = mask.copy()
    for k in range(1, n + 1):
        out |= convex_hull_image(labels == k)
    return out
