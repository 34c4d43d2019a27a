"""Atomic writers: write to a temporary file in the same folder, then rename over the target.

A kill at any moment leaves either the old file or the new one, never half of one (the same
pattern as nanoGPT's and pytorch/examples' checkpointing, plus fsync-free rename which is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from common.errors import InputError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it to ``target``, on error delete it."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise InputError(f"cannot write here ({exc.strerror})", path=target.parent,
                         hint="choose a writable --out") from None
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates 0600 files; give the result the permissions a plain open() would (0666 & ~umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # torch scalars
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_json(path: str | os.PathLike, data: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return Path(path)


def save_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], fieldnames: list[str] | None = None) -> Path:
    rows = list(rows)
    if fieldnames is None:
        fieldnames = []
        for row in rows:
            fieldnames += [k for k in row if k not in fieldnames]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def save_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Save (H, W) or (H, W, 3|4) uint8, or float in [0, 1] (scaled to uint8), as PNG/JPEG by extension."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format=(path.suffix.lstrip(".").upper() or "PNG").replace("JPG", "JPEG"))
    return path


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object keeps numpy from appending its own ".npz"
            np.savez_compressed(fh, **arrays)
    return Path(path)


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """torch.save a checkpoint dict atomically (never whole modules: state_dicts and plain data only)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
    return Path(path)
