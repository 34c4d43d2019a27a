"""03_ActiveLearning/active_learning.py: the comparison on a tiny phantom pool (tables, curves, figure), the
annotator mode (a filled CSV continues the loop with those labels), a class-per-folder dataset, and bad input."""

import csv
import json

import numpy as np
import pytest

from tests.helpers.scripts import load_script, run_main

TINY = ["--size", "32", "--n-pool", "48", "--n-test", "40", "--initial", "8", "--query", "8", "--budget", "24",
        "--epochs", "1", "--min-samples", "32", "--width", "4", "--stages", "2", "--passes", "3", "--jobs", "1"]


@pytest.fixture(scope="module")
def script():
    return load_script("03_ActiveLearning", "active_learning")


def test_comparison_writes_curves_table_and_figure(script, tmp_path):
    out = tmp_path / "cmp"
    metrics = script.main(script.get_args([*TINY, "--strategies", "random,margin", "--seeds", "2",
                                           "--out", str(out)]))
    table = {r["strategy"]: r for r in metrics["labels_to_target"]}
    assert list(table) == ["random", "margin"]
    assert metrics["target"] == pytest.approx(0.95 * metrics["full_pool_auroc"])
    assert [r["n"] for r in metrics["curves"] if r["config"] == "random"] == [8, 16, 24]
    assert all(r["n_seeds"] == 2 and r["std"] is not None for r in metrics["curves"])
    saved = json.loads((out / "tables.json").read_text())
    assert saved["labels_to_target"]["columns"] == ["strategy", "labels_to_target", "ratio_to_random", "n_seeds"]
    assert {"curves", "diagnosis"} <= set(saved)
    for name in ("learning_curves.png", "picked_images.png", "report.md", "metrics.json"):
        assert (out / name).is_file(), name
    # each run's rounds were saved: the picks of round 0 are the images of round 1's labels
    state = json.loads((out / "runs" / "margin" / "seed0" / "state.json").read_text())
    assert state["done"] and state["labelled"][8:16] == state["rounds"][0]["picked"]


def test_labels_to_reach_interpolates(script):
    assert script.labels_to_reach([10, 20, 40], [0.5, 0.7, 0.9], 0.8) == pytest.approx(30.0)
    assert script.labels_to_reach([10, 20], [0.9, 0.95], 0.8) == 10.0
    assert script.labels_to_reach([10, 20], [0.5, 0.6], 0.8) is None
    rows = [{"config": s, "n": n, "mean": m, "n_seeds": 3} for s, ms in
            {"random": [0.5, 0.6, 0.8], "bald": [0.5, 0.8, 0.9], "coreset": [0.5, 0.6, 0.7]}.items()
            for n, m in zip([10, 20, 40], ms, strict=True)]
    table = {t["strategy"]: t for t in script.target_rows(rows, ["random", "bald", "coreset"], 0.8)}
    assert table["random"]["labels_to_target"] == 40.0 and table["bald"]["ratio_to_random"] == 0.5
    assert table["coreset"]["labels_to_target"] == "> 40" and table["coreset"]["ratio_to_random"] == "n/a"


def fill(csv_path, labels_by_index):
    rows = list(csv.DictReader(open(csv_path, newline="")))
    for row in rows:
        row["label"] = labels_by_index(int(row["index"]))
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def test_annotator_mode_continues_with_the_filled_labels(script, tmp_path):
    out = tmp_path / "ann"
    argv = [*TINY, "--oracle", "folder", "--strategy", "entropy", "--out", str(out)]
    first = script.main(script.get_args(argv))
    assert first["status"] == "waiting" and "fill the label column" in first["message"]
    query = out / "round_0" / "query"
    assert len(list(query.glob("*.png"))) == 8
    # the person's labels: not the phantom's truth, so the loop must have read them from the CSV
    mine = {}

    def person(i):
        mine[i] = "abnormal" if i % 3 == 0 else "normal"
        return mine[i]

    fill(query / "labels.csv", person)
    second = script.main(script.get_args(argv))
    assert second["status"] == "waiting" and second["n_labels"] == 8 and len(second["rounds"]) == 1
    picked = second["rounds"][0]["picked"]
    assert len(picked) == 8 and not set(picked) & set(mine)
    rows = fill(out / "round_1" / "query" / "labels.csv", person)
    assert sorted(int(r["index"]) for r in rows) == sorted(picked)
    third = script.main(script.get_args(argv))
    state = json.loads((out / "state.json").read_text())
    assert state["labels"] == [int(mine[i] == "abnormal") for i in state["labelled"]]
    assert third["n_labels"] == 16 and third["status"] == "waiting"


def test_annotator_errors_leave_earlier_rounds_untouched(tmp_path):
    out = tmp_path / "ann"
    argv = [*TINY, "--oracle", "folder", "--strategy", "margin", "--out", str(out)]
    assert run_main("03_ActiveLearning", "active_learning", *argv).returncode == 0
    before = (out / "state.json").read_bytes()
    res = run_main("03_ActiveLearning", "active_learning", *argv)       # nothing filled in yet
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "has no label" in res.stderr
    fill(out / "round_0" / "query" / "labels.csv", lambda i: "fractured")
    res = run_main("03_ActiveLearning", "active_learning", *argv)
    assert res.returncode == 2 and "'fractured' is not one of the classes" in res.stderr
    assert (out / "state.json").read_bytes() == before


@pytest.mark.parametrize("flags,message", [
    (["--budget", "4"], "below the initial labelled set"),
    (["--query", "41"], "larger than the 40 unlabelled"),
    (["--dataset", "folder"], "needs --data-root"),
    (["--dropout", "0", "--strategies", "bald"], "needs MC dropout"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, flags, message):
    res = run_main("03_ActiveLearning", "active_learning", *TINY, *flags, "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and message in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_class_per_folder_dataset(script, tmp_path):
    from common.io.atomic import save_image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("benign", "malignant")):
        for i in range(20):
            img = rng.random((40, 36)) * 0.3
            img[:, : 18] += 0.6 * k  # the malignant ones are brighter on the left
            save_image(tmp_path / "data" / name / f"{i}.png", np.clip(img, 0, 1))
    metrics = script.main(script.get_args([*TINY, "--dataset", "folder", "--data-root", str(tmp_path / "data"),
                                           "--n-test", "10", "--strategies", "random,coreset", "--seeds", "1",
                                           "--out", str(tmp_path / "out")]))
    assert [t["strategy"] for t in metrics["labels_to_target"]] == ["random", "coreset"]
    assert 0.0 <= metrics["full_pool_auroc"] <= 1.0
