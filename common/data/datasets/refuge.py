"""REFUGE fundus photographs with optic disc / cup masks, in the published layout or a simplified one.

REFUGE: Orlando et al. 2020, "REFUGE Challenge: A unified framework for evaluating automated methods
for glaucoma assessment from fundus photographs", Medical Image Analysis 59,
https://arxiv.org/abs/1910.03667 . Training images come from a Zeiss Visucam 500 (domain "A"),
validation and test images from a Canon CR-2 (domain "B"): the camera shift that the
domain-adaptation demos measure. Supported layouts, under ``root`` or ``root/REFUGE``:

  published (the challenge's zip files unpacked side by side)
    train  Training400/{Glaucoma,Non-Glaucoma}/g0001.jpg
           Annotation-Training400/Disc_Cup_Masks/{Glaucoma,Non-Glaucoma}/g0001.bmp
    val    REFUGE-Validation400/V0001.jpg   (or Validation400/)
           REFUGE-Validation400-GT/Disc_Cup_Masks/V0001.bmp
    test   Test400/T0001.jpg                (or REFUGE-Test400/)
           REFUGE-Test-GT/Disc_Cup_Masks/{G,N}/T0001.bmp
  simplified
    {train,val,test}/images/<name>.<jpg|png|...> and {train,val,test}/masks/<name>.<bmp|png>

Masks use REFUGE's gray levels: 0 cup, 128 disc rim, 255 background; they are snapped to the
nearest level (so anti-aliased or re-saved masks still decode). The glaucoma label (meta
``glaucoma``: 1, 0, or -1 when unknown) comes from a Glaucoma / Non-Glaucoma / G / N folder; the
validation labels ship in a spreadsheet, which is not read. ``cdr`` is the vertical cup-to-disc
ratio measured on the full-resolution mask, as the challenge evaluates it.

Usage: ``REFUGE("/data", split="val", size=256)[0]["seg"].shape == (256, 256)``
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from common.data.datasets.files import (
    SPLITS,
    as_root,
    check_choice,
    check_size,
    image_tensor,
    load_image,
    load_label_map,
    pad_to_square,
    rel,
    resize_mask,
)
from common.data.phantoms.fundus import REFUGE_BACKGROUND, REFUGE_CUP, REFUGE_RIM, refuge_to_seg, vertical_cdr
from common.errors import InputError
from common.io.listing import RASTER_EXTENSIONS

DOMAINS = {"train": "A", "val": "B", "test": "B"}
CAMERAS = {"A": "Zeiss Visucam 500", "B": "Canon CR-2"}
# (image folders tried in order, mask folder) of the published release, per split.
PUBLISHED = {
    "train": (("Training400",), "Annotation-Training400/Disc_Cup_Masks"),
    "val": (("REFUGE-Validation400", "Validation400"), "REFUGE-Validation400-GT/Disc_Cup_Masks"),
    "test": (("Test400", "REFUGE-Test400"), "REFUGE-Test-GT/Disc_Cup_Masks"),
}
GLAUCOMA_FOLDERS = {"glaucoma": 1, "g": 1, "non-glaucoma": 0, "n": 0}


def decode_refuge_mask(raw: np.ndarray) -> np.ndarray:
    """Gray mask values -> exact REFUGE levels (uint8): < 64 cup (0), < 192 rim (128), else background (255)."""
    raw = np.asarray(raw)
    out = np.full(raw.shape, REFUGE_BACKGROUND, np.uint8)
    out[raw < 192] = REFUGE_RIM
    out[raw < 64] = REFUGE_CUP
    return out


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in RASTER_EXTENSIONS)


def _glaucoma(*paths: Path) -> int:
    for path in paths:
        label = GLAUCOMA_FOLDERS.get(path.parent.name.lower())
        if label is not None:
            return label
    return -1


def find_refuge_split(root: str | os.PathLike, split: str) -> tuple[Path, Path, Path, str]:
    """(base, image folder, mask folder, layout name) of one split; a clear InputError when absent."""
    root = as_root(root, "REFUGE")
    image_dirs, mask_dir = PUBLISHED[split]
    for base in (root, root / "REFUGE"):
        for image_dir in image_dirs:
            if (base / image_dir).is_dir():
                if not (base / mask_dir).is_dir():
                    raise InputError(f"{mask_dir}/ not found under {base}",
                                     hint=f"unpack the {split} ground-truth zip next to {image_dir}/")
                return base, base / image_dir, base / mask_dir, "published"
        if (base / split / "images").is_dir():
            if not (base / split / "masks").is_dir():
                raise InputError(f"{split}/masks/ not found under {base}",
                                 hint=f"put the masks beside {split}/images/ with the same file names")
            return base, base / split / "images", base / split / "masks", "simplified"
    raise InputError(f"{image_dirs[0]}/ (published layout) or {split}/images/ (simplified) not found under {root}",
                     hint="pass the folder that holds the unpacked REFUGE subsets")


class REFUGE(Dataset):
    """REFUGE fundus images (Orlando et al. 2020): image (3, H, W), REFUGE-encoded mask, class map, vCDR.

    Item: {"image": (3, H, W) float32, "mask": (H, W) uint8 (0 cup, 128 rim, 255 bg),
    "seg": (H, W) int64 (0 bg, 1 rim, 2 cup), "cdr": float32, "meta": {domain, split, name, ...}}.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", size: int | None = 256, cache: bool = False,
                 transform: Callable[[dict], dict] | None = None):
        check_choice("REFUGE split", split, SPLITS)
        self.data_root, image_dir, mask_dir, self.layout = find_refuge_split(root, split)
        self.split, self.size, self.domain = split, check_size(size), DOMAINS[split]
        self.cache, self.transform = cache, transform
        masks: dict[str, Path] = {}
        for path in _files(mask_dir):
            masks.setdefault(path.stem, path)
        images = _files(image_dir)
        if not images:
            raise InputError(f"no images in {rel(image_dir, self.data_root)}/", path=self.data_root,
                             hint=f"supported: {', '.join(RASTER_EXTENSIONS)}")
        self.items = []
        for image in images:
            if image.stem not in masks:
                raise InputError(f"no mask named {image.stem}.bmp under {rel(mask_dir, self.data_root)}/ for "
                                 f"{rel(image, self.data_root)}", path=self.data_root,
                                 hint="masks must share the image's file name (any image extension)")
            self.items.append({"image": image, "mask": masks[image.stem],
                               "glaucoma": _glaucoma(image, masks[image.stem])})
        self._store: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, index: int) -> dict:
        if index in self._store:
            return self._store[index]
        it = self.items[index]
        full = decode_refuge_mask(load_label_map(it["mask"]))  # (H0, W0) at native resolution
        image, native = load_image(it["image"], self.size, channels=3)  # (H, W, 3)
        if full.shape != native:
            raise InputError(f"mask size {full.shape} differs from its image's {native}", path=it["mask"],
                             hint="the mask must have the image's height and width")
        mask = resize_mask(pad_to_square(full, REFUGE_BACKGROUND), self.size)
        out = {"image": image, "mask": mask, "cdr": vertical_cdr(full)}
        if self.cache:
            self._store[index] = out
        return out

    def __getitem__(self, index: int) -> dict:
        it, data = self.items[index], self._load(index)
        meta = {"domain": self.domain, "camera": CAMERAS[self.domain], "split": self.split,
                "name": it["image"].stem, "path": rel(it["image"], self.data_root), "glaucoma": it["glaucoma"]}
        sample = {"image": image_tensor(data["image"]),  # (3, H, W)
                  "mask": torch.from_numpy(data["mask"].copy()),  # (H, W) uint8 REFUGE levels
                  "seg": torch.from_numpy(refuge_to_seg(data["mask"])),  # (H, W) int64
                  "cdr": torch.tensor(data["cdr"], dtype=torch.float32),
                  "meta": meta}
        return self.transform(sample) if self.transform is not None else sample

