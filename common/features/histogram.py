"""The intensity histogram: the simplest global feature, the baseline every texture feature has to beat."""

from __future__ import annotations

import numpy as np


def intensity_histogram(image: np.ndarray, bins: int = 16) -> np.ndarray:
    """Fractions of the pixels in ``bins`` equal bins of [0, 1] (values outside are clipped in): (bins,)."""
    values = np.clip(np.asarray(image, dtype=np.float64).ravel(), 0.0, 1.0)
    counts, _ = np.histogram(values, bins=bins, range=(0.0, 1.0))
    return counts / max(values.size, 1)
