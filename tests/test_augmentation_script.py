"""04_Miscellaneous/augmentation.py: a tiny grid through main(argv) (tables, figures, resume) and its bad input."""

import json

import pytest

from tests.helpers.scripts import load_script, run_main

TINY = ["--families", "none,all", "--ns", "4", "--seg-ns", "1", "--seeds", "2", "--size", "32", "--seg-size", "32",
        "--epochs", "1", "--epoch-samples", "8", "--batch-size", "4", "--width", "4", "--n-test", "8",
        "--seg-n-test", "1", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def script():
    return load_script("04_Miscellaneous", "augmentation")


def test_tiny_grid_writes_tables_figures_and_resumes(script, tmp_path):
    out = tmp_path / "aug"
    summary = script.main(script.get_args([*TINY, "--out", str(out)]))
    tables = json.loads((out / "tables.json").read_text())
    assert set(tables) == {"classifier", "segmenter", "goals"}
    for task in ("classifier", "segmenter"):
        rows = tables[task]["rows"]
        assert [r["config"] for r in rows] == ["none", "all"] and all(r["n_seeds"] == 2 for r in rows)
        assert set(rows[0]) == {"config", "n", "mean", "std", "n_seeds"}
        assert all(0 <= r["mean"] <= 1 for r in rows)
        assert (out / f"learning_curve_{task}.png").stat().st_size > 0
        assert summary[task]["goal"]["met"] in ("yes", "no")
    assert (out / "augmentations.png").stat().st_size > 0 and (out / "report.md").exists()
    again = script.main(script.get_args([*TINY, "--out", str(out), "--resume"]))  # every run reused
    assert again["segmenter"]["rows"] == summary["segmenter"]["rows"]


@pytest.mark.parametrize("argv, message", [
    (["--families", "none,warp"], "unknown or no name(s) ['warp']"),
    (["--dataset", "acdc"], "--dataset acdc needs --data-root"),
    (["--dataset", "mura", "--task", "segmenter"], "segmenter is not studied on --dataset mura"),
    (["--seg-size", "36"], "multiple of 8"),
    (["--ns", "5000", "--task", "classifier"], "n = 5000 is more than the 1000"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, argv, message):
    out = tmp_path / "bad"
    res = run_main("04_Miscellaneous", "augmentation", *TINY, *argv, "--out", out)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.stderr
    assert not out.exists()  # nothing half-written
