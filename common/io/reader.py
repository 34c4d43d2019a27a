"""``read_image``: one entry point for PNG/JPEG/BMP/TIFF, DICOM and NIfTI.

Returns ``(array, meta)``: array is float32, (H, W) for grayscale or (H, W, 3) for colour. With
``normalize=True`` (default) values are in [0, 1]: raster images are divided by their type's maximum
(8- or 16-bit; see below for 12-bit data in 16-bit files), DICOM is windowed (given window, else the
file's own VOI window, else min-max), NIfTI is min-max scaled over the whole volume so slices stay
comparable. With ``normalize=False`` the raw / physical values come back (e.g. Hounsfield units for CT).

12-bit data in 16-bit rasters: X-ray detectors digitise 12 bits (0..4095) and exporters store them in
16-bit PNG/TIFF without rescaling, so dividing by 65535 would give a near-black image. Rule: a 16-bit
raster whose maximum is below 4096 is read as 12-bit data and divided by 4095, with a notice; any
larger maximum means the full 16-bit range is in use and it is divided by 65535. (A genuinely 16-bit
image that is this dark comes out 16x brighter; pass ``normalize=False`` to scale it yourself.)

Whenever an input is read in a way the user did not choose (12-bit scaling, page 0 of a multipage TIFF,
frame 0 of a multi-frame DICOM, volume 0 and the middle slice of a NIfTI volume) a one-line
``notice:`` on stderr says so, and how to choose otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from common.errors import InputError, describe
from common.io.listing import IMAGE_EXTENSIONS, image_kind

# (centre, width) in Hounsfield units; common radiology presets.
WINDOW_PRESETS = {
    "soft_tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "mediastinum": (50.0, 350.0),
}


def notice(message: str) -> None:
    """A non-fatal remark about how an input was interpreted (printed once per call, on stderr)."""
    print(f"notice: {message}", file=sys.stderr, flush=True)


def apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear window to [0, 1]: values below centre - width/2 -> 0, above centre + width/2 -> 1."""
    if width <= 0:
        raise InputError(f"window width must be positive, got {width}")
    low = center - width / 2.0
    return np.clip((values.astype(np.float32) - low) / float(width), 0.0, 1.0).astype(np.float32)


def minmax(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    return (values - low) / (high - low)


TWELVE_BIT_MAX = 4095  # see the module docstring: 16-bit rasters with a maximum below 4096 are 12-bit data


def _sixteen_bit_scale(arr: np.ndarray, path: Path, normalize: bool) -> tuple[float, int]:
    """(divisor, bit depth) of 16-bit data: 4095 and 12 when its maximum is below 4096, else 65535 and 16."""
    peak, low = int(arr.max(initial=0)), int(arr.min(initial=0))
    if 0 < peak <= TWELVE_BIT_MAX and low >= 0:
        if normalize:
            notice(f"{path}: 16-bit image with maximum {peak} (< 4096): read as 12-bit data, divided by 4095, "
                   "not 65535")
        return float(TWELVE_BIT_MAX), 12
    return 65535.0, 16


def _read_raster(path: Path, normalize: bool, frame: int | None = None) -> tuple[np.ndarray, dict]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            pages = int(getattr(im, "n_frames", 1) or 1)
            if pages > 1 or frame:
                if frame is None:
                    frame = 0
                    unit = "pages" if im.format == "TIFF" else "frames"  # animated PNG
                    notice(f"{path}: multipage {im.format or 'image'} with {pages} {unit}; using {unit[:-1]} 0 "
                           "(choose with frame=)")
                if not 0 <= frame < pages:
                    raise InputError(f"page {frame} out of range (file has {pages})", path=path,
                                     hint=f"choose a page from 0 to {pages - 1}")
                im.seek(frame)
            mode = im.mode
            im.load()  # decode now so truncated files fail here, not later
            meta = {"format": im.format, "mode": mode, "pages": pages, "page": frame or 0}
            bit_depth = 8
            if mode == "P":
                # A palette of grays is a grayscale image; anything else becomes RGB.
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                arr = np.asarray(im)[..., :3]
                if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]):
                    arr = arr[..., 0]
                scale = 255.0
            elif mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                arr = np.asarray(im, dtype=np.uint16)
                scale, bit_depth = _sixteen_bit_scale(arr, path, normalize)
            elif mode == "I":  # 32-bit int PNG/TIFF: 16-bit data often arrives this way
                arr = np.asarray(im)
                if arr.max(initial=0) <= 65535:
                    scale, bit_depth = _sixteen_bit_scale(arr, path, normalize)
                else:
                    scale, bit_depth = float(arr.max()), 32
            elif mode == "F":
                arr, scale, bit_depth = np.asarray(im, dtype=np.float32), None, 32
            elif mode in ("L", "1"):
                arr, scale = np.asarray(im.convert("L")), 255.0
            elif mode in ("LA",):
                arr, scale = np.asarray(im)[..., 0], 255.0
                meta["alpha_dropped"] = True
            elif mode in ("RGBA",):
                arr, scale = np.asarray(im)[..., :3], 255.0
                meta["alpha_dropped"] = True
            else:
                arr, scale = np.asarray(im.convert("RGB")), 255.0
    except FileNotFoundError:
        raise InputError("no such file", path=path, hint="check the path") from None
    except UnidentifiedImageError:
        raise InputError("not a readable image (corrupt or wrong format)", path=path,
                         hint="re-export the image as PNG") from None
    except (OSError, EOFError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot decode the image ({describe(exc)})", path=path,
                         hint="the file is truncated or corrupt; re-export it") from None
    meta["bit_depth"] = bit_depth
    arr = arr.astype(np.float32)
    meta["raw_range"] = (float(arr.min()), float(arr.max()))
    if normalize:
        arr = arr / scale if scale else minmax(arr)
    return arr, meta


def read_image(
    path: str | os.PathLike,
    *,
    normalize: bool = True,
    window: str | tuple[float, float] | None = None,
    frame: int | None = None,
    slice_index: int | None = None,
    axis: int = 2,
    volume_index: int | None = None,
    gray: bool = False,
) -> tuple[np.ndarray, dict]:
    """Read one 2D image as float32 (H, W) or (H, W, 3), plus metadata.

    window: DICOM only, a preset name from WINDOW_PRESETS or an explicit (centre, width).
    frame: DICOM multi-frame or multipage TIFF index (default 0 with a notice). slice_index/axis/volume_index:
    NIfTI slice selection (default the middle slice along ``axis`` and, for 4D data, volume 0, with a notice).
    gray: convert colour to luminance (ITU-R BT.601 weights, as PIL's "L").
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path=path, hint="check the path")
    if path.is_dir():
        raise InputError("is a folder, not an image file", path=path, hint="pass the image files inside it")
    kind = image_kind(path)
    if kind is None:
        raise InputError(f"unsupported file extension {path.suffix or '(none)'!r}", path=path,
                         hint=f"convert it to one of {', '.join(IMAGE_EXTENSIONS)}")
    if kind == "raster":
        arr, meta = _read_raster(path, normalize, frame)
    elif kind == "dicom":
        from common.io.dicom import read_dicom

        arr, meta = read_dicom(path, normalize=normalize, window=window, frame=frame)
    else:
        from common.io.nifti import read_nifti

        arr, meta = read_nifti(path, normalize=normalize, slice_index=slice_index, axis=axis,
                               volume_index=volume_index)
    if gray and arr.ndim == 3:
        arr = (arr[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
    meta.update(path=str(path), kind=kind, shape=tuple(arr.shape))
    assert arr.ndim in (2, 3) and arr.dtype == np.float32, arr.shape
    return arr, meta
