"""MURA v1.1 musculoskeletal radiographs in their published layout, image- and study-level.

MURA: Rajpurkar et al. 2017, "MURA: Large Dataset for Musculoskeletal Radiographs",
https://arxiv.org/abs/1712.06957 . The release is a folder ``MURA-v1.1/`` holding

    train_image_paths.csv      MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive/image1.png
    train_labeled_studies.csv  MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive/,1
    valid_image_paths.csv, valid_labeled_studies.csv
    train/XR_<PART>/patientNNNNN/studyK_<positive|negative>/imageM.png, valid/...

(no header rows; paths are relative to the folder that contains ``MURA-v1.1/``). A study is
abnormal (label 1) when its folder ends in ``_positive``. The paper scores a study by the mean of its
images' abnormality probabilities; :meth:`MURA.study_predictions` does that. There are no lesion
masks in MURA, so ``mask`` is all zeros (the bone phantom has real ones).

Usage: ``MURA("/data", split="valid", size=224, body_parts=["XR_WRIST"])[0]["image"].shape == (1, 224, 224)``
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from common.data.datasets.files import as_root, check_choice, check_size, image_tensor, load_image
from common.errors import InputError

BODY_PARTS = ("XR_ELBOW", "XR_FINGER", "XR_FOREARM", "XR_HAND", "XR_HUMERUS", "XR_SHOULDER", "XR_WRIST")
MURA_SPLITS = ("train", "valid")
FOLDER = "MURA-v1.1"


class Study(NamedTuple):
    """One radiographic study: its folder (as in the CSV), label, and the dataset indices of its images."""

    path: str
    label: int
    indices: tuple[int, ...]


def find_mura_base(root: str | os.PathLike, split: str = "train") -> Path:
    """The folder that contains ``MURA-v1.1/`` (the CSV paths are relative to it); ``root`` may be either."""
    root = as_root(root, "MURA")
    name = f"{split}_image_paths.csv"
    for base in (root, root.parent):
        if (base / FOLDER / name).is_file():
            return base
    raise InputError(f"{FOLDER}/{name} not found under {root}",
                     hint=f"pass the folder that contains {FOLDER}/ (or {FOLDER}/ itself)")


def _read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        rows = [[c.strip() for c in row] for row in csv.reader(fh) if row and row[0].strip()]
    # The release has no header; tolerate one added by hand.
    if rows and not rows[0][0].startswith(FOLDER):
        rows = rows[1:]
    return rows


def _parse_path(path: str, csv_file: Path) -> tuple[str, str, str, int]:
    """(body part, patient, study folder, label) from MURA-v1.1/<split>/<part>/<patient>/<study>_<label>/..."""
    parts = path.strip("/").split("/")
    if len(parts) < 6 or parts[0] != FOLDER or parts[2] not in BODY_PARTS:
        raise InputError(f"unexpected row {path!r}", path=csv_file,
                         hint=f"rows look like {FOLDER}/train/XR_SHOULDER/patient00001/study1_positive/image1.png")
    study = parts[4]
    if study.endswith("_positive"):
        label = 1
    elif study.endswith("_negative"):
        label = 0
    else:
        raise InputError(f"study folder {study!r} in row {path!r} ends in neither _positive nor _negative",
                         path=csv_file)
    return parts[2], parts[3], study, label


class MURA(Dataset):
    """MURA radiographs (Rajpurkar et al. 2017): image-level items, or whole studies with ``level="study"``.

    Image item: {"image": (1, H, W) float32 in [0, 1], "label": int64, "mask": (H, W) uint8 zeros, "meta"}.
    Study item: {"image": (N, 1, H, W), "label", "mask": (N, H, W), "meta"} (variable N: batch size 1).
    Non-square radiographs are padded to square with black, then resized to ``size``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", size: int | None = 224,
                 body_parts: Sequence[str] | None = None, level: str = "image",
                 transform: Callable[[dict], dict] | None = None):
        split = {"val": "valid"}.get(split, split)  # the project says "val", MURA says "valid"
        check_choice("MURA split", split, MURA_SPLITS)
        check_choice("MURA level", level, ("image", "study"))
        parts = tuple(body_parts) if body_parts else BODY_PARTS
        for part in parts:
            check_choice("MURA body part", part, BODY_PARTS)
        self.data_root = find_mura_base(root, split)
        self.split, self.size, self.level, self.transform = split, check_size(size), level, transform
        self.body_parts = parts
        csv_file = self.data_root / FOLDER / f"{split}_image_paths.csv"
        self.items: list[dict] = []
        study_ids: dict[str, int] = {}
        members: list[list[int]] = []
        for row in _read_rows(csv_file):
            part, patient, _, label = _parse_path(row[0], csv_file)
            if part not in parts:
                continue
            study_path = row[0].rsplit("/", 1)[0] + "/"
            if study_path not in study_ids:
                study_ids[study_path] = len(members)
                members.append([])
            members[study_ids[study_path]].append(len(self.items))
            # "study" is the study folder's path: unique, unlike "study1_positive", which every patient has
            self.items.append({"path": row[0], "body_part": part, "patient": patient, "study": study_path.rstrip("/"),
                               "study_id": study_ids[study_path], "label": label})
        if not self.items:
            raise InputError(f"no images of {', '.join(parts)} listed", path=csv_file,
                             hint="check the body-part filter and that the CSV is the published one")
        labels = {path: self.items[m[0]]["label"] for path, m in zip(study_ids, members)}
        self._check_study_labels(labels)
        self.studies = [Study(path, labels[path], tuple(m)) for path, m in zip(study_ids, members)]
        first = self.data_root / self.items[0]["path"]
        if not first.is_file():
            raise InputError(f"{self.items[0]['path']} (first row of {csv_file.name}) not found under {self.data_root}",
                             hint=f"unpack the images next to the CSV files, inside {FOLDER}/{split}/")

    def _check_study_labels(self, labels: dict[str, int]) -> None:
        """The labeled-studies CSV, when present, must agree with the folder names."""
        path = self.data_root / FOLDER / f"{self.split}_labeled_studies.csv"
        if not path.is_file():
            return
        for row in _read_rows(path):
            study = row[0] if row[0].endswith("/") else row[0] + "/"
            if study in labels and len(row) > 1 and int(float(row[1])) != labels[study]:
                raise InputError(f"study {study} is labelled {row[1]} but its folder name says {labels[study]}",
                                 path=path, hint="the CSV and the folders disagree; re-extract the release")

    def __len__(self) -> int:
        return len(self.studies) if self.level == "study" else len(self.items)

    @property
    def records(self) -> list[dict]:
        """Per image: path, label, body_part, patient, study, study_id -- without decoding any image."""
        return self.items

    @property
    def labels(self) -> np.ndarray:
        """Image-level labels (len = number of images), for samplers and class weights."""
        return np.array([it["label"] for it in self.items], dtype=np.int64)

    def _meta(self, it: dict) -> dict:
        return {"body_part": it["body_part"], "patient": it["patient"], "study": it["study"],
                "study_id": it["study_id"], "path": it["path"], "split": self.split}

    def _image(self, index: int) -> dict:
        it = self.items[index]
        img, _ = load_image(self.data_root / it["path"], self.size, channels=1)  # (H, W)
        return {"image": image_tensor(img),  # (1, H, W)
                "label": torch.tensor(it["label"], dtype=torch.int64),
                "mask": torch.zeros(img.shape, dtype=torch.uint8),  # (H, W): MURA has no lesion masks
                "meta": self._meta(it)}

    def __getitem__(self, index: int) -> dict:
        if self.level == "image":
            sample = self._image(index)
        else:
            study = self.studies[index]
            images = [self._image(i) for i in study.indices]
            meta = {k: v for k, v in images[0]["meta"].items() if k != "path"}
            meta["n_images"] = len(images)
            sample = {"image": torch.stack([s["image"] for s in images]),  # (N, 1, H, W)
                      "label": torch.tensor(study.label, dtype=torch.int64),
                      "mask": torch.stack([s["mask"] for s in images]),  # (N, H, W)
                      "meta": meta}
        return self.transform(sample) if self.transform is not None else sample

    def study_predictions(self, image_probs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Study probability = mean of its images' probabilities (Rajpurkar et al. 2017) -> (probs, labels)."""
        probs = np.asarray(image_probs, dtype=np.float64).reshape(-1)
        if probs.shape[0] != len(self.items):
            raise ValueError(f"expected {len(self.items)} image probabilities, got {probs.shape[0]}")
        study_probs = np.array([probs[list(s.indices)].mean() for s in self.studies])
        return study_probs, np.array([s.label for s in self.studies], dtype=np.int64)
