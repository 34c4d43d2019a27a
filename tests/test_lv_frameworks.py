"""The size-loss demo's best row beside the pseudo-label table (common.tasks.lv_frameworks)."""

import json

import pytest

from common.errors import InputError
from common.tasks.lv_frameworks import size_rows
from common.tasks.lv_pseudolabel import PipelineConfig

CFG = PipelineConfig(size=32, n_train=1, n_val=1)
SAME = {"dataset": "phantom", "size": 32, "n_train": 1, "n_val": 1, "label": 3, "epochs": 1, "lr": 0.005}


def size_table(path, runs, config=SAME):
    path.write_text(json.dumps({"runs": [{"variant": v, "weak": w, "seed": s, "last_dice3d": d, "best_dice3d": 1.0,
                                          "config": config} for v, w, s, d in runs]}))
    return path


def test_best_size_constrained_variant_by_mean_last_epoch_dice(tmp_path):
    path = size_table(tmp_path / "table.json", [
        ("fs", "erosion", 0, 0.95), ("partial", "erosion", 0, 0.99),   # not size-constrained: never picked
        ("size", "erosion", 0, 0.4), ("size", "erosion", 1, 0.8),     # mean 0.6
        ("3d_size", "erosion", 0, 0.7),                                # mean 0.7: the best
        ("3d_size", "random", 0, 0.5), ("3d_size", "random", 1, 0.3)])
    rows = {r["weak"]: r for r in size_rows(path, CFG, ("erosion", "random", "box"))}
    assert set(rows) == {"erosion", "random"}  # no size run with box labels: no row
    assert rows["erosion"]["variant"] == "3d_size" and rows["erosion"]["mean"] == pytest.approx(0.7)
    assert rows["erosion"]["n_seeds"] == 1 and rows["erosion"]["std"] != rows["erosion"]["std"]  # nan: one seed
    assert rows["random"]["mean"] == pytest.approx(0.4) and rows["random"]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert "3d_size" in rows["random"]["stage"]


@pytest.mark.parametrize("case,message", [("missing", "not found"), ("other volumes", "scored other volumes"),
                                          ("not a table", "is not a train_sizeloss.py --table table.json")])
def test_refuses_what_cannot_be_compared(tmp_path, case, message):
    path = tmp_path / "table.json"
    if case == "other volumes":
        size_table(path, [("size", "erosion", 0, 0.5)], {**SAME, "size": 64})
    elif case == "not a table":
        path.write_text(json.dumps({"rows": []}))
    with pytest.raises(InputError, match=message):
        size_rows(path, CFG, ("erosion",))
