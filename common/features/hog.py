"""Histograms of oriented gradients (Dalal & Triggs 2005, https://doi.org/10.1109/CVPR.2005.177) via scikit-image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.feature import hog


@dataclass(frozen=True)
class HOGParams:
    orientations: int = 9
    cells: int = 8              # cells per image side: the cell is side // cells pixels, whatever the image size
    cells_per_block: int = 2
    block_norm: str = "L2-Hys"  # Dalal & Triggs' choice


def hog_features(image: np.ndarray, params: HOGParams = HOGParams()) -> np.ndarray:
    """HOG of a (H, W) image -> (n_blocks_y * n_blocks_x * cells_per_block**2 * orientations,) float64."""
    image = np.asarray(image, dtype=np.float64)
    assert image.ndim == 2, image.shape
    cell = max(1, min(image.shape) // params.cells)
    return hog(image, orientations=params.orientations, pixels_per_cell=(cell, cell),
               cells_per_block=(params.cells_per_block,) * 2, block_norm=params.block_norm,
               feature_vector=True).astype(np.float64)
