"""Shared pieces of the real-dataset loaders: square padding, resizing, tensors, patient-level splits.

Private to :mod:`common.data.datasets`. Images are float32 in [0, 1]; masks are integer label maps that
must keep their exact values, so they are only ever resized by nearest-neighbour sampling.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Hashable, Sequence

import cv2
import numpy as np
import torch

from common.errors import InputError
from common.io import read_image

SPLITS = ("train", "val", "test")


def pad_to_square(arr: np.ndarray, value: float = 0) -> np.ndarray:
    """Centre an (H, W) or (H, W, C) array on a square canvas filled with ``value`` (aspect ratio kept)."""
    h, w = arr.shape[:2]
    if h == w:
        return arr
    n = max(h, w)
    top, left = (n - h) // 2, (n - w) // 2
    out = np.full((n, n) + arr.shape[2:], value, dtype=arr.dtype)
    out[top:top + h, left:left + w] = arr
    return out


def resize_image(arr: np.ndarray, size: int | None) -> np.ndarray:
    """Square float image (H, H[, C]) -> (size, size[, C]): area averaging to shrink (no aliasing), bilinear to grow."""
    if size is None or arr.shape[0] == size and arr.shape[1] == size:
        return np.ascontiguousarray(arr, dtype=np.float32)
    shrink = size < arr.shape[0]
    out = cv2.resize(np.ascontiguousarray(arr, dtype=np.float32), (size, size),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out.astype(np.float32)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel centre: floor((i + 0.5) * n_in / n_out)."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def resize_mask(mask: np.ndarray, size: int | None) -> np.ndarray:
    """Nearest-neighbour resize of a label map (..., H, W) to (..., size, size); any dtype, values unchanged."""
    if size is None:
        return mask
    rows = nearest_indices(mask.shape[-2], size)
    cols = nearest_indices(mask.shape[-1], size)
    return np.ascontiguousarray(mask[..., rows[:, None], cols[None, :]])


def image_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) float32 -> torch (C, H, W)."""
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))


def load_image(path: Path, size: int | None, channels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Read any format via common.io, force ``channels`` (1 or 3), pad to square, resize.

    Returns the (size, size[, 3]) image and the native (height, width), to check masks against.
    """
    arr, _ = read_image(path, gray=channels == 1)
    if channels == 3 and arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return resize_image(pad_to_square(arr, 0.0), size), (int(arr.shape[0]), int(arr.shape[1]))


def load_label_map(path: Path) -> np.ndarray:
    """A mask file's raw integer values (H, W); colour masks must be gray (equal channels)."""
    arr, _ = read_image(path, normalize=False)
    if arr.ndim == 3:
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])):
            raise InputError("mask is a colour image; expected one label value per pixel", path=path,
                             hint="save masks as single-channel PNG/BMP with integer labels")
        arr = arr[..., 0]
    return np.rint(arr).astype(np.int64)


def check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    return channels


def check_size(size: int | None) -> int | None:
    if size is not None and int(size) < 8:
        raise InputError(f"image size {size} is too small", hint="use size >= 8 (e.g. 128 or 224)")
    return None if size is None else int(size)


def check_choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}", hint=f"use one of {', '.join(map(str, choices))}")


def group_split(groups: Sequence[Hashable], val_fraction: float, seed: int) -> tuple[set, set]:
    """Split the distinct groups (patients) into (train, val) sets: same seed, same split; no group in both.

    At least one group goes to each side when there are two or more groups.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"validation fraction must be in [0, 1), got {val_fraction}")
    distinct = sorted(set(groups), key=str)
    order = np.random.default_rng(seed).permutation(len(distinct))
    n_val = int(round(val_fraction * len(distinct)))
    if val_fraction > 0 and len(distinct) >= 2:
        n_val = min(max(n_val, 1), len(distinct) - 1)
    val = {distinct[i] for i in order[:n_val]}
    return set(distinct) - val, val


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (for error messages and meta), else absolute."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def as_root(root: str | os.PathLike | None, dataset: str) -> Path:
    """Check the --data-root a user passed exists and is a folder."""
    if root is None:
        raise InputError(f"the {dataset} dataset needs --data-root", hint="pass the folder of the published dataset")
    root = Path(root).expanduser()
    if not root.exists():
        raise InputError("no such folder", path=root, hint=f"pass the folder that holds the {dataset} data")
    return root
