"""Grey-level co-occurrence matrix texture properties (Haralick, Shanmugam & Dinstein 1973,
https://doi.org/10.1109/TSMC.1973.4309314) via scikit-image, averaged over four directions (rotation-robust)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.feature import graycomatrix, graycoprops

PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation")
ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)


@dataclass(frozen=True)
class GLCMParams:
    levels: int = 32                    # grey levels after quantisation
    distances: tuple[int, ...] = (1, 2, 4)
    properties: tuple[str, ...] = PROPERTIES


def quantize(image: np.ndarray, levels: int) -> np.ndarray:
    """[0, 1] floats -> integer levels 0..levels-1 (uint8)."""
    return np.clip(np.floor(np.asarray(image, dtype=np.float64) * levels), 0, levels - 1).astype(np.uint8)


def glcm_properties(image: np.ndarray, params: GLCMParams = GLCMParams()) -> np.ndarray:
    """Properties x distances, each the mean over the four directions: (len(properties) * len(distances),)."""
    assert np.ndim(image) == 2, np.shape(image)
    glcm = graycomatrix(quantize(image, params.levels), list(params.distances), list(ANGLES), levels=params.levels,
                        symmetric=True, normed=True)  # (levels, levels, distances, angles)
    props = [graycoprops(glcm, p).mean(axis=1) for p in params.properties]  # each (distances,)
    return np.nan_to_num(np.concatenate(props)).astype(np.float64)  # correlation is NaN on a flat image
