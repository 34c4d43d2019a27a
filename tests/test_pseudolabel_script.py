"""Smoke and bad-input tests of 01_WeaklySupervised/train_pseudolabel.py (pseudo labels -> ENet -> DenseCRF / graph)."""

import json
import os

import numpy as np
import pytest

import common.tasks.lv_pseudolabel as task
from common.weak.crf import CRFParams
from tests.helpers.scripts import load_script, run_main

FOLDER, NAME = "01_WeaklySupervised", "train_pseudolabel"
TINY = ["--size", "32", "--n-train", "1", "--n-val", "1", "--n-tune", "1", "--epochs", "1", "--threads", "1",
        "--device", "cpu"]
STAGE_KEYS = {"pseudo", "enet", "crf_survey", "crf", "polar", "grabcut"}


@pytest.fixture(scope="module")
def script():
    return load_script(FOLDER, NAME)


def test_one_run_every_stage(script, tmp_path):
    out = script.main(script.get_args([*TINY, "--weak", "random", "--out", str(tmp_path)]))
    assert set(out["dice3d"]) == STAGE_KEYS and all(0.0 <= v <= 1.0 for v in out["dice3d"].values())
    chosen = out["chosen"]["crf"]
    assert chosen["sxy"] in task.CRF_GRID["sxy"] and chosen["schan"] in task.CRF_GRID["schan"]
    assert out["chosen"]["polar"]["edge_weight"] in task.POLAR_GRID["edge_weight"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["dice3d"] == out["dice3d"] and saved["best_epoch"] == 1 and len(saved["history"]) == 1
    assert saved["target"] == "pseudo" and saved["weak"] == "random" and 0.0 <= saved["train_pseudo_dice3d"] <= 1.0
    for name in ("report.md", "stages.png", "figure.npz", "best.pt"):
        assert (tmp_path / name).exists(), name
    figure = np.load(tmp_path / "figure.npz")
    assert {f"mask_{k}" for k in STAGE_KEYS} <= set(figure) and figure["prob"].shape == figure["truth"].shape


def _must_not_run(*args, **kwargs):  # module level: the sweep runner takes functions by name
    pytest.fail("a finished run was trained again")


def test_table_rows_are_mean_and_sample_std_of_the_runs(script, tmp_path, monkeypatch):
    sizes = tmp_path / "sizeloss.json"  # the size-loss demo's table on the same volumes
    config = {"dataset": "phantom", "size": 32, "n_train": 1, "n_val": 1, "label": 3}
    sizes.write_text(json.dumps({"runs": [{"variant": "presize", "weak": "erosion", "seed": s, "last_dice3d": d,
                                           "config": config} for s, d in ((0, 0.5), (1, 0.7))]}))
    argv = [*TINY, "--table", "--weaks", "erosion", "--seeds", "2", "--jobs", "1", "--no-tune", "--graph", "polar",
            "--compare-sizeloss", str(sizes), "--out", str(tmp_path)]
    out = script.main(script.get_args(argv))
    table = json.loads((tmp_path / "table.json").read_text())
    assert table["failed"] == [] and out["rows"] == table["rows"]
    runs = {(c, s): json.loads((tmp_path / c / f"seed{s}" / "metrics.json").read_text())
            for c in ("region_erosion", "fs") for s in (0, 1)}
    for row in table["rows"]:
        values = [runs[(row["config"], s)]["dice3d"][row["key"]] for s in (0, 1)]
        assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(np.std(values, ddof=1))
        assert row["n_seeds"] == 2 and row["weak"] == ("full mask" if row["config"] == "fs" else "erosion")
    assert [r["key"] for r in table["rows"]] == ["pseudo", "enet", "crf_survey", "crf", "polar",
                                                 "enet", "crf_survey", "crf", "polar"]
    assert runs[("fs", 0)]["chosen"]["crf"] == {**CRFParams().__dict__}  # --no-tune: the flags' values
    tables = json.loads((tmp_path / "tables.json").read_text())["table"]  # the README block is rendered from it
    assert tables["columns"] == ["stage", "weak", "mean", "std", "n_seeds", "survey ACDC"]
    assert "0.6850" in {r["survey ACDC"] for r in tables["rows"]} and (tmp_path / "stages_erosion.png").exists()
    compared = tables["rows"][-1]  # the size-constrained row closes the table
    assert compared["stage"].startswith("ENet + size loss (presize") and compared["mean"] == pytest.approx(0.6)
    assert "wins here" in (tmp_path / "report.md").read_text()
    gain = table["goals"]["region_erosion"]["crf_gain"]
    by_seed = [runs[("region_erosion", s)]["dice3d"]["crf"] - runs[("region_erosion", s)]["dice3d"]["enet"]
               for s in (0, 1)]
    assert gain["mean"] == pytest.approx(np.mean(by_seed)) and gain["std"] == pytest.approx(np.std(by_seed, ddof=1))
    # --resume: the finished runs are reused, nothing trains again
    monkeypatch.setattr(script, "run_pipeline", _must_not_run)
    again = script.main(script.get_args([*argv, "--resume"]))
    assert [r["mean"] for r in again["rows"]] == [r["mean"] for r in table["rows"]]


def test_without_pydensecrf_the_graph_method_still_runs(script, tmp_path, monkeypatch, capsys):
    """Also k-means pseudo masks and an ignore band on their borders, through the same pipeline."""
    monkeypatch.setattr(task, "densecrf_available", lambda: False)
    out = script.main(script.get_args([*TINY, "--no-tune", "--pseudo", "kmeans", "--ignore-band", "1", "--out",
                                       str(tmp_path)]))
    assert set(out["dice3d"]) == {"pseudo", "enet", "polar", "grabcut"}
    assert "DenseCRF skipped: pydensecrf cannot be imported (pip install pydensecrf2)" in capsys.readouterr().out
    assert "pseudo mask (k-means, 3 clusters)" in (tmp_path / "report.md").read_text()


def _fake_cardiac(images, labels):
    def load(dataset, split, size, n_volumes, seed=0, data_root=None, n_train=0):
        count = 1 if split == "train" else 2  # train: 1 volume; val + tune: 2
        return images[:count], labels[:count], list(range(count))

    return load


def _volumes(lv_in_first_only=False, label_width=32):
    rng = np.random.default_rng(0)
    images, labels = [], []
    for v in range(2):
        image = rng.random((3, 32, 32)).astype(np.float32)
        label = np.zeros((3, 32, label_width), np.uint8)
        if not (lv_in_first_only and v == 1):
            label[:, 10:20, 10:20] = 3
        images.append(image)
        labels.append(label)
    return images, labels


@pytest.mark.parametrize("case,argv,message", [
    ("unknown stage", ["--stages", "pseudo,watershed"], "argument --stages: unknown or no name(s) ['watershed']"),
    ("unknown graph method", ["--graph", "snake"], "argument --graph: unknown or no name(s) ['snake']"),
    ("table flag alone", ["--seeds", "2"], "argument --seeds: only with --table"),
    ("no size table", ["--table", "--compare-sizeloss", "nowhere.json"], "size-loss table nowhere.json not found"),
    ("size", ["--size", "60"], "--size 60 is not usable"),
    ("no seed pixels", ["--no-tune"], "volume 1: no slice of the volume has a seed pixel or a box"),
    ("size mismatch", [], "volume 0: image (3, 32, 32) and labels (3, 32, 24) must both be (D, H, W)"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, monkeypatch, case, argv, message):
    if case == "no seed pixels":  # the second (tune) volume has no LV, so its weak label has no seed
        monkeypatch.setattr(task, "load_cardiac", _fake_cardiac(*_volumes(lv_in_first_only=True)))
    if case == "size mismatch":
        monkeypatch.setattr(task, "load_cardiac", _fake_cardiac(*_volumes(label_width=24)))
    out = tmp_path / "out"
    r = run_main(FOLDER, NAME, *TINY, *argv, "--out", out)
    assert r.returncode == 2, (case, r.stderr)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not out.exists()


def test_quick_defaults_yield_to_flags(script):
    quick = script.get_args(["--table", "--quick"])
    assert (quick.size, quick.n_train, quick.n_val, quick.n_tune, quick.epochs, quick.threads, quick.seeds) == (
        64, 8, 4, 2, 20, 1, 1)
    assert quick.weaks == ("erosion", "random") and quick.jobs == min(2 * (os.cpu_count() or 1), 3)
    mine = script.get_args(["--quick", "--size", "96", "--epochs", "3", "--n-train", "2"])
    assert (mine.size, mine.epochs, mine.n_train, mine.jobs) == (96, 3, 2, 1)
    full = script.get_args(["--table"])
    assert (full.size, full.n_train, full.n_val, full.n_tune, full.epochs, full.seeds, full.jobs) == (
        128, 40, 10, 4, 100, 3, 1)
    assert full.weaks == ("erosion", "random", "centroid", "box")
    acdc = script.get_args(["--dataset", "acdc", "--data-root", "x"])
    assert (acdc.n_train, acdc.n_val) == (0, 0)


def test_crf_speed_benchmark_writes_its_table(tmp_path):
    bench = load_script("benchmarks", "crf_speed")
    out = bench.main(bench.get_args(["--size", "64", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)]))
    assert len(out["seconds"]) == 4 and out["ratio_to_enet"]["ENet forward (batch 1)"] == 1.0
    tables = json.loads((tmp_path / "tables.json").read_text())
    assert [r["method"] for r in tables["speed"]["rows"]][0] == "ENet forward (batch 1)"
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "report.md").exists()
