"""The two weakly supervised frameworks of 01 side by side: the size-constrained ENet's best row beside the
pseudo-label pipeline's stages, read from the size-loss demo's own table so nothing is trained twice.

``train_sizeloss.py --table`` writes ``table.json`` with one entry per run (variant, weak label, seed, last-epoch 3D
Dice, the settings it ran with). :func:`size_rows` picks, for each weak label, the size-constrained variant
(Kervadec et al. 2019, https://arxiv.org/abs/1805.04628) with the highest mean last-epoch 3D Dice — last epoch, since
its best epoch was chosen on the very volumes it is scored on — after checking that the runs scored the same
validation volumes (dataset, image size, number of training and validation volumes, structure).

    rows = size_rows("results/wss-size-table/table.json", cfg, ("erosion", "random"))
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.errors import InputError
from common.tasks.lv_weak_seg import VARIANTS

# The settings that decide which volumes a run scored (PipelineConfig's names = train_sizeloss's run_config names).
SAME_DATA = ("dataset", "size", "n_train", "n_val", "label")


def read_size_table(path: str | Path) -> list[dict]:
    """The runs of a ``train_sizeloss.py --table`` table.json; InputError if it is missing or not one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"size-loss table {path} not found",
                         hint="run python 01_WeaklySupervised/train_sizeloss.py --table (same --quick / sizes) first")
    try:
        runs = json.loads(path.read_text())["runs"]
        assert all({"variant", "weak", "seed", "last_dice3d", "config"} <= set(r) for r in runs)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise InputError(f"{path} is not a train_sizeloss.py --table table.json",
                         hint="pass the table.json that train_sizeloss.py --table wrote") from None
    return runs


def size_rows(path: str | Path, cfg, weaks) -> list[dict]:
    """For each weak label in ``weaks``, the best size-constrained row: stage, weak, mean, std (sample; nan for one
    seed), n_seeds, variant. ``cfg``: the pipeline's PipelineConfig, whose data the runs must share."""
    runs = read_size_table(path)
    mine = {k: getattr(cfg, k) for k in SAME_DATA}
    other = [r for r in runs if {k: r["config"].get(k) for k in SAME_DATA} != mine]
    if other:
        theirs = {k: other[0]["config"].get(k) for k in SAME_DATA}
        raise InputError(f"{path} scored other volumes ({theirs}) than this table ({mine})",
                         hint="run both tables with the same --quick / --size / --n-train / --n-val")
    rows = []
    for weak in weaks:
        by_variant = {}
        for r in runs:
            if r["weak"] == weak and VARIANTS[r["variant"]].bounds is not None:
                by_variant.setdefault(r["variant"], []).append(r["last_dice3d"])
        if not by_variant:
            continue
        variant, values = max(by_variant.items(), key=lambda kv: np.mean(kv[1]))
        std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
        rows.append({"stage": f"ENet + size loss ({variant}, best of train_sizeloss.py)", "weak": weak,
                     "mean": float(np.mean(values)), "std": std, "n_seeds": len(values), "variant": variant,
                     "values": values})
    return rows
