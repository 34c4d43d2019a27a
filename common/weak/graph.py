"""Graph post-processing of a segmentation: an optimal closed path in polar coordinates, and GrabCut.

- ``polar_boundary``: the classic "graph search" of cardiac segmentation (border detection by dynamic programming,
  Sonka, Hlavac & Boyle, *Image Processing, Analysis and Machine Vision*, ch. 6; in polar coordinates as in Geiger,
  Gupta, Costa & Vlontzos, "Dynamic programming for detecting, tracking, and matching deformable contours", IEEE
  TPAMI 17(3), 1995): around the LV centre, one radius per angle, chosen by dynamic programming over the angles so
  that neighbouring radii differ by at most ``max_jump`` samples and the contour closes. The cost of a radius
  rewards the network's probability inside it (the area integral of p - 1/2) and, with ``edge_weight``, an
  intensity drop across it (bright blood inside, dark myocardium outside).
- ``grabcut_refine``: OpenCV's GrabCut (Rother, Kolmogorov & Blake, SIGGRAPH 2004) seeded by the prediction:
  confident pixels fixed, the rest probable, the graph cut decides.

Both are the post-processing steps the survey lists beside DenseCRF (Zhang et al. 2019,
https://arxiv.org/abs/1908.00473).

    mask = polar_boundary(prob, image=image, centre=lv_centre(prob))   # prob, image (H, W) -> bool (H, W)
    mask = grabcut_refine(image, prob)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class PolarParams:
    """Optimal-path boundary search around a centre: sampling, smoothness and the weight of the image edge."""

    edge_weight: float = 0.0  # weight of the outward intensity drop (image in [0, 1]) vs the probability term
    max_jump: int = 1         # largest change of the radius index between neighbouring angles
    dr: float = 0.5           # radial sample step, pixels
    n_angles: int = 0         # rays; 0: one per pixel of arc at the largest radius searched (at least 32)
    r_max: float = 0.0        # largest radius, pixels; 0: 1.5 x the farthest predicted pixel + 3, at most side / 3


def lv_centre(prob: np.ndarray, threshold: float = 0.5) -> tuple[float, float] | None:
    """(row, col) centroid of the largest 8-connected region with ``prob > threshold``; None if there is none."""
    components, n = ndimage.label(np.asarray(prob) > threshold, np.ones((3, 3), bool))
    if n == 0:
        return None
    largest = 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(components), components, range(1, n + 1))))
    cy, cx = ndimage.center_of_mass(components == largest)
    return float(cy), float(cx)


def _closed_path(cost: np.ndarray, max_jump: int) -> np.ndarray:
    """Indices (A,) of the cheapest closed path through cost (A, R): |index_j - index_(j-1)| <= max_jump, j circular.

    Every start index is tried at once: state (start, current), so the closing constraint is exact.
    """
    a, r = cost.shape
    total = np.full((r, r), np.inf)
    total[np.arange(r), np.arange(r)] = cost[0]                              # (start, current)
    back = np.zeros((a, r, r), np.int8)
    shifts = np.arange(-max_jump, max_jump + 1)
    for j in range(1, a):
        padded = np.pad(total, ((0, 0), (max_jump, max_jump)), constant_values=np.inf)
        options = np.stack([padded[:, max_jump - s:max_jump - s + r] for s in shifts])  # came from current - s
        best = options.argmin(0)
        back[j] = shifts[best]
        total = options.min(0) + cost[j][None]
    ends = np.arange(r)
    close = np.abs(ends[None, :] - ends[:, None]) <= max_jump                 # last index near the start
    start, end = np.unravel_index(np.where(close, total, np.inf).argmin(), total.shape)
    path = np.empty(a, int)
    path[-1] = end
    for j in range(a - 1, 0, -1):
        path[j - 1] = path[j] - back[j, start, path[j]]
    assert path[0] == start
    return path


def polar_boundary(prob: np.ndarray, image: np.ndarray | None = None, centre: tuple[float, float] | None = None,
                   params: PolarParams = PolarParams()) -> np.ndarray:
    """Optimal closed boundary around ``centre`` by dynamic programming over angles (graph search; Geiger et al. 1995),
    filled, bool (H, W). ``prob`` (H, W): foreground probability; ``image`` (H, W) in [0, 1] for the edge term.
    No centre given: :func:`lv_centre` of ``prob``; none found: an empty mask."""
    from skimage.draw import polygon2mask

    prob = np.asarray(prob, np.float64)
    assert prob.ndim == 2, f"prob must be (H, W), got {prob.shape}"
    centre = centre if centre is not None else lv_centre(prob)
    if centre is None:
        return np.zeros(prob.shape, bool)
    cy, cx = centre
    r_max = params.r_max
    if r_max <= 0:
        rows, cols = np.nonzero(prob > 0.5)
        far = np.sqrt((rows - cy) ** 2 + (cols - cx) ** 2).max() if len(rows) else 2.0
        r_max = min(1.5 * far + 3.0, max(prob.shape) / 3)  # an LV is far smaller than a third of the field
    n_r = max(int(np.ceil(r_max / params.dr)), 2)
    n_a = params.n_angles or max(32, int(np.ceil(2 * np.pi * r_max)))
    theta = 2 * np.pi * np.arange(n_a) / n_a
    radii = (np.arange(n_r) + 0.5) * params.dr                                # sample i lies inside if i < index
    ys = cy + radii[None, :] * np.sin(theta)[:, None]                        # (A, R)
    xs = cx + radii[None, :] * np.cos(theta)[:, None]
    p = ndimage.map_coordinates(prob, [ys, xs], order=1, mode="constant", cval=0.0)
    # index k in 1..R keeps samples 0..k-1: gain = area integral of (p - 1/2), radius as the area element
    gain = np.cumsum((p - 0.5) * radii[None, :] * params.dr, axis=1)        # (A, R) for k = 1..R
    cost = -gain / max(radii[-1], 1.0)
    if image is not None and params.edge_weight > 0:
        img = ndimage.map_coordinates(np.asarray(image, np.float64), [ys, xs], order=1, mode="nearest")
        inside, outside = img, np.concatenate([img[:, 1:], img[:, -1:]], 1)  # samples k-1 and k
        cost = cost - params.edge_weight * (inside - outside)
    index = _closed_path(cost, params.max_jump) + 1                          # 1..R samples inside
    boundary = index * params.dr
    vertices = np.stack([cy + boundary * np.sin(theta), cx + boundary * np.cos(theta)], 1)
    return polygon2mask(prob.shape, vertices)


@dataclass(frozen=True)
class GrabCutParams:
    """GrabCut seeded by a probability map: which pixels are fixed and how far the background is fixed."""

    core: int = 1         # the predicted mask eroded this many pixels is fixed foreground (else its likeliest pixel)
    band: int = 2         # pixels around the predicted mask left to the graph cut (beyond them: fixed background)
    iters: int = 3


def grabcut_refine(image: np.ndarray, prob: np.ndarray, params: GrabCutParams = GrabCutParams()) -> np.ndarray:
    """GrabCut (Rother et al. 2004, OpenCV) on a grey slice (H, W) in [0, 1], initialised from a probability map
    (p > 0.5 probable foreground, its eroded core fixed foreground, beyond ``band`` pixels fixed background):
    bool (H, W). An empty prediction stays empty; a prediction GrabCut cannot model is returned unchanged."""
    import cv2

    prob = np.asarray(prob, np.float64)
    pred = prob > 0.5
    if not pred.any() or pred.all():
        return pred
    sq = np.ones((3, 3), bool)
    init = np.full(prob.shape, cv2.GC_PR_BGD, np.uint8)
    init[~ndimage.binary_dilation(pred, sq, iterations=params.band)] = cv2.GC_BGD
    init[pred] = cv2.GC_PR_FGD
    # Without fixed foreground GrabCut's colour models drift to the background (bright fat, the RV) and it
    # returns nothing: the confident core of the prediction is kept.
    core = ndimage.binary_erosion(pred, sq, iterations=params.core) if params.core else pred
    init[core if core.any() else np.where(pred, prob, -1.0) == np.where(pred, prob, -1.0).max()] = cv2.GC_FGD
    grey = np.round(np.clip(np.asarray(image, np.float64), 0, 1) * 255).astype(np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.dstack([grey] * 3), init, None, bgd, fgd, params.iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # too few pixels of a kind for its colour models
        return pred
    return (init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)


GRAPH_METHODS: dict[str, Callable] = {
    "polar": lambda image, prob, params: polar_boundary(prob, image, None, params or PolarParams()),
    "grabcut": lambda image, prob, params: grabcut_refine(image, prob, params or GrabCutParams()),
}


def graph_masks(images: np.ndarray, fg_probs: np.ndarray, method: str = "polar", params=None) -> np.ndarray:
    """A graph method of GRAPH_METHODS on every slice: images, probabilities (N, H, W) -> bool (N, H, W)."""
    assert images.shape == fg_probs.shape and images.ndim == 3, (images.shape, fg_probs.shape)
    return np.stack([GRAPH_METHODS[method](img, p, params) for img, p in zip(images, fg_probs, strict=True)])
