"""DICOM via pydicom: rescale slope/intercept, MONOCHROME1 inversion, VOI windows, multi-frame, colour.

Bad files are told apart: not DICOM, cut short in the header, cut short in the pixel data, an image class
without pixel data, and a compressed transfer syntax that no installed decoder reads (the only case that
suggests installing one).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from common.errors import InputError, describe, one_line


def _window_from_file(ds) -> tuple[float, float] | None:
    center, width = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if center is None or width is None:
        return None
    # Multi-valued VOI attributes hold several windows; the first is the default one.
    center = center[0] if hasattr(center, "__len__") and not isinstance(center, str) else center
    width = width[0] if hasattr(width, "__len__") and not isinstance(width, str) else width
    return float(center), float(width)


_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
# pydicom's words when no installed plugin can decode a transfer syntax (missing, or unable: 12-bit JPEG in Pillow)
_NO_DECODER = ("missing dependencies", "no pixel data decoders", "not supported", "does not support",
               "no available image handler", "not installed")
TRUNCATED_HINT = "the file was cut short (incomplete download or copy?); copy or export it again"


def _transfer_syntax(ds):
    return getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)


def _header_truncation(ds, warned: list[str]) -> str | None:
    """Why the parsed data set looks cut short in its header (pydicom stops quietly at the end of the file), or None."""
    if any("end of file" in w.lower() for w in warned):  # an undefined-length element (sequence, pixel data) unended
        return "the file ends inside an element"
    if len(ds) == 0:
        return "no data elements after the file meta header"
    for tag in ds.keys():
        elem = ds.get_item(tag)  # raw (undecoded) elements still know the length they declared
        length, value = getattr(elem, "length", None), getattr(elem, "value", None)
        if int(tag) in _PIXEL_TAGS or not isinstance(value, bytes) or length in (None, 0xFFFFFFFF):
            continue
        if len(value) < length:
            return f"element {tag} declares {length} bytes, the file holds {len(value)}"
    return None


def _expected_pixel_bytes(ds) -> int | None:
    """Bytes of native (uncompressed) pixel data: Rows x Columns x Frames x Samples x BitsAllocated / 8."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return None  # pydicom names the missing attribute when it decodes
    if str(getattr(ds, "PhotometricInterpretation", "")) == "YBR_FULL_422":
        samples = 2  # chroma subsampled horizontally: 2 values per pixel
    return (rows * cols * frames * samples * bits + 7) // 8


def _check_pixel_length(ds, path: Path) -> None:
    """Uncompressed pixel data shorter than the image attributes need: a truncated file, not a missing decoder."""
    tsyntax = _transfer_syntax(ds)
    if tsyntax is not None and getattr(tsyntax, "is_compressed", False):
        return  # encapsulated fragments: pydicom finds their end (or warns of a missing delimiter) itself
    value = None
    for tag, keyword in _PIXEL_TAGS.items():
        if keyword in ds:
            value = ds.get_item(tag).value
            break
    if not isinstance(value, (bytes, bytearray)):
        return
    expected = _expected_pixel_bytes(ds)
    if expected is not None and len(value) < expected:
        raise InputError(f"truncated or incomplete pixel data (expected {expected} bytes, found {len(value)})",
                         path=path, hint=TRUNCATED_HINT)


def _decoder_install(name: str) -> str:
    """The pip command for the pylibjpeg plugin that decodes a transfer syntax (gdcm decodes them all)."""
    if "JPEG 2000" in name:
        return "pip install pylibjpeg pylibjpeg-openjpeg (or python-gdcm)"
    if "JPEG" in name:  # JPEG baseline / extended / lossless and JPEG-LS
        return "pip install pylibjpeg pylibjpeg-libjpeg (or python-gdcm)"
    return "pip install python-gdcm"


def _missing_decoders(tsyntax) -> bool:
    """Whether pydicom knows decoders for ``tsyntax`` that are not installed here."""
    try:
        from pydicom.pixels import get_decoder

        return bool(get_decoder(tsyntax).missing_dependencies)
    except Exception:  # older pydicom, or no decoder for this syntax at all
        return False


def _decode_error(exc: Exception, ds, path: Path) -> InputError:
    """An InputError for a failed ``ds.pixel_array``: a decoder to install only when one is lacking."""
    tsyntax = _transfer_syntax(ds)
    name = getattr(tsyntax, "name", None) or str(tsyntax)
    if tsyntax is not None and getattr(tsyntax, "is_compressed", False):
        if any(words in str(exc).lower() for words in _NO_DECODER):
            return InputError(f"no installed decoder can read its {name} pixel data (pydicom: {one_line(exc, 240)})",
                              path=path, hint=_decoder_install(name))
        hint = "the file is truncated or corrupt; copy or export it again"
        if "JPEG" in name and _missing_decoders(tsyntax):  # the installed plugin failed; another one may not
            hint = f"the file is truncated or corrupt, or needs another decoder: {_decoder_install(name)}"
        return InputError(f"cannot decode its {name} pixel data ({describe(exc)})", path=path, hint=hint)
    return InputError(f"cannot decode the DICOM pixel data ({describe(exc)})", path=path,
                      hint="the file is corrupt or its image attributes (Rows, Columns, Bits Allocated) are wrong")


def read_dicom(path: Path, *, normalize: bool = True, window=None, frame: int | None = None):
    """One 2D frame of a DICOM file -> float32 (H, W) or (H, W, 3), and metadata.

    A file cut short is reported as such: in its header ("truncated or corrupt DICOM"), or in uncompressed pixel
    data shorter than Rows x Columns x Frames x Samples x BitsAllocated / 8 ("truncated or incomplete pixel data").
    Installing a decoder is suggested only for a compressed transfer syntax that no installed plugin decodes.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    from common.io.reader import WINDOW_PRESETS, apply_window, minmax, notice

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(str(path))
    except InvalidDicomError:
        with open(path, "rb") as f:
            head = f.read(132)
        if head[128:132] == b"DICM":  # the preamble is there: the file meta header after it is cut or broken
            raise InputError("truncated or corrupt DICOM (incomplete file meta header)", path=path,
                             hint=TRUNCATED_HINT) from None
        if len(head) < 132:
            raise InputError(f"not a DICOM file, or one cut short (only {len(head)} bytes)", path=path,
                             hint="check the file; a DICOM file starts with 132 bytes of preamble") from None
        raise InputError("not a DICOM file (no DICM preamble)", path=path,
                         hint="check the file; pydicom cannot parse it") from None
    except Exception as exc:  # pydicom raises many types (struct.error, OSError, EOFError ...) on cut files
        raise InputError(f"truncated or corrupt DICOM (cannot parse it: {describe(exc)})", path=path,
                         hint=TRUNCATED_HINT) from None
    warned = [str(w.message) for w in caught]
    why = _header_truncation(ds, warned)
    if why:
        raise InputError(f"truncated or corrupt DICOM ({why})", path=path, hint=TRUNCATED_HINT)
    if not any(keyword in ds for keyword in _PIXEL_TAGS.values()):
        sop = getattr(ds, "SOPClassUID", None) or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")
        sop_name = getattr(sop, "name", "") or ""
        if "Image Storage" in sop_name or "Rows" in ds:
            what = f"its SOP class is {sop_name}" if "Image Storage" in sop_name else "it has image attributes"
            raise InputError(f"truncated or incomplete DICOM: no pixel data although {what}", path=path,
                             hint="a cut file or a header-only export; copy or export the complete file again")
        raise InputError("DICOM file has no pixel data (a report, structured set or header-only file?)",
                         path=path, hint="pass an image DICOM instance")
    _check_pixel_length(ds, path)
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise _decode_error(exc, ds, path) from None
    for w in caught:  # the file read: pass on pydicom's remarks about it (odd encodings ...), not before an error
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
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
