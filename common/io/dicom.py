"""DICOM via pydicom: rescale slope/intercept, MONOCHROME1 inversion, VOI windows, multi-frame, colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import InputError


def _window_from_file(ds) -> tuple[float, float] | None:
    center, width = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if center is None or width is None:
        return None
    # Multi-valued VOI attributes hold several windows; the first is the default one.
    center = center[0] if hasattr(center, "__len__") and not isinstance(center, str) else center
    width = width[0] if hasattr(width, "__len__") and not isinstance(width, str) else width
    return float(center), float(width)


def read_dicom(path: Path, *, normalize: bool = True, window=None, frame: int | None = None):
    """One 2D frame of a DICOM file -> float32 (H, W) or (H, W, 3), and metadata."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from common.io.reader import WINDOW_PRESETS, apply_window, minmax, notice

    try:
        ds = pydicom.dcmread(str(path))
    except InvalidDicomError:
        raise InputError("not a DICOM file (no DICM preamble)", path=path,
                         hint="check the file; pydicom cannot parse it") from None
    except Exception as exc:  # pydicom raises many types on corrupt files
        raise InputError(f"cannot parse the DICOM file ({type(exc).__name__}: {exc})", path=path,
                         hint="the file is truncated or corrupt") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError("DICOM file has no pixel data (a report, structured set or header-only file?)",
                         path=path, hint="pass an image DICOM instance")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise InputError(f"cannot decode the DICOM pixel data ({exc})", path=path,
                         hint="a compressed transfer syntax may need pylibjpeg or gdcm installed") from None
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if n_frames > 1:
        if frame is None:
            frame = 0
            notice(f"{path}: {n_frames} frames; using frame 0 (choose with frame=)")
        if not 0 <= frame < n_frames:
            raise InputError(f"frame {frame} out of range (file has {n_frames})", path=path)
        pixels = pixels[frame]
    meta = {
        "format": "DICOM", "modality": str(getattr(ds, "Modality", "")), "photometric": photometric,
        "frames": n_frames, "frame": frame if n_frames > 1 else 0, "bits_stored": int(getattr(ds, "BitsStored", 0)),
        "spacing": [float(v) for v in getattr(ds, "PixelSpacing", [])] or None,
    }
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(pixels, ds).astype(np.float32)
        return (rgb / float(rgb.max() or 1) if normalize else rgb), meta
    if samples == 3:
        # pydicom already converts YBR_* to RGB when decoding
        rgb = pixels.astype(np.float32)
        scale = float(2 ** int(getattr(ds, "BitsStored", 8)) - 1)
        return (rgb / scale if normalize else rgb), meta
    values = pixels.astype(np.float32)
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    values = values * slope + intercept
    meta.update(rescale_slope=slope, rescale_intercept=intercept, raw_range=(float(values.min()), float(values.max())))
    if isinstance(window, str):
        if window not in WINDOW_PRESETS:
            raise InputError(f"unknown window preset {window!r}", hint=f"use one of {', '.join(WINDOW_PRESETS)}")
        window = WINDOW_PRESETS[window]
    if normalize:
        if window is None:
            window = _window_from_file(ds)
        out = apply_window(values, *window) if window is not None else minmax(values)
        meta["window"] = window
        if photometric == "MONOCHROME1":  # bright means low values in MONOCHROME1: display inverted
            out = 1.0 - out
    else:
        out = values
        if photometric == "MONOCHROME1":
            out = values.max() + values.min() - values
    meta["inverted"] = photometric == "MONOCHROME1"
    return out.astype(np.float32), meta
