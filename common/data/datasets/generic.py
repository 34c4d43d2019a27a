"""Your own data without code: class-per-folder images, a CSV of (path, label), or paired image/mask folders.

Three layouts a user can put any labelled collection into (any format common.io reads: PNG, JPEG,
BMP, TIFF, DICOM, NIfTI slices):

    folder   root/<class name>/<image>            label = index of the class folder in sorted order
    csv      a CSV of ``path,label`` rows          paths relative to the CSV's folder; header optional
    pairs    root/images/<name>.* + root/masks/<name>.*   masks hold integer labels (0/255 -> 0/1)

Each accepts ``split``: with it, ``root/<split>/`` (or ``<split>.csv``) is used instead of ``root``.
Classification items look like the bone phantom's ({"image", "label", "mask" zeros, "meta"});
segmentation items are {"image", "mask" int64, "meta"}.

Usage: ``ImageFolder("/data/xrays", split="train", size=128, channels=1)[0]["label"]``
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from common.data.datasets.files import (
    as_root,
    check_channels,
    check_size,
    image_tensor,
    load_image,
    load_label_map,
    pad_to_square,
    rel,
    resize_mask,
)
from common.errors import InputError
from common.io.listing import IMAGE_EXTENSIONS, image_kind


def _split_folder(root: Path, split: str | None) -> Path:
    if split is None:
        return root
    folder = root / split
    if not folder.is_dir():
        raise InputError(f"{split}/ not found under {root}",
                         hint=f"make {root}/{split}/ or leave out the split to use {root} as a whole")
    return folder


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and image_kind(p) is not None)


class _Classification(Dataset):
    """Shared item construction for labelled image lists: {"image", "label", "mask" zeros, "meta"}."""

    def __init__(self, root: Path, files: list[tuple[Path, int]], classes: list[str], size: int | None,
                 channels: int, transform: Callable[[dict], dict] | None):
        self.root, self.files, self.classes = root, files, classes
        self.size, self.channels, self.transform = check_size(size), check_channels(channels), transform

    def __len__(self) -> int:
        return len(self.files)

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.files], dtype=np.int64)

    def __getitem__(self, index: int) -> dict:
        path, label = self.files[index]
        img, _ = load_image(path, self.size, self.channels)  # (H, W) or (H, W, 3)
        sample = {"image": image_tensor(img),  # (C, H, W)
                  "label": torch.tensor(label, dtype=torch.int64),
                  "mask": torch.zeros(img.shape[:2], dtype=torch.uint8),  # (H, W): no pixel labels here
                  "meta": {"path": rel(path, self.root), "class_name": self.classes[label]}}
        return self.transform(sample) if self.transform is not None else sample


class ImageFolder(_Classification):
    """Class-per-subfolder images: label = index of the subfolder in sorted order (as torchvision's ImageFolder)."""

    def __init__(self, root: str | os.PathLike, split: str | None = None, size: int | None = 128, channels: int = 1,
                 transform: Callable[[dict], dict] | None = None):
        folder = _split_folder(as_root(root, "folder"), split)
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise InputError(f"no class subfolders in {folder}",
                             hint="put each class's images in its own subfolder, e.g. normal/ and abnormal/")
        files = []
        for label, name in enumerate(classes):
            found = _image_files(folder / name)
            if not found:
                raise InputError(f"class folder {name}/ holds no images", path=folder,
                                 hint=f"supported: {', '.join(IMAGE_EXTENSIONS)}")
            files += [(p, label) for p in found]
        super().__init__(folder, files, classes, size, channels, transform)


class CSVImages(_Classification):
    """Images listed in a CSV of ``path,label`` rows (integer labels), paths relative to the CSV's folder."""

    def __init__(self, root: str | os.PathLike, split: str | None = None, size: int | None = 128, channels: int = 1,
                 transform: Callable[[dict], dict] | None = None):
        path = as_root(root, "csv")
        if path.is_dir():
            candidates = [path / f"{split}.csv"] if split else sorted(path.glob("*.csv"))
            if len(candidates) != 1 or not candidates[0].is_file():
                want = f"{split}.csv" if split else "exactly one .csv file"
                raise InputError(f"{want} not found in {path}", hint="pass the CSV file itself")
            path = candidates[0]
        rows = []
        with open(path, newline="") as fh:
            for n, row in enumerate(csv.reader(fh), start=1):
                if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                    continue
                if len(row) < 2:
                    raise InputError(f"line {n} has no label column", path=path, hint="write rows as path,label")
                try:
                    label = int(row[1])
                except ValueError:
                    if not rows and n == 1:  # a header line
                        continue
                    raise InputError(f"line {n}: label {row[1]!r} is not an integer", path=path) from None
                image = path.parent / row[0].strip()
                if not image.is_file():
                    raise InputError(f"line {n}: {row[0].strip()} not found next to the CSV", path=path,
                                     hint="paths in the CSV are relative to the CSV's folder")
                rows.append((image, label))
        if not rows:
            raise InputError("the CSV lists no images", path=path, hint="write one path,label row per image")
        if min(label for _, label in rows) < 0:
            raise InputError("labels must be 0, 1, 2, ...", path=path)
        n_classes = max(label for _, label in rows) + 1
        super().__init__(path.parent, rows, [str(k) for k in range(n_classes)], size, channels, transform)


class ImageMaskPairs(Dataset):
    """Paired ``images/`` and ``masks/`` folders matched by file stem; {"image", "mask" int64 (H, W), "meta"}.

    A mask holding only 0 and 255 is read as binary (0/1); otherwise its integer values are the labels.
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None, size: int | None = 128, channels: int = 1,
                 transform: Callable[[dict], dict] | None = None, image_dir: str = "images", mask_dir: str = "masks"):
        folder = _split_folder(as_root(root, "pairs"), split)
        images_at, masks_at = folder / image_dir, folder / mask_dir
        for sub in (images_at, masks_at):
            if not sub.is_dir():
                raise InputError(f"{sub.name}/ not found under {folder}",
                                 hint=f"put images in {image_dir}/ and masks with the same names in {mask_dir}/")
        masks = {}
        for p in _image_files(masks_at):
            masks.setdefault(_stem(p), p)
        self.pairs = []
        for image in _image_files(images_at):
            if _stem(image) not in masks:
                raise InputError(f"no mask named {_stem(image)}.* in {mask_dir}/ for {image.name}", path=folder,
                                 hint="each image needs a mask with the same file name")
            self.pairs.append((image, masks[_stem(image)]))
        if not self.pairs:
            raise InputError(f"no images in {image_dir}/", path=folder,
                             hint=f"supported: {', '.join(IMAGE_EXTENSIONS)}")
        self.root, self.size, self.channels = folder, check_size(size), check_channels(channels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        image_path, mask_path = self.pairs[index]
        img, native = load_image(image_path, self.size, self.channels)
        labels = load_label_map(mask_path)
        if labels.shape != native:
            raise InputError(f"mask size {labels.shape} differs from its image's {native}", path=mask_path,
                             hint="a mask must have its image's height and width")
        if set(np.unique(labels).tolist()) <= {0, 255}:
            labels = (labels == 255).astype(np.int64)  # binary masks saved as 0/255 for viewing
        mask = resize_mask(pad_to_square(labels, 0), self.size)
        sample = {"image": image_tensor(img),  # (C, H, W)
                  "mask": torch.from_numpy(mask),  # (H, W) int64
                  "meta": {"path": rel(image_path, self.root), "mask_path": rel(mask_path, self.root)}}
        return self.transform(sample) if self.transform is not None else sample


def _stem(path: Path) -> str:
    """File name without its image extension (``.nii.gz`` counts as one)."""
    name = path.name
    return name[:-7] if name.lower().endswith(".nii.gz") else path.stem
