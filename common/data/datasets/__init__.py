"""Loaders for real public datasets in their published layouts, and for your own folders.

Each is a torch ``Dataset`` whose items look like the matching built-in phantom's
(:mod:`common.data.phantoms`), so a script switches from phantom to real data with ``--dataset`` and
``--data-root`` alone. Every constructor takes the data root first, then ``split`` and ``size``:

    mura    MURA v1.1 radiographs (Rajpurkar et al. 2017)          -> like BoneXrayPhantom
    acdc    ACDC cardiac cine-MRI ED/ES (Bernard et al. 2018)      -> like CardiacPhantomSlices / Volumes
    refuge  REFUGE fundus disc/cup (Orlando et al. 2020)           -> like FundusPhantom
    folder  class-per-subfolder images          csv  (path,label) CSV          pairs  images/ + masks/

A wrong or empty layout raises :class:`common.errors.InputError` naming the file that was expected.
"""

from __future__ import annotations

import os
from typing import Callable

from torch.utils.data import Dataset

from common.data.datasets.acdc import ACDC
from common.data.datasets.generic import CSVImages, ImageFolder, ImageMaskPairs
from common.data.datasets.mura import MURA
from common.data.datasets.refuge import REFUGE
from common.errors import InputError

DATASETS: dict[str, Callable[..., Dataset]] = {
    "mura": MURA,
    "acdc": ACDC,
    "refuge": REFUGE,
    "folder": ImageFolder,
    "csv": CSVImages,
    "pairs": ImageMaskPairs,
}


def build_dataset(name: str, root: str | os.PathLike | None, **kwargs) -> Dataset:
    """``DATASETS[name](root, **kwargs)`` with one-line errors for an unknown name or a missing --data-root."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}", hint=f"use one of {', '.join(DATASETS)}")
    if root is None:
        raise InputError(f"--dataset {name} reads files: pass --data-root", hint="the folder of the dataset")
    return DATASETS[name](root, **kwargs)


__all__ = ["ACDC", "CSVImages", "DATASETS", "ImageFolder", "ImageMaskPairs", "MURA", "REFUGE", "build_dataset"]
