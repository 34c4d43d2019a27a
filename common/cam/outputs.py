"""What a CAM script writes per image: one output name per input file, and no stale files from an earlier run.

Names: the file name without its image extension (".nii.gz" as one; the dots of a DICOM UID name are kept); where
two names clash (compared case-insensitively, as macOS and Windows file systems do) each of those gets a suffix
_1, _2, ..., so no output overwrites another. Stale files: a run's ``metrics.json`` lists the files it wrote
(``"files"``, under ``"script"``); the next run of the same script into the same folder removes those of them it
does not write again, so the report, ``metrics.json`` and the images beside them always describe one run. Only
files a previous run listed are removed, never anything else in the folder.

Kept here because only the CAM scripts write per-image outputs today; the two ideas belong in ``common.io``
(naming, an output manifest) as soon as a second kind of script needs them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from common.io import IMAGE_EXTENSIONS


def image_stem(name: str) -> str:
    """A file name without its image extension (".nii.gz" as one; dots inside a DICOM UID name are kept)."""
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[:-len(ext)]
    return name


def output_stems(paths: Sequence) -> list[str]:
    """One output name per path: the image stem, and where two stems clash (case-insensitively) a suffix _1, _2, ...
    on each of those only."""
    stems = [image_stem(Path(p).name) for p in paths]
    count = Counter(s.lower() for s in stems)
    taken = {s.lower() for s in stems}
    seen: Counter = Counter()
    out = []
    for s in stems:
        if count[s.lower()] > 1:
            name = s
            while name.lower() in taken:
                seen[s.lower()] += 1
                name = f"{s}_{seen[s.lower()]}"
            taken.add(name.lower())
            s = name
        out.append(s)
    return out


def written_before(out: Path, script: str) -> list[str]:
    """The files the last run of ``script`` wrote into ``out``, as its metrics.json lists them (none if another script
    wrote it, or it is unreadable or absent)."""
    try:
        record = json.loads((Path(out) / "metrics.json").read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(record, dict) or record.get("script") != script or not isinstance(record.get("files"), list):
        return []
    return [f for f in record["files"] if isinstance(f, str)]


def remove_stale(out: Path, before: Iterable[str], now: Iterable[str]) -> list[str]:
    """Remove the files of ``before`` that are not in ``now`` from ``out``; returns the names removed.

    A name that is not a plain file name in ``out`` itself (a path, "..") is left alone, whatever it says."""
    out, keep = Path(out), set(now)
    removed = []
    for name in before:
        path = out / name
        if name in keep or Path(name).name != name or name in ("", ".", "..") or not path.is_file():
            continue
        path.unlink()
        removed.append(name)
    return removed
