"""Reading medical images of every common format into float32 arrays, and atomic writers.

``read_image(path)`` -> ``(array, meta)``; array is (H, W) or (H, W, C) float32. Bad input raises
:class:`common.errors.InputError` whose message names the file and the fix.
"""

from common.io.atomic import atomic_path, save_checkpoint, save_csv, save_image, save_json, save_npz
from common.io.listing import IMAGE_EXTENSIONS, list_images
from common.io.reader import WINDOW_PRESETS, read_image

__all__ = [
    "IMAGE_EXTENSIONS", "WINDOW_PRESETS", "atomic_path", "list_images", "read_image", "save_checkpoint",
    "save_csv", "save_image", "save_json", "save_npz",
]
