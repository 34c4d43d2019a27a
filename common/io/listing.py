"""Expand the files, folders and glob patterns a user passes on the command line into image paths."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable

from common.errors import InputError

RASTER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_EXTENSIONS = (".dcm", ".dicom")
NIFTI_EXTENSIONS = (".nii", ".nii.gz")
IMAGE_EXTENSIONS = RASTER_EXTENSIONS + DICOM_EXTENSIONS + NIFTI_EXTENSIONS


def image_kind(path: str | os.PathLike) -> str | None:
    """'raster', 'dicom' or 'nifti' from the file name, or None for an unsupported extension."""
    name = str(path).lower()
    if name.endswith(NIFTI_EXTENSIONS):
        return "nifti"
    if name.endswith(DICOM_EXTENSIONS):
        return "dicom"
    if name.endswith(RASTER_EXTENSIONS):
        return "raster"
    return None


def _files_in(folder: Path, recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and image_kind(p) is not None)


def list_images(specs: str | os.PathLike | Iterable[str | os.PathLike], recursive: bool = True) -> list[Path]:
    """Files, folders (searched recursively) and globs -> sorted unique image paths; bad specs raise InputError."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    found: list[Path] = []
    for spec in specs:
        spec = str(spec)
        path = Path(spec).expanduser()
        if glob.has_magic(spec):
            matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(spec), recursive=True))]
            files = [m for m in matches if m.is_file() and image_kind(m) is not None]
            for m in matches:
                if m.is_dir():
                    files += _files_in(m, recursive)
            if not files:
                raise InputError("the pattern matches no image files", path=spec,
                                 hint=f"supported: {', '.join(IMAGE_EXTENSIONS)}")
            found += files
        elif path.is_dir():
            files = _files_in(path, recursive)
            if not files:
                raise InputError("folder holds no image files", path=path,
                                 hint=f"put images ({', '.join(IMAGE_EXTENSIONS)}) there or pass files")
            found += files
        elif path.is_file():
            if image_kind(path) is None:
                raise InputError(f"unsupported file extension {path.suffix or '(none)'!r}", path=path,
                                 hint=f"convert it to one of {', '.join(IMAGE_EXTENSIONS)}")
            found.append(path)
        else:
            raise InputError("no such file or folder", path=path, hint="check the path")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique
