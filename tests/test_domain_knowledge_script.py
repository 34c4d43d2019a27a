"""04_Miscellaneous/domain_knowledge.py: a tiny in-process run (every prior, both tasks), resume, bad input."""

import json

import numpy as np
import pytest

from tests.helpers.scripts import load_script, run_main

FOLDER, NAME = "04_Miscellaneous", "domain_knowledge"
TINY = ["--quick", "--size", "32", "--ns", "1,2", "--seeds", "2", "--pool", "3", "--n-val", "2", "--epochs", "1",
        "--samples-per-epoch", "8", "--batch-size", "4", "--width", "4", "--n-unlabelled", "1", "--jobs", "1",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def script():
    return load_script(FOLDER, NAME)


@pytest.fixture(scope="module")
def tiny_run(script, tmp_path_factory):
    out = tmp_path_factory.mktemp("dk")
    return out, script.main(script.get_args([*TINY, "--out", str(out)]))


def test_tiny_run_writes_tables_figures_and_rows(tiny_run):
    out, summary = tiny_run
    tables = json.loads((out / "tables.json").read_text())
    assert set(tables) == {"cardiac", "fundus", "fundus_disc", "gains"}
    for name in ("cardiac", "fundus", "fundus_disc"):
        assert tables[name]["columns"] == ["config", "n", "mean", "std", "n_seeds"]
        rows = tables[name]["rows"]
        assert {r["n"] for r in rows} == {1, 2} and all(r["n_seeds"] == 2 for r in rows)
        assert all(0.0 <= r["mean"] <= 1.0 for r in rows)
    configs = {r["config"] for r in tables["cardiac"]["rows"]}
    assert configs == {"plain", "size", "compact", "plain + one-lv", "plain + convex"}
    assert {r["config"] for r in tables["fundus"]["rows"]} == {"plain", "polar", "plain + cup-in-disc"}
    for png in ("cardiac_curve.png", "fundus_curve.png", "fundus_disc_curve.png", "cardiac_failures.png",
                "fundus_failures.png"):
        assert (out / png).stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["failed"] == [] and isinstance(summary["goal_met"], bool)
    # the table's mean is the mean of the seeds' run metrics (the sweep's JSON), recomputed here
    plain = [json.loads((out / "cardiac-plain" / "n2" / f"seed{s}" / "metrics.json").read_text())["dice"]["raw"]
             for s in (0, 1)]
    row = next(r for r in summary["cardiac"] if r["config"] == "plain" and r["n"] == 2)
    assert row["mean"] == pytest.approx(np.mean(plain)) and row["std"] == pytest.approx(np.std(plain, ddof=1))
    post = next(g for g in metrics["gains"] if g["config"] == "plain + one-lv" and g["n"] == 1)
    assert post["paired gain"] != ""


def test_resume_reuses_every_run(script, tiny_run, capsys):
    out, summary = tiny_run
    again = script.main(script.get_args([*TINY, "--out", str(out), "--resume"]))
    assert "20 of 20 runs finished earlier" in capsys.readouterr().out
    assert again["cardiac"] == summary["cardiac"]


@pytest.mark.parametrize("argv, message", [
    (["--priors", "one-lv,shape"], "unknown or no prior(s) ['shape']"),
    (["--dataset", "acdc", "--priors", "polar"], "polar is a fundus prior"),
    (["--ns", "2,0"], "every n must be >= 1"),
    (["--dataset", "refuge"], "--dataset refuge needs --data-root"),
    (["--ns", "5", "--pool", "3"], "n=5 exceeds the pool of 3"),
    (["--size", "36"], "not a multiple of 8"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, argv, message):
    out = tmp_path / "out"
    res = run_main(FOLDER, NAME, "--quick", "--out", out, *argv)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.stderr
    assert not out.exists()
