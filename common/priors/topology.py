"""Topology priors for the left-ventricle cavity: one connected component, no holes, inside the myocardium ring.

What a cardiologist says of a short-axis cine stack (ACDC labels: 2 myocardium, 3 LV cavity, papillary muscles
inside 3): the cavity is a single blob through the stack, it has no holes, and the myocardium encloses it. A
segmenter trained on a few volumes breaks all three: bright blobs elsewhere (RV, aorta, fat), holes where the
papillary muscles are dark, cavity pixels outside the ring. Post-processing with these rules is standard in
cardiac pipelines (e.g. the largest connected component in Isensee et al. 2017, ACDC, https://arxiv.org/abs/1707.00587;
connectivity and hole priors in Painchaud et al. 2020, "Cardiac segmentation with strong anatomical guarantees",
IEEE TMI, https://arxiv.org/abs/2006.08825).

Masks are numpy bool, (H, W) for one slice or (D, H, W) for a volume (the rules apply slice by slice;
:func:`largest_component` itself works in 2D or 3D).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of a bool mask (2D or 3D); an empty mask stays empty."""
    mask = np.asarray(mask, bool)
    labels, n = ndimage.label(mask, ndimage.generate_binary_structure(mask.ndim, 1))
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())[1:]                     # component sizes, labels 1..n
    return labels == 1 + int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Holes filled slice by slice (a hole: background not connected to the slice's border), (H, W) or (D, H, W)."""
    mask = np.asarray(mask, bool)
    if mask.ndim == 2:
        return ndimage.binary_fill_holes(mask)
    assert mask.ndim == 3, f"mask must be (H, W) or (D, H, W), got {mask.shape}"
    return np.stack([ndimage.binary_fill_holes(m) for m in mask])


def largest_component_per_slice(mask: np.ndarray) -> np.ndarray:
    """:func:`largest_component` of each slice of (D, H, W) (a 2D mask: of itself)."""
    mask = np.asarray(mask, bool)
    return np.stack([largest_component(m) for m in mask]) if mask.ndim == 3 else largest_component(mask)


def ring_interior(myo: np.ndarray) -> np.ndarray:
    """What the myocardium of one slice (H, W) encloses: the holes of its ring (empty for an open ring, such as a
    basal slice through the outflow tract or a gap in the prediction, and for no myocardium)."""
    myo = np.asarray(myo, bool)
    assert myo.ndim == 2, f"myo must be (H, W), got {myo.shape}"
    return ndimage.binary_fill_holes(myo) & ~myo


def inside_ring(lv: np.ndarray, myo: np.ndarray) -> np.ndarray:
    """The LV cavity cut to the myocardium ring's interior, slice by slice. A slice is left as it is where the ring
    is open or encloses less than half of the cavity (then the ring found is not the LV's, or is wrong: the prior
    cannot say which pixels are cavity)."""
    lv, myo = np.asarray(lv, bool), np.asarray(myo, bool)
    assert lv.shape == myo.shape, f"lv {lv.shape} and myo {myo.shape} differ"
    if lv.ndim == 3:
        return np.stack([inside_ring(a, b) for a, b in zip(lv, myo, strict=True)])
    interior = ring_interior(myo)
    if not interior.any() or (lv & interior).sum() < 0.5 * lv.sum():
        return lv.copy()
    return lv & interior


def lv_prior(lv: np.ndarray, myo: np.ndarray | None = None) -> np.ndarray:
    """All three rules, slice by slice: the LV cavity (H, W) or (D, H, W) as its largest connected component, holes
    filled, and (given the myocardium) cut to the inside of its ring, keeping the largest piece.

    The component is taken per slice, not in 3D: a slice the network misses would split a 3D cavity and drop
    the part beyond it; the cost is that a false blob on a slice without cavity (above the valve) stays."""
    out = fill_holes(largest_component_per_slice(lv))
    if myo is not None:
        out = largest_component_per_slice(inside_ring(out, myo))
    return out


def n_components(mask: np.ndarray) -> int:
    """Number of face-connected components of a bool mask."""
    mask = np.asarray(mask, bool)
    return int(ndimage.label(mask, ndimage.generate_binary_structure(mask.ndim, 1))[1])
