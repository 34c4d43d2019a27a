"""A human annotator in the loop, through a folder (baal issue #160): each round's queried images are written to
``<out>/round_K/query/`` with ``labels.csv`` to fill in; the next run reads the filled CSV and goes on.

labels.csv has the columns ``file,index,label``: ``file`` is the image in query/, ``index`` the item's position in
the pool, ``label`` empty, to be filled with a class name or its number (0, 1, ...).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from common.errors import InputError
from common.io.atomic import atomic_path, save_image

CSV_NAME = "labels.csv"


def query_folder(out: Path, round_: int) -> Path:
    return Path(out) / f"round_{round_}" / "query"


def write_query(out: Path, round_: int, indices: Sequence[int], images: Sequence[np.ndarray],
                names: Sequence[str] | None = None) -> Path:
    """The queried images as PNG (H, W) or (H, W, 3) floats in [0, 1] and a labels.csv with an empty label column;
    returns the CSV's path. ``names``: the items' own file names, shown in the CSV beside ours."""
    folder = query_folder(out, round_)
    rows = []
    for i, (index, image) in enumerate(zip(indices, images, strict=True)):
        file = f"{i:04d}_item{int(index)}.png"
        save_image(folder / file, np.asarray(image, np.float32))
        rows.append([file, int(index), ""] + ([names[i]] if names is not None else []))
    path = folder / CSV_NAME
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "index", "label"] + (["source"] if names is not None else []))
        writer.writerows(rows)
    return path


def read_labels(out: Path, round_: int, indices: Sequence[int], classes: Sequence[str]) -> np.ndarray:
    """The labels filled into round ``round_``'s CSV for ``indices``, as class numbers; InputError (one line, the
    CSV and row named) if a row is missing or unfilled, or a label is not one of ``classes``."""
    path = query_folder(out, round_) / CSV_NAME
    if not path.is_file():
        raise InputError("the query's labels.csv is missing", path=path,
                         hint="restore it from the query folder, or start afresh in another --out")
    names = {c.lower(): k for k, c in enumerate(classes)}
    found: dict[int, int] = {}
    with open(path, newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            try:
                index = int(row["index"])
            except (KeyError, TypeError, ValueError):
                raise InputError(f"row {n} has no pool index", path=path,
                                 hint="keep the file and index columns as written; fill in only label") from None
            text = (row.get("label") or "").strip()
            if not text:
                raise InputError(f"row {n} ({row.get('file')}) has no label", path=path,
                                 hint=f"fill every label with one of {', '.join(classes)} (or 0..{len(classes) - 1}), "
                                      "then rerun the same command")
            if text.lower() in names:
                found[index] = names[text.lower()]
            elif text.isdigit() and int(text) < len(classes):
                found[index] = int(text)
            else:
                raise InputError(f"row {n} ({row.get('file')}): label {text!r} is not one of the classes", path=path,
                                 hint=f"use one of {', '.join(classes)} or its number 0..{len(classes) - 1}")
    missing = [int(i) for i in indices if int(i) not in found]
    if missing:
        raise InputError(f"{len(missing)} queried item(s) have no row, the first pool index {missing[0]}", path=path,
                         hint="keep every row of the query; fill in only the label column")
    return np.array([found[int(i)] for i in indices], dtype=np.int64)
