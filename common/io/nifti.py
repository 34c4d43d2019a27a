"""NIfTI via nibabel: a 2D image, or one slice of a 3D / 4D volume (default the middle slice, with a notice)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from common.errors import InputError, describe

# nibabel's message for an image shorter than its header says: "Expected 67650 bytes, got 9648 bytes from ..."
_SHORT_DATA = re.compile(r"Expected (\d+) bytes, got (\d+) bytes")


def read_nifti(path: Path, *, normalize: bool = True, slice_index: int | None = None, axis: int = 2,
               volume_index: int | None = None):
    """One 2D slice of a NIfTI file -> float32 (H, W), and metadata.

    4D data (x, y, z, t): volume ``volume_index`` (default 0), then as 3D. 3D data: slice ``slice_index``
    along ``axis`` (default the middle one). Every default taken is named in one notice on stderr.
    """
    import nibabel as nib

    from common.io.reader import minmax, notice

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj).astype(np.float32)
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, zlib errors ...
        short = _SHORT_DATA.search(str(exc))
        if short or isinstance(exc, EOFError):
            found = f" (expected {short.group(1)} bytes of image data, found {short.group(2)})" if short else ""
            raise InputError(f"truncated NIfTI file{found}", path=path,
                             hint="the file was cut short (incomplete download or copy?); copy or export it again"
                             ) from None
        raise InputError(f"cannot read the NIfTI file ({describe(exc)})", path=path,
                         hint="the file is truncated or not NIfTI") from None
    shape = data.shape
    zooms = getattr(img.header, "get_zooms", None)  # CIFTI headers have none
    meta = {"format": "NIfTI", "volume_shape": tuple(int(s) for s in shape),
            "spacing": [float(z) for z in zooms()[:3]] if zooms else None}
    if data.ndim > 3:  # a length-1 time (or higher) axis carries nothing; z stays, so (x, y, 1, t) is a time series
        data = data.reshape(shape[:3] + tuple(s for s in shape[3:] if s != 1))
    used, how = [], []  # the defaults taken, and the arguments that choose otherwise: one notice for both
    if data.ndim == 4:
        if volume_index is None:
            volume_index = 0
            used.append("volume 0")
            how.append("volume_index=")
        if not 0 <= volume_index < data.shape[3]:
            raise InputError(f"volume index {volume_index} out of range (4th dimension is {data.shape[3]})", path=path)
        data = data[..., volume_index]
        meta["volume_index"] = volume_index
    if data.ndim == 3 and data.shape[2] == 1:  # one slice: nothing to choose
        data = data[..., 0]
        if used:
            notice(f"{path}: 4D volume {meta['volume_shape']} (one slice over time); using {used[0]} "
                   f"(choose with {how[0]})")
    if data.ndim == 3:
        if axis not in (0, 1, 2):
            raise InputError(f"slice axis must be 0, 1 or 2, got {axis}", path=path)
        n = data.shape[axis]
        if slice_index is None:
            slice_index = n // 2
            used.append(f"the middle slice {slice_index} along axis {axis}")
            how.append("slice_index=")
        if used:
            what = f"4D volume {meta['volume_shape']}" if "volume_index" in meta else f"3D volume {tuple(data.shape)}"
            notice(f"{path}: {what}; using {' and '.join(used)} (choose with {' and '.join(how)})")
        if not 0 <= slice_index < n:
            raise InputError(f"slice {slice_index} out of range (axis {axis} has {n} slices)", path=path)
        volume = data
        data = np.take(data, slice_index, axis=axis)
        meta.update(slice_index=slice_index, axis=axis)
        meta["raw_range"] = (float(data.min()), float(data.max()))  # the slice's stored values, before scaling
        if normalize:  # scale by the whole volume so neighbouring slices stay comparable
            low, high = float(volume.min()), float(volume.max())
            data = (data - low) / (high - low) if high > low else np.zeros_like(data)
            normalize = False
    if data.ndim != 2:
        raise InputError(f"unsupported NIfTI shape {shape}", path=path, hint="expected 2D, 3D or 4D data")
    # NIfTI stores (x, y): transpose to (rows, cols) so the image is shown upright as in viewers.
    data = np.ascontiguousarray(data.T[::-1])
    meta.setdefault("raw_range", (float(data.min()), float(data.max())))
    return (minmax(data) if normalize else data.astype(np.float32)), meta


def read_nifti_volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A whole 3D NIfTI volume in its stored voxel order (x, y, z), float32, and its 4x4 affine (voxel -> world)."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj).astype(np.float32)
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, zlib errors ...
        raise InputError(f"cannot read the NIfTI file ({describe(exc)})", path=path,
                         hint="the file is truncated or not NIfTI") from None
    data = data.reshape(data.shape[:3] + tuple(s for s in data.shape[3:] if s != 1))
    if data.ndim != 3:
        raise InputError(f"expected a 3D NIfTI volume, got shape {data.shape}", path=path)
    return data, np.asarray(img.affine, np.float64)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write a 3D array (x, y, z) as NIfTI (gzipped for .nii.gz) with ``affine`` (identity if None), atomically."""
    import gzip

    import nibabel as nib

    from common.io.atomic import atomic_path

    path = Path(path)
    img = nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4) if affine is None else np.asarray(affine))
    raw = img.to_bytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(raw) if path.name.lower().endswith(".gz") else raw)
    return path
