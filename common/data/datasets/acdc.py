"""ACDC cardiac cine-MRI (ED/ES short-axis volumes with RV / myocardium / LV labels) in its published layout.

ACDC: Bernard et al. 2018, "Deep learning techniques for automatic MRI cardiac multi-structures
segmentation and diagnosis: is the problem solved?", IEEE TMI, https://doi.org/10.1109/TMI.2018.2837502 .
The release holds ``training/`` (patients 001-100) and ``testing/`` (101-150), one folder per patient:

    training/patient001/Info.cfg                  ED: 1 / ES: 12 / Group: DCM / Height / NbFrame / Weight
    training/patient001/patient001_frame01.nii.gz and patient001_frame01_gt.nii.gz   (ED)
    training/patient001/patient001_frame12.nii.gz and patient001_frame12_gt.nii.gz   (ES)

Labels: 0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity. Slices are the volumes' third axis;
each slice is shown the way :func:`common.io.read_image` shows a NIfTI slice (rows = y, flipped).
Intensities are normalised per volume (percentile clip, then rescale to [0, 1]), since MR has no
absolute intensity scale. ``split="train"/"val"`` divide the ``training/`` patients at patient
level with a seed, so no patient's slices end up on both sides.

Usage: ``ACDC("/data/ACDC", split="train", mode="slice", size=128)[0]["mask"].shape == (128, 128)``
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from common.data.datasets.files import (
    as_root,
    check_choice,
    check_size,
    group_split,
    pad_to_square,
    rel,
    resize_image,
    resize_mask,
)
from common.errors import InputError

PHASES = ("ED", "ES")
ACDC_SPLITS = ("train", "val", "all", "test")
LABELS = {"background": 0, "rv": 1, "myo": 2, "lv": 3}
PATIENT_DIR = re.compile(r"^patient(\d+)$")


def read_info(path: Path) -> dict:
    """Parse an ACDC ``Info.cfg`` (``key: value`` lines) into a dict; ED/ES/NbFrame become ints."""
    info: dict = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            key, value = (s.strip() for s in line.split(":", 1))
            info[key] = value
    for key in ("ED", "ES"):
        if key not in info:
            raise InputError(f"no '{key}:' line", path=path, hint="Info.cfg lists the ED and ES frame numbers")
        try:
            info[key] = int(float(info[key]))
        except ValueError:
            raise InputError(f"'{key}: {info[key]}' is not a frame number", path=path) from None
    if "NbFrame" in info:
        info["NbFrame"] = int(float(info["NbFrame"]))
    return info


def normalise_volume(volume: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Clip to the volume's [low, high] percentiles and rescale to [0, 1] (robust to a few hot voxels)."""
    lo, hi = np.percentile(volume, [low, high])
    if hi <= lo:
        return np.zeros(volume.shape, np.float32)
    return ((np.clip(volume, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def to_display(volume: np.ndarray) -> np.ndarray:
    """NIfTI (x, y, z) -> (z, rows, cols), each slice oriented as common.io.read_image shows it."""
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0))[:, ::-1, :])


def _nifti(folder: Path, stem: str) -> Path:
    for ext in (".nii.gz", ".nii"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    raise InputError(f"{stem}.nii.gz not found in {folder}",
                     hint="each ACDC patient folder holds the ED and ES frames and their _gt masks")


def find_patient_folder(root: str | os.PathLike, split: str) -> Path:
    """``training/`` (or ``testing/`` for split="test") under root, under root/database, or root itself."""
    root = as_root(root, "ACDC")
    sub = "testing" if split == "test" else "training"
    for folder in (root / sub, root / "database" / sub, root):
        if folder.is_dir() and any(PATIENT_DIR.match(p.name) for p in folder.iterdir() if p.is_dir()):
            return folder
    raise InputError(f"{sub}/patientNNN/Info.cfg not found under {root}",
                     hint=f"pass the ACDC folder that contains {sub}/ (or the {sub}/ folder itself)")


class ACDC(Dataset):
    """ACDC ED/ES frames (Bernard et al. 2018) as 2D slices or 3D volumes with labels 0-3.

    slice item:  {"image": (1, H, W) float32, "mask": (H, W) int64, "meta": {volume, slice, n_slices, ...}}
    volume item: {"image": (1, D, H, W) float32, "mask": (D, H, W) int64, "meta"} (D varies: batch size 1)
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", mode: str = "slice", size: int | None = 128,
                 phases: str | Sequence[str] = "both", val_fraction: float = 0.2, seed: int = 0,
                 percentiles: tuple[float, float] = (1.0, 99.0), cache: bool = True,
                 transform: Callable[[dict], dict] | None = None):
        check_choice("ACDC split", split, ACDC_SPLITS)
        check_choice("ACDC mode", mode, ("slice", "volume"))
        phases = PHASES if phases == "both" else (phases,) if isinstance(phases, str) else tuple(phases)
        for phase in phases:
            check_choice("cardiac phase", phase, PHASES)
        self.folder = find_patient_folder(root, split)
        self.split, self.mode, self.size = split, mode, check_size(size)
        self.phases, self.percentiles, self.cache, self.transform = phases, percentiles, cache, transform
        patients = sorted(p for p in self.folder.iterdir() if p.is_dir() and PATIENT_DIR.match(p.name))
        if split in ("train", "val"):
            train, val = group_split([p.name for p in patients], val_fraction, seed)
            keep = train if split == "train" else val
            patients = [p for p in patients if p.name in keep]
        self.patients = [p.name for p in patients]
        self.volumes: list[dict] = []
        for folder in patients:
            cfg = folder / "Info.cfg"
            if not cfg.is_file():
                raise InputError(f"{rel(cfg, self.folder)} not found under {self.folder}",
                                 hint="every ACDC patient folder has an Info.cfg with its ED/ES frames")
            info = read_info(cfg)
            for phase in phases:
                stem = f"{folder.name}_frame{info[phase]:02d}"
                self.volumes.append({"patient": folder.name, "patient_id": int(PATIENT_DIR.match(folder.name)[1]),
                                     "phase": phase, "frame": info[phase], "group": str(info.get("Group", "")),
                                     "image": _nifti(folder, stem), "gt": _nifti(folder, stem + "_gt")})
        if not self.volumes:
            raise InputError(f"no patients left in split {split!r} of {self.folder}",
                             hint="use split='all', or a smaller val_fraction with few patients")
        for vol in self.volumes:
            vol.update(self._header(vol["image"]))
        self.index = [(v, s) for v, vol in enumerate(self.volumes) for s in range(vol["n_slices"])]
        self._store: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _header(self, path: Path) -> dict:
        """Slice count and voxel spacing from the NIfTI header alone (no pixel data read)."""
        import nibabel as nib

        try:
            img = nib.load(str(path))
        except Exception as exc:  # nibabel raises several types on bad files
            raise InputError(f"cannot read the NIfTI header ({type(exc).__name__}: {exc})", path=path,
                             hint="the file is truncated or not NIfTI; re-extract it") from None
        if len(img.shape) != 3:
            raise InputError(f"expected a 3D volume (x, y, slices), got shape {img.shape}", path=path,
                             hint="pass the ED/ES frame files, not the 4D cine")
        x, y, d = img.shape
        zooms = [float(z) for z in img.header.get_zooms()[:3]]
        side = max(x, y)
        scale = side / self.size if self.size else 1.0  # pixel spacing after pad-to-square + resize
        return {"n_slices": int(d), "spacing_row": zooms[1] * scale, "spacing_col": zooms[0] * scale,
                "spacing_slice": zooms[2]}

    def __len__(self) -> int:
        return len(self.volumes) if self.mode == "volume" else len(self.index)

    def volume(self, v: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised image (D, H, W) float32 and labels (D, H, W) int64 of volume ``v``, resized."""
        if v in self._store:
            return self._store[v]
        import nibabel as nib

        vol = self.volumes[v]
        try:
            image = np.asanyarray(nib.load(str(vol["image"])).dataobj).astype(np.float32)
            gt = np.asanyarray(nib.load(str(vol["gt"])).dataobj)
        except Exception as exc:
            raise InputError(f"cannot read the NIfTI volume ({type(exc).__name__}: {exc})", path=vol["image"],
                             hint="the file is truncated or corrupt; re-extract it") from None
        if gt.shape != image.shape:
            raise InputError(f"mask shape {gt.shape} differs from image shape {image.shape}", path=vol["gt"])
        labels = np.rint(gt).astype(np.int64)
        if labels.min() < 0 or labels.max() > 3:
            raise InputError(f"mask values {np.unique(labels)[:6].tolist()} outside ACDC's 0..3", path=vol["gt"])
        image = to_display(normalise_volume(image, *self.percentiles))  # (D, H, W)
        labels = to_display(labels)
        image = np.stack([resize_image(pad_to_square(s, 0.0), self.size) for s in image])
        labels = resize_mask(np.stack([pad_to_square(s, 0) for s in labels]), self.size)
        out = (image, labels)
        if self.cache:
            self._store[v] = out
        return out

    def _meta(self, v: int) -> dict:
        vol = self.volumes[v]
        return {"volume": v, "n_slices": vol["n_slices"], "patient": vol["patient"], "patient_id": vol["patient_id"],
                "phase": vol["phase"], "frame": vol["frame"], "group": vol["group"],
                "spacing_row": vol["spacing_row"], "spacing_col": vol["spacing_col"],
                "spacing_slice": vol["spacing_slice"]}

    def __getitem__(self, index: int) -> dict:
        if self.mode == "volume":
            image, labels = self.volume(index)
            sample = {"image": torch.from_numpy(image[None].copy()),  # (1, D, H, W)
                      "mask": torch.from_numpy(labels.copy()), "meta": self._meta(index)}  # (D, H, W)
        else:
            v, s = self.index[index]
            image, labels = self.volume(v)
            meta = self._meta(v)
            meta["slice"] = s
            sample = {"image": torch.from_numpy(image[s][None].copy()),  # (1, H, W)
                      "mask": torch.from_numpy(labels[s].copy()), "meta": meta}  # (H, W)
        return self.transform(sample) if self.transform is not None else sample
