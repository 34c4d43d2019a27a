"""04_Miscellaneous/shallow_methods.py: smoke run through main, CV isolation (poisoned labels), crossover, errors."""

import json

import numpy as np
import pytest

from common.features.pipeline import ShallowParams, chosen, decision_scores, fit_shallow
from common.tasks.shallow_study import crossover, training_subset
from tests.helpers.scripts import load_script, run_main

FOLDER, NAME = "04_Miscellaneous", "shallow_methods"
TINY = ["--ns", "6,12", "--seeds", "2", "--pool", "16", "--n-test", "12", "--size", "32", "--epochs", "1",
        "--min-steps", "1", "--batch-size", "8", "--seg-size", "48", "--n-cardiac", "1", "--n-fundus", "2",
        "--features", "lbp,glcm,histogram,firstorder", "--device", "cpu"]


def test_smoke_main_writes_tables_and_figures(tmp_path):
    mod = load_script(FOLDER, NAME)
    metrics = mod.main(mod.get_args([*TINY, "--out", str(tmp_path)]))
    rows = {(r["config"], r["n"]): r for r in metrics["auroc"]}
    assert set(rows) == {(m, n) for m in ("svm", "rf", "cnn") for n in (6, 12)}
    assert all(r["n_seeds"] == 2 and 0 <= r["mean"] <= 1 for r in rows.values())
    tables = json.loads((tmp_path / "tables.json").read_text())
    assert set(tables) == {"auroc", "segmentation"}
    assert {"config", "n", "mean", "std", "n_seeds"} <= set(tables["auroc"]["columns"])
    assert len(tables["segmentation"]["rows"]) == 8  # 4 methods x 2 structures
    for name in ("learning_curve.png", "segmentation.png", "report.md", "metrics.json", "auroc.json"):
        assert (tmp_path / name).is_file()
    assert metrics["crossover"]["status"] in ("crosses", "always ahead", "never ahead", "not ahead at the largest n")


def test_poison_inside_the_training_rows_changes_the_cv():
    """The control for the test below: the same label poison, once it is among the rows the search gets, changes the
    CV scores, so an unchanged search there means the poisoned images were never in it."""
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 15)
    X = rng.standard_normal((30, 5)) + y[:, None] * 1.0
    X_val, y_val = rng.standard_normal((10, 5)) + np.array([0, 1] * 5)[:, None], np.array([0, 1] * 5)
    params = ShallowParams(folds=3, svm_c=(0.1, 1.0), svm_gamma=("scale",))
    clean = fit_shallow(X, y, "svm", params, seed=0)
    assert chosen(clean)["cv_folds"] == 3 and np.isfinite(decision_scores(clean, X_val)).all()
    leaked = fit_shallow(np.vstack([X, X_val]), np.concatenate([y, 1 - y_val]), "svm", params, seed=0)
    assert not np.allclose(leaked.cv_results_["mean_test_score"], clean.cv_results_["mean_test_score"])


def test_run_method_cv_ignores_poisoned_test_split(tmp_path):
    """Through the recipe's run function: test labels and features poisoned -> the same chosen hyper-parameters
    and CV score (the test split never enters the search), only the test AUROC changes."""
    from common.sweep import Run
    from common.tasks.shallow_study import StudyConfig, run_method

    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 20)
    data = {"train_images": np.zeros((40, 32, 32), np.float32), "train_labels": y,
            "train_features": rng.standard_normal((40, 6)) + y[:, None],
            "test_images": np.zeros((20, 32, 32), np.float32), "test_labels": np.array([0, 1] * 10),
            "test_features": rng.standard_normal((20, 6)) + np.array([0, 1] * 10)[:, None]}
    np.savez(tmp_path / "clean.npz", **data)
    np.savez(tmp_path / "poisoned.npz", **{**data, "test_labels": 1 - data["test_labels"],
                                           "test_features": -data["test_features"]})
    cfg = StudyConfig(shallow=ShallowParams(folds=3))
    for method in ("svm", "rf"):
        a = run_method("cpu", False, Run(method, 0, 20, {"method": method, "data": str(tmp_path / "clean.npz"),
                                                         "cfg": cfg}), tmp_path)
        b = run_method("cpu", False, Run(method, 0, 20, {"method": method, "data": str(tmp_path / "poisoned.npz"),
                                                         "cfg": cfg}), tmp_path)
        assert a["chosen"] == b["chosen"] and a["chosen"]["cv_folds"] == 3
        assert a["auroc"] != b["auroc"]


def test_training_subset_is_stratified_and_seeded():
    labels = np.array([0] * 30 + [1] * 10)
    idx = training_subset(labels, 10, seed=3)
    assert len(idx) == len(set(idx)) == 10 and labels[idx].sum() >= 2 and (labels[idx] == 0).sum() >= 2
    np.testing.assert_array_equal(idx, training_subset(labels, 10, seed=3))
    assert not np.array_equal(idx, training_subset(labels, 10, seed=4))


def _rows(curves):
    return [{"config": c, "n": n, "mean": m} for c, values in curves.items() for n, m in values.items()]


def test_crossover_hand_computed():
    rows = _rows({"cnn": {10: 0.5, 100: 0.6, 1000: 0.9}, "svm": {10: 0.6, 100: 0.7, 1000: 0.7},
                  "rf": {10: 0.55, 100: 0.65, 1000: 0.8}})
    c = crossover(rows, "cnn", ("svm", "rf"))
    assert (c["status"], c["n_before"], c["n_at"]) == ("crosses", 100, 1000)
    # gaps -0.1 at 100 and +0.1 at 1000: crossing halfway in log n
    assert c["n_cross"] == pytest.approx(10 ** 2.5)
    assert crossover(_rows({"cnn": {10: 0.9, 20: 0.9}, "svm": {10: 0.5, 20: 0.5}}), "cnn", ("svm",))["status"] == \
        "always ahead"
    assert crossover(_rows({"cnn": {10: 0.9, 20: 0.4}, "svm": {10: 0.5, 20: 0.5}}), "cnn", ("svm",))["status"] == \
        "not ahead at the largest n"
    # ahead, behind, ahead again: overtakes for good only at the last n
    c = crossover(_rows({"cnn": {1: 0.9, 2: 0.4, 4: 0.9}, "svm": {1: 0.5, 2: 0.5, 4: 0.5}}), "cnn", ("svm",))
    assert (c["n_before"], c["n_at"]) == (2, 4)


@pytest.mark.parametrize("argv, words", [
    (["--ns", "10,400", "--pool", "300"], "exceeds --pool"),
    (["--ns", "2"], "too few"),
    (["--methods", "svm,knn"], "knn"),
    (["--dataset", "mura"], "--data-root"),
])
def test_bad_flags_one_line_exit_2(tmp_path, argv, words):
    r = run_main(FOLDER, NAME, *argv, "--out", tmp_path / "o")
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_mura_root_missing_is_one_line(tmp_path):
    r = run_main(FOLDER, NAME, "--dataset", "mura", "--data-root", tmp_path / "nothing", "--ns", "4", "--pool", "8",
                 "--out", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
