"""Fully connected CRF (DenseCRF) post-processing of a segmentation network's softmax, on grey-level slices.

Krähenbühl & Koltun, "Efficient Inference in Fully Connected CRFs with Gaussian Edge Potentials", NIPS 2011,
https://arxiv.org/abs/1210.5644, through pydensecrf (``pip install pydensecrf2``). The unary is -log of the softmax;
the pairwise terms are a Gaussian (smoothness) kernel over positions and a bilateral (appearance) kernel over
positions and intensity, the setting of the survey's ACDC demo (Zhang et al. 2019, https://arxiv.org/abs/1908.00473:
sxy = 3, schan = 10, ENet Dice 0.6850 -> 0.7146).

Intensities are the slice scaled to 0..255 and rounded (as an 8-bit image), so ``schan`` is in grey levels.

    probs = dense_crf(image, softmax, CRFParams(sxy=3, schan=10))   # image (H, W) in [0, 1], softmax (C, H, W)
    mask = probs.argmax(0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import InputError

INSTALL_HINT = "pip install pydensecrf2"
CLIP = 1e-5  # smallest probability the unary sees: -log(1e-5) = 11.5


@dataclass(frozen=True)
class CRFParams:
    """DenseCRF parameters: bilateral kernel (sxy px, schan grey levels, compat), Gaussian kernel, iterations."""

    sxy: float = 3.0           # bilateral kernel's spatial std, pixels (the survey's sxy)
    schan: float = 10.0        # bilateral kernel's intensity std, grey levels of 0..255 (the survey's schan)
    compat: float = 10.0       # bilateral kernel's weight (Potts compatibility)
    gauss_sxy: float = 3.0     # Gaussian smoothness kernel's spatial std, pixels
    gauss_compat: float = 3.0  # its weight; 0 turns it off
    iters: int = 5             # mean-field iterations

    def __post_init__(self):
        if min(self.sxy, self.schan, self.gauss_sxy) <= 0 or min(self.compat, self.gauss_compat) < 0:
            raise InputError(f"CRF parameters must be positive (sxy, schan, gauss_sxy) and >= 0 (compat): {self}")
        if self.iters < 1:
            raise InputError(f"CRF iterations must be >= 1, got {self.iters}")


def import_densecrf():
    """The ``pydensecrf.densecrf`` module; InputError naming the install command if it cannot be imported."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as exc:
        raise InputError(f"DenseCRF needs pydensecrf, which cannot be imported ({exc})", hint=INSTALL_HINT) from None
    return dcrf


def densecrf_available() -> bool:
    try:
        import_densecrf()
    except InputError:
        return False
    return True


def grey_levels(image: np.ndarray) -> np.ndarray:
    """A [0, 1] slice (H, W) as the rounded 0..255 grey levels the bilateral kernel compares, float32 (H, W)."""
    return np.round(np.clip(np.asarray(image, np.float64), 0.0, 1.0) * 255.0).astype(np.float32)


def bilateral_features(image: np.ndarray, sxy: float, schan: float) -> np.ndarray:
    """(3, H*W) float32 features (row / sxy, column / sxy, grey level / schan) of the bilateral kernel."""
    h, w = image.shape
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    feats = np.stack([rows / np.float32(sxy), cols / np.float32(sxy), grey_levels(image) / np.float32(schan)])
    return np.ascontiguousarray(feats.reshape(3, -1), np.float32)


def dense_crf(image: np.ndarray, probs: np.ndarray, params: CRFParams = CRFParams()) -> np.ndarray:
    """Mean-field DenseCRF marginals (Krähenbühl & Koltun 2011) of a softmax (C, H, W) on a slice (H, W) in [0, 1];
    returns float32 (C, H, W)."""
    dcrf = import_densecrf()
    image, probs = np.asarray(image), np.asarray(probs, np.float32)
    if image.ndim != 2 or probs.ndim != 3 or probs.shape[1:] != image.shape:
        raise InputError(f"image {image.shape} and probabilities {probs.shape} must be (H, W) and (C, H, W)",
                         hint="pass one slice and the network's softmax of that slice")
    c, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, c)
    unary = -np.log(np.clip(probs, CLIP, 1.0)).reshape(c, -1)                  # (C, H*W)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, np.float32))
    if params.gauss_compat > 0:
        crf.addPairwiseGaussian(sxy=params.gauss_sxy, compat=params.gauss_compat)
    if params.compat > 0:
        crf.addPairwiseEnergy(bilateral_features(image, params.sxy, params.schan), compat=params.compat)
    q = np.array(crf.inference(params.iters), np.float32).reshape(c, h, w)
    assert q.shape == probs.shape
    return q


def crf_masks(images: np.ndarray, fg_probs: np.ndarray, params: CRFParams = CRFParams()) -> np.ndarray:
    """Binary DenseCRF masks bool (N, H, W) of slices (N, H, W) and foreground probabilities (N, H, W)."""
    assert images.shape == fg_probs.shape and images.ndim == 3, (images.shape, fg_probs.shape)
    out = np.zeros(images.shape, bool)
    for i, (img, p) in enumerate(zip(images, fg_probs, strict=True)):
        q = dense_crf(img, np.stack([1.0 - p, p]), params)
        out[i] = q[1] > q[0]
    return out
