"""NIfTI via nibabel: a 2D image, or one slice of a 3D / 4D volume (default the middle slice, with a notice)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import InputError


def read_nifti(path: Path, *, normalize: bool = True, slice_index: int | None = None, axis: int = 2,
               volume_index: int = 0):
    import nibabel as nib

    from common.io.reader import minmax, notice

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj).astype(np.float32)
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, zlib errors ...
        raise InputError(f"cannot read the NIfTI file ({type(exc).__name__}: {exc})", path=path,
                         hint="the file is truncated or not NIfTI") from None
    shape = data.shape
    meta = {"format": "NIfTI", "volume_shape": tuple(int(s) for s in shape),
            "spacing": [float(z) for z in img.header.get_zooms()[:3]]}
    data = np.squeeze(data) if data.ndim > 2 and 1 in shape[2:] else data
    if data.ndim == 4:
        if not 0 <= volume_index < data.shape[3]:
            raise InputError(f"volume index {volume_index} out of range (4th dimension is {data.shape[3]})", path=path)
        data = data[..., volume_index]
        meta["volume_index"] = volume_index
    if data.ndim == 3:
        if axis not in (0, 1, 2):
            raise InputError(f"slice axis must be 0, 1 or 2, got {axis}", path=path)
        n = data.shape[axis]
        if slice_index is None:
            slice_index = n // 2
            notice(f"{path}: 3D volume {tuple(data.shape)}; using the middle slice {slice_index} along axis {axis}")
        if not 0 <= slice_index < n:
            raise InputError(f"slice {slice_index} out of range (axis {axis} has {n} slices)", path=path)
        volume = data
        data = np.take(data, slice_index, axis=axis)
        meta.update(slice_index=slice_index, axis=axis)
        if normalize:  # scale by the whole volume so neighbouring slices stay comparable
            low, high = float(volume.min()), float(volume.max())
            data = (data - low) / (high - low) if high > low else np.zeros_like(data)
            normalize = False
    if data.ndim != 2:
        raise InputError(f"unsupported NIfTI shape {shape}", path=path, hint="expected 2D, 3D or 4D data")
    # NIfTI stores (x, y): transpose to (rows, cols) so the image is shown upright as in viewers.
    data = np.ascontiguousarray(data.T[::-1])
    meta["raw_range"] = (float(data.min()), float(data.max()))
    return (minmax(data) if normalize else data.astype(np.float32)), meta
