"""CT / radiograph intensities as several windowed input channels.

A radiologist reads one CT slice through several windows (soft tissue, lung, bone): each maps a range of Hounsfield
units linearly to [0, 1] and clips the rest, so a structure's contrast is stretched where it matters. Feeding the
windows as input channels hands a network that reading (e.g. Kuo et al., "Expert-level detection of acute
intracranial hemorrhage on head CT", PNAS 2019, https://doi.org/10.1073/pnas.1908021116, three brain windows as
RGB). The presets are the ones ``common.io`` reads DICOM with (``common.io.reader.WINDOW_PRESETS``, the gallery's);
any (centre, width) pair in the image's own units works too (a radiograph's grey levels, say).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from common.errors import InputError
from common.io.reader import WINDOW_PRESETS, apply_window

DEFAULT_WINDOWS = ("soft_tissue", "lung", "bone")


def resolve_window(window: str | tuple[float, float]) -> tuple[float, float]:
    """A preset name of WINDOW_PRESETS or a (centre, width) pair -> (centre, width)."""
    if isinstance(window, str):
        if window not in WINDOW_PRESETS:
            raise InputError(f"unknown window preset {window!r}", hint=f"use one of {', '.join(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[window]
    centre, width = window
    return float(centre), float(width)


def window_channels(values: np.ndarray, windows: Sequence[str | tuple[float, float]] = DEFAULT_WINDOWS) -> np.ndarray:
    """Raw intensities (H, W) (or any shape S) -> float32 (len(windows), *S) in [0, 1], one window a channel."""
    if not len(windows):
        raise InputError("no windows given", hint=f"use preset names ({', '.join(WINDOW_PRESETS)}) or (centre, width)")
    values = np.asarray(values)
    return np.stack([apply_window(values, *resolve_window(w)) for w in windows])
