"""Turn torch tensors / lists into numpy and check shapes, so every metric accepts either."""

from __future__ import annotations

import numpy as np


def as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def same_shape(a, b, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_numpy(a), as_numpy(b)
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {a.shape} vs {b.shape}")
    return a, b
