"""Pseudo masks grown from weak labels: region growing (mean ± k·std of the seeds) and k-means clustering.

The first stage of the weakly supervised framework of Zhang et al. 2019, "A Survey on Deep Learning of Small Sample
in Biomedical Image Analysis", https://arxiv.org/abs/1908.00473 (their ACDC demo: region growing with the
labelled foreground pixels' mean ± 3 std, then ENet, then DenseCRF). Region growing follows Adams & Bischof,
"Seeded region growing", IEEE TPAMI 1994, in its simplest, threshold form; k-means is scikit-learn's.

Weak labels use the encoding of :mod:`common.weak.labels` (0 background, 1 foreground seed, 255 unlabelled).
A box label has no foreground seed: its seeds are a small disk at the box centre and the growth stays in the box.

    seeds, allowed = seeds_from_weak(weak)                  # weak (H, W) uint8 -> bool (H, W), bool (H, W)
    mask = region_grow(image, seeds, k=3.0, allowed=allowed)   # image (H, W) float -> bool (H, W)
    masks = pseudo_masks(volume, weak_stack, "region", k=3.0)  # (D, H, W) -> bool (D, H, W), stats pooled per volume
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from common.errors import InputError
from common.weak.labels import BACKGROUND, FOREGROUND, check_same_size

# 4-connected growth (scipy.ndimage.label's default structure), as skimage.segmentation.flood(connectivity=1).
_CROSS = ndimage.generate_binary_structure(2, 1)


def check_seeds(image: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` as float (H, W) and ``seeds`` as bool (H, W); InputError on a size mismatch or no seed pixel."""
    image, seeds = np.asarray(image, np.float64), np.asarray(seeds)
    check_same_size(image, seeds)
    if image.ndim != 2:
        raise InputError(f"image must be one grey-level slice (H, W), got shape {image.shape}",
                         hint="grow each slice of a volume on its own (pseudo_masks does)")
    if seeds.dtype != bool:
        seeds = seeds.astype(bool)
    if not seeds.any():
        raise InputError("the weak label has no seed pixel, so no region can be grown from it",
                         hint="label at least one foreground pixel (or a box) on the slice, or skip the slice")
    return image, seeds


def seeds_from_weak(weak: np.ndarray, box_seed_fraction: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Seed pixels and the region growth may reach, bool (H, W) each, from a weak label (H, W).

    Seed labels: seeds = foreground pixels, reach = every pixel not labelled background. Box labels (no foreground,
    an unlabelled box in labelled background): seeds = a disk at the box centre of radius ``box_seed_fraction`` of
    the box's shorter side, reach = the box. No seed and no box: both empty.
    """
    weak = np.asarray(weak)
    assert weak.ndim == 2, f"weak label must be (H, W), got {weak.shape}"
    reach = weak != BACKGROUND
    seeds = weak == FOREGROUND
    if seeds.any() or not reach.any() or reach.all():
        return seeds, reach if seeds.any() else np.zeros_like(seeds)
    rows, cols = np.nonzero(reach.any(1))[0], np.nonzero(reach.any(0))[0]
    cy, cx = (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2
    radius = max(box_seed_fraction * min(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1), 1.0)
    yy, xx = np.ogrid[:weak.shape[0], :weak.shape[1]]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2) & reach, reach


def connected_to(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The 4-connected components of ``mask | seeds`` that hold a seed pixel, bool (H, W)."""
    grown = mask | seeds
    components, _ = ndimage.label(grown, _CROSS)
    keep = np.unique(components[seeds])
    return np.isin(components, keep[keep > 0])


def seed_stats(image: np.ndarray, seeds: np.ndarray) -> tuple[float, float]:
    """Mean and (population) std of the image over the seed pixels; arrays of any matching shape."""
    values = np.asarray(image, np.float64)[np.asarray(seeds, bool)]
    if values.size == 0:
        raise InputError("the weak label has no seed pixel, so no region can be grown from it",
                         hint="label at least one foreground pixel (or a box)")
    return float(values.mean()), float(values.std())


def region_grow(image: np.ndarray, seeds: np.ndarray, k: float = 3.0, stats: tuple[float, float] | None = None,
                allowed: np.ndarray | None = None) -> np.ndarray:
    """Seeded region growing (Adams & Bischof 1994; the survey's mean ± k std): pixels with |I - mean| <= k std,
    4-connected to the seeds (which always belong), bool (H, W).

    ``stats`` (mean, std) default to the seeds' own; pass a volume's pooled statistics to grow its small apical seeds
    with them. ``allowed`` (bool (H, W), e.g. a box) limits where the region may go.
    """
    image, seeds = check_seeds(image, seeds)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    mean, std = stats if stats is not None else seed_stats(image, seeds)
    within = np.abs(image - mean) <= k * std
    if allowed is not None:
        within &= np.asarray(allowed, bool)
    return connected_to(within, seeds)


def kmeans_mask(image: np.ndarray, seeds: np.ndarray, n_clusters: int = 3, position_weight: float = 0.0,
                allowed: np.ndarray | None = None, min_share: float = 0.25, connected: bool = True,
                seed: int = 0) -> np.ndarray:
    """k-means pseudo mask: cluster pixels by intensity (and ``position_weight`` x position in image sides), keep the
    clusters that hold at least ``min_share`` of the seed pixels, then (``connected``) their 4-connected part that
    touches the seeds; seeds always belong. bool (H, W). Lloyd's k-means (scikit-learn, k-means++ start)."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    image, seeds = check_seeds(image, seeds)
    if n_clusters < 2:
        raise ValueError(f"n_clusters must be >= 2, got {n_clusters}")
    region = np.ones(image.shape, bool) if allowed is None else np.asarray(allowed, bool) | seeds
    h, w = image.shape
    yy, xx = np.mgrid[:h, :w]
    features = [image[region]]
    if position_weight > 0:  # positions in image sides, so the weight does not depend on the resolution
        features += [position_weight * yy[region] / max(h, w), position_weight * xx[region] / max(h, w)]
    x = np.stack(features, 1)                                                   # (N, 1 or 3)
    n = min(n_clusters, len(np.unique(x, axis=0)))
    if n < 2:  # a flat region: nothing to separate
        return connected_to(region, seeds) if connected else region
    labels = np.full(image.shape, -1)
    # One thread: a slice is small, and OpenMP threads on a busy machine made a 32 x 32 slice take 0.5 s, not 3 ms.
    with threadpool_limits(1):
        labels[region] = KMeans(n, n_init=3, random_state=seed).fit_predict(x)
    share = np.bincount(labels[seeds], minlength=n) / seeds.sum()
    chosen = np.isin(labels, np.flatnonzero(share >= min(min_share, share.max())))
    return connected_to(chosen, seeds) if connected else chosen | seeds


@dataclass(frozen=True)
class PseudoConfig:
    """How a weak label becomes a pseudo mask (see :func:`pseudo_masks`)."""

    method: str = "region"        # a key of PSEUDO_METHODS
    k: float = 3.0                # region growing: mean ± k std (the survey's 3)
    n_clusters: int = 3           # k-means
    position_weight: float = 0.0  # k-means: weight of the pixel position beside the intensity


def _region(volume, seeds, reach, cfg: PseudoConfig, stats) -> list[np.ndarray]:
    return [region_grow(img, s, cfg.k, stats, r) if s.any() else np.zeros_like(s)
            for img, s, r in zip(volume, seeds, reach, strict=True)]


def _kmeans(volume, seeds, reach, cfg: PseudoConfig, stats) -> list[np.ndarray]:
    return [kmeans_mask(img, s, cfg.n_clusters, cfg.position_weight, r) if s.any() else np.zeros_like(s)
            for img, s, r in zip(volume, seeds, reach, strict=True)]


PSEUDO_METHODS: dict[str, Callable] = {"region": _region, "kmeans": _kmeans}


def pseudo_masks(volume: np.ndarray, weak: np.ndarray, cfg: PseudoConfig = PseudoConfig()) -> np.ndarray:
    """Pseudo masks bool (D, H, W) of a volume (D, H, W) from its weak labels (D, H, W), slice by slice.

    Region growing uses the mean and std of all seed pixels of the volume (the survey's "labelled foreground
    pixels"), so a slice with a one-pixel seed is grown as well as one with a large seed. A slice without a seed
    (or box) stays background: the annotator saw no LV there. InputError if the volume has no seed at all.
    """
    volume, weak = np.asarray(volume), np.asarray(weak)
    if volume.shape != weak.shape or volume.ndim != 3:
        raise InputError(f"image volume {volume.shape} and weak labels {weak.shape} must both be (D, H, W)",
                         hint="pass one weak label per slice, of the slice's size")
    if cfg.method not in PSEUDO_METHODS:
        raise InputError(f"unknown pseudo-mask method {cfg.method!r}", hint=f"use one of {', '.join(PSEUDO_METHODS)}")
    pairs = [seeds_from_weak(w) for w in weak]
    seeds = np.stack([s for s, _ in pairs])
    reach = np.stack([r for _, r in pairs])
    if not seeds.any():
        raise InputError("no slice of the volume has a seed pixel or a box, so no pseudo mask can be grown",
                         hint="give each volume a weak label on at least one slice")
    stats = seed_stats(volume, seeds)
    out = np.stack(PSEUDO_METHODS[cfg.method](volume, seeds, reach, cfg, stats))
    assert out.shape == volume.shape and out.dtype == bool
    return out
