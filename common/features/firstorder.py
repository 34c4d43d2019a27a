"""First-order radiomics-style statistics of the intensities, following the definitions of PyRadiomics' "firstorder"
class (van Griethuysen et al. 2017, https://doi.org/10.1158/0008-5472.CAN-17-0339; IBSI, Zwanenburg et al. 2020)."""

from __future__ import annotations

import numpy as np

NAMES = ("mean", "std", "skewness", "kurtosis", "energy", "rms", "entropy", "uniformity", "p10", "p90", "iqr",
         "range", "mad", "rmad")


def first_order(image: np.ndarray, bins: int = 32, mask: np.ndarray | None = None) -> np.ndarray:
    """The statistics of ``NAMES`` over the pixels (of ``mask`` if given): (len(NAMES),) float64.

    Skewness and kurtosis are the population moments (kurtosis not excess, as PyRadiomics); entropy (log2) and
    uniformity use a ``bins``-bin histogram of [0, 1]; rmad is the mean absolute deviation of the 10-90 % range."""
    x = np.asarray(image, dtype=np.float64)
    x = x[np.asarray(mask, bool)] if mask is not None else x.ravel()
    if x.size == 0:
        raise ValueError("first_order needs at least one pixel")
    mean, std = x.mean(), x.std()
    centred = x - mean
    skew = (centred ** 3).mean() / std ** 3 if std > 0 else 0.0
    kurt = (centred ** 4).mean() / std ** 4 if std > 0 else 0.0
    p = np.histogram(np.clip(x, 0, 1), bins=bins, range=(0.0, 1.0))[0] / x.size
    nz = p[p > 0]
    p10, p25, p75, p90 = np.percentile(x, [10, 25, 75, 90])
    inner = x[(x >= p10) & (x <= p90)]
    return np.array([mean, std, skew, kurt, (x ** 2).sum() / x.size, np.sqrt((x ** 2).mean()),
                     -(nz * np.log2(nz)).sum(), (p ** 2).sum(), p10, p90, p75 - p25, x.max() - x.min(),
                     np.abs(centred).mean(), np.abs(inner - inner.mean()).mean()], dtype=np.float64)
