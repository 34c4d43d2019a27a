"""benchmarks/summarize_runs.py on hand-made run folders."""

import pytest

from tests.helpers.scripts import load_script


def _run(root, name, values):
    folder = root / name
    folder.mkdir(parents=True)
    rows = "\n".join(f"{i + 1},{v}" for i, v in enumerate(values))
    (folder / "metrics.csv").write_text("epoch,val_dice3d\n" + rows + "\n")


def test_best_last_and_ratio(tmp_path):
    mod = load_script("benchmarks", "summarize_runs")
    _run(tmp_path, "fs", [0.5, 0.8, 0.7])
    _run(tmp_path, "size", [0.2, 0.4])
    rows = {r["run"]: r for r in mod.summarize(tmp_path, "val_dice3d", "fs")}
    assert rows["fs"]["epochs"] == 3 and rows["fs"]["best val_dice3d"] == 0.8 and rows["fs"]["best epoch"] == 2
    assert rows["fs"]["last val_dice3d"] == 0.7
    assert rows["size"]["best / fs"] == pytest.approx(0.5)


def test_errors_name_the_problem(tmp_path):
    mod = load_script("benchmarks", "summarize_runs")
    with pytest.raises(SystemExit, match="no \\*/metrics.csv"):
        mod.summarize(tmp_path, "val_dice3d", None)
    _run(tmp_path, "fs", [0.5])
    with pytest.raises(SystemExit, match="no column 'loss'"):
        mod.summarize(tmp_path, "loss", None)
    with pytest.raises(SystemExit, match="no run named 'x'"):
        mod.summarize(tmp_path, "val_dice3d", "x")
