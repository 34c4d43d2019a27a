"""Reading a segmentation label map (class indices per pixel) from a file, refusing what is not one.

Label maps come as gray PNGs, palette PNGs (the palette only colours the indices: PASCAL VOC, many annotation
tools), 16-bit PNG/TIFF, DICOM or NIfTI. A colour photo or a JPEG is not a label map: JPEG's lossy compression
invents intermediate values along every edge, and an RGB image has no single class per pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import InputError

LOSSY_EXTENSIONS = (".jpg", ".jpeg")


def read_label_map(path, **read_kw) -> tuple[np.ndarray, dict]:
    """(H, W) int64 class indices and metadata; ``read_kw`` go to ``read_image`` (frame, slice_index, ...)."""
    from common.io.listing import image_kind
    from common.io.reader import read_image

    path = Path(path)
    if path.suffix.lower() in LOSSY_EXTENSIONS:
        raise InputError("a JPEG cannot hold a label map (lossy compression changes the class values along "
                         "every edge)", path=path, hint="save the mask as PNG (gray or palette) or NIfTI")
    if path.exists() and image_kind(path) == "raster":
        from PIL import Image

        try:
            with Image.open(path) as im:
                if im.mode == "P":  # the indices themselves, not the colours the palette gives them
                    if getattr(im, "n_frames", 1) > 1:
                        im.seek(int(read_kw.get("frame") or 0))
                    labels = np.asarray(im).astype(np.int64)
                    return labels, {"format": im.format, "mode": "P", "path": str(path), "kind": "raster",
                                    "shape": labels.shape}
        except (OSError, SyntaxError, ValueError):
            pass  # read_image below names the problem in one line
    arr, meta = read_image(path, normalize=False, **read_kw)
    if arr.ndim == 3:
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])):
            raise InputError("a colour image, not a label map (class indices)", path=path,
                             hint="save the mask with one channel of class indices (a gray or palette PNG)")
        arr = arr[..., 0]
    rounded = np.rint(arr)
    if not np.allclose(arr, rounded, atol=1e-3):
        raise InputError(f"holds non-integer values ({float(arr.min()):g} to {float(arr.max()):g}), not class "
                         "indices", path=path, hint="pass the label map, not an image or a probability map")
    labels = rounded.astype(np.int64)
    assert labels.ndim == 2, labels.shape
    return labels, meta


def describe_classes(labels: np.ndarray, limit: int = 8) -> str:
    """'0, 1, 3' -- the classes a label map holds, for messages."""
    values = np.unique(labels)
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f" ... ({len(values)} values)" if len(values) > limit else "")
