"""common.sweep on a toy run function (no training): resume, failures, seed-major order, workers, rows, figure."""

import importlib.util
import json
import math
import os

import numpy as np
import pytest

from common.errors import InputError
from common.sweep import Run, aggregate, compare, grid, learning_curve, markdown, sweep, write_tables


def toy(run, out_dir):
    """A deterministic score of (config, n, seed); counts its calls in the run folder and logs its start order."""
    calls = out_dir / "calls"
    calls.write_text(str(int(calls.read_text()) + 1 if calls.exists() else 1))
    with open(out_dir.parents[1 if run.n is None else 2] / "order.txt", "a") as fh:
        fh.write(f"{run.config} {run.n} {run.seed}\n")
    (out_dir / "env.txt").write_text(f"{os.environ.get('TQDM_DISABLE')} {os.environ.get('OMP_NUM_THREADS')}")
    print(f"training {run.label}")
    if run.params.get("fail"):
        raise ValueError("boom")
    if run.params.get("bad_input"):
        raise InputError("no such file", path="x.png", hint="pass another")
    noise = np.random.default_rng(run.seed).normal(0, 0.01)
    return {"score": run.params["base"] + 0.1 * math.log(run.n or 1) + noise, "seed": run.seed}


def _calls(out, run):
    return int((out / run.folder / "calls").read_text())


def test_grid_is_seed_major_and_runs_start_in_that_order(tmp_path):
    runs = grid({"a": {"base": 0.1}, "b": {"base": 0.5}}, seeds=[0, 1], ns=[10, 100])
    assert [(r.seed, r.config, r.n) for r in runs] == [(0, "a", 10), (0, "a", 100), (0, "b", 10), (0, "b", 100),
                                                       (1, "a", 10), (1, "a", 100), (1, "b", 10), (1, "b", 100)]
    assert runs[0].folder.as_posix() == "a/n10/seed0" and runs[0].params == {"base": 0.1}
    # given config-major, they still start seed-major, and come back in the order given
    shuffled = sorted(runs, key=lambda r: (r.config, r.n))
    results = sweep(shuffled, toy, tmp_path)
    assert [r.run for r in results] == shuffled and all(r.status == "ok" for r in results)
    started = (tmp_path / "order.txt").read_text().split("\n")[:-1]
    assert [int(line.split()[-1]) for line in started] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert started[:4] == ["a 10 0", "a 100 0", "b 10 0", "b 100 0"]


def test_metrics_and_run_files_and_resume_reuses_finished_runs(tmp_path):
    runs = grid({"a": {"base": 0.1}}, seeds=[0, 1])
    first = sweep(runs, toy, tmp_path, resume=True)
    folder = tmp_path / "a" / "seed1"
    assert json.loads((folder / "metrics.json").read_text()) == first[1].metrics
    stored = json.loads((folder / "run.json").read_text())
    assert (stored["config"], stored["seed"], stored["n"], stored["params"]) == ("a", 1, None, {"base": 0.1})
    again = sweep(runs, toy, tmp_path, resume=True)
    assert [r.status for r in again] == ["reused", "reused"] and [r.metrics for r in again] == [r.metrics
                                                                                               for r in first]
    assert [_calls(tmp_path, r) for r in runs] == [1, 1]
    # a run whose run.json is missing (killed before it finished) trains again; the other is reused
    (tmp_path / "a" / "seed0" / "run.json").unlink()
    assert [r.status for r in sweep(runs, toy, tmp_path, resume=True)] == ["ok", "reused"]
    assert [_calls(tmp_path, r) for r in runs] == [2, 1]
    # other settings in the same folders: refused before anything runs, naming the folder and the setting
    changed = grid({"a": {"base": 0.2}}, seeds=[0, 1])
    with pytest.raises(InputError, match=r"a/seed0: finished earlier with other settings \(base = 0.1 there, "
                                         r"0.2 now\) -- use another --out"):
        sweep(changed, toy, tmp_path, resume=True)
    assert [_calls(tmp_path, r) for r in runs] == [2, 1]
    # without resume every run trains again
    assert [r.status for r in sweep(changed, toy, tmp_path)] == ["ok", "ok"]
    assert [_calls(tmp_path, r) for r in runs] == [3, 2]


def test_a_failing_run_is_reported_and_the_others_finish(tmp_path, capsys):
    runs = [Run("a", 0, params={"base": 0.1}), Run("b", 0, params={"base": 0.1, "fail": True}),
            Run("a", 1, params={"base": 0.1})]
    results = sweep(runs, toy, tmp_path, resume=True)
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert results[1].error == "ValueError: boom" and results[1].metrics is None
    assert "raise ValueError" in (tmp_path / "b" / "seed0" / "error.txt").read_text()
    assert not (tmp_path / "b" / "seed0" / "run.json").exists()
    assert f"b / seed 0 failed: {tmp_path / 'b' / 'seed0'}: ValueError: boom" in capsys.readouterr().out
    rows = aggregate(results, "score")
    assert [(r["config"], r["n_seeds"], r["n_failed"]) for r in rows] == [("a", 2, 0), ("b", 0, 1)]
    assert rows[1]["mean"] is None and "0 (1 failed)" in markdown(rows)
    # a failed run is not finished: resume runs it again (and it fails again)
    assert [r.status for r in sweep(runs, toy, tmp_path, resume=True)] == ["reused", "failed", "reused"]


def test_bad_input_in_a_run_stops_the_sweep(tmp_path):
    runs = [Run("a", 0, params={"base": 0.1, "bad_input": True}), Run("a", 1, params={"base": 0.1})]
    with pytest.raises(InputError, match="x.png: no such file"):
        sweep(runs, toy, tmp_path)
    assert not (tmp_path / "a" / "seed1").exists()


def test_two_workers_give_the_same_results_as_one_process(tmp_path):
    runs = grid({"a": {"base": 0.1}, "b": {"base": 0.3, "fail": False}}, seeds=[0, 1], ns=[5, 50])
    serial = sweep(runs, toy, tmp_path / "serial", jobs=1)
    parallel = sweep(runs, toy, tmp_path / "parallel", jobs=2, threads=1)
    assert [r.metrics for r in parallel] == [r.metrics for r in serial]
    assert [r.status for r in parallel] == ["ok"] * len(runs)
    run_dir = tmp_path / "parallel" / "b" / "n50" / "seed1"
    assert "training b / n=50 / seed 1" in (run_dir / "train.log").read_text()  # the worker's output, in its log
    assert (run_dir / "env.txt").read_text() == "1 1"  # no progress bars, one thread as asked
    assert not (tmp_path / "serial" / "b" / "n50" / "seed1" / "train.log").exists()


def test_workers_find_a_function_of_a_module_loaded_from_its_file(tmp_path):
    """Scripts live in digit-named folders and tests load them by path: a worker must find their functions."""
    script = tmp_path / "01_script.py"
    script.write_text("def score(run, out_dir):\n    return {'score': run.seed * 2.0}\n")
    spec = importlib.util.spec_from_file_location("script_loaded_by_path", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = sweep(grid(["c"], seeds=[0, 1, 2]), module.score, tmp_path / "out", jobs=2)
    assert [r.metrics["score"] for r in results] == [0.0, 2.0, 4.0]


def test_aggregate_is_mean_and_sample_std_over_seeds():
    runs = grid({"base": {"base": 0.0}, "new": {"base": 1.0}}, seeds=[0, 1, 2], ns=[100, 10])
    values = {("base", 10): [0.5, 0.7, 0.9], ("base", 100): [0.6, 0.62, 0.64], ("new", 10): [0.55, 0.6, 0.65],
              ("new", 100): [0.9, 0.95, 1.0]}
    from common.sweep import Result

    results = [Result(r, None, "ok", {"m": {"dice": values[(r.config, r.n)][r.seed]}}) for r in runs]
    results.append(Result(Run("one", 0, 10), None, "reused", {"m": {"dice": 0.3}}))
    rows = aggregate(results, "m.dice")
    assert [(r["config"], r["n"]) for r in rows] == [("base", 10), ("base", 100), ("new", 10), ("new", 100),
                                                     ("one", 10)]
    for row in rows[:4]:
        v = np.array(values[(row["config"], row["n"])])
        assert row["mean"] == pytest.approx(v.mean()) and row["std"] == pytest.approx(np.std(v, ddof=1))
        assert row["values"] == pytest.approx(v.tolist()) and row["n_seeds"] == 3 and row["seeds"] == [0, 1, 2]
    assert rows[0]["std"] == pytest.approx(0.2)  # by hand: deviations -0.2, 0, 0.2 -> sqrt(0.08 / 2)
    assert rows[4]["std"] is None and rows[4]["mean"] == 0.3  # one seed: no spread
    # gains against the baseline at the same n: new at 100 is +0.33 against a spread of hypot(0.02, 0.05)
    gain = compare(rows[3], rows[1])
    assert gain["gain"] == pytest.approx(0.33) and gain["spread"] == pytest.approx(math.hypot(0.02, 0.05))
    assert gain["exceeds"] is True and compare(rows[2], rows[0])["exceeds"] is False  # -0.1 within 0.206
    assert compare(rows[4], rows[0])["exceeds"] is None
    md = markdown(rows, baseline="base")
    assert "| base | 10 | 0.700 ± 0.200 | 3 |" in md and "+0.330 (exceeds the spread 0.054)" in md
    assert "-0.100 (within the spread 0.206)" in md and "| one | 10 | 0.300 | 1 | -0.400 (spread unknown" in md


def test_write_tables_and_learning_curve(tmp_path, monkeypatch):
    results = sweep(grid({"base": {"base": 0.2}, "new": {"base": 0.4}}, seeds=[0, 1], ns=[4, 16, 64]), toy,
                    tmp_path)
    rows = aggregate(results, "score")
    md = write_tables(rows, tmp_path, "curve", baseline="base")
    saved = json.loads((tmp_path / "curve.json").read_text())
    assert saved["rows"] == rows and (tmp_path / "curve.md").read_text() == md
    from common import viz

    seen = {}
    real = viz.save_figure

    def keep(fig, path):
        ax = fig.axes[0]
        seen.update(xscale=ax.get_xscale(), title=ax.get_title(), xlabel=ax.get_xlabel(), ylabel=ax.get_ylabel(),
                    legend=[t.get_text() for t in ax.get_legend().get_texts()], bands=len(ax.collections),
                    lines=[ln.get_ydata().tolist() for ln in ax.get_lines()])
        return real(fig, path)

    monkeypatch.setattr(viz, "save_figure", keep)
    path = learning_curve(rows, tmp_path / "curve.png", "score", "toy learning curve", baseline="base")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seen["xscale"] == "log" and seen["title"] == "toy learning curve" and seen["bands"] == 2
    assert seen["xlabel"] == "labelled samples n" and "sample std" in seen["ylabel"]
    assert seen["legend"] == ["base (baseline), 2 seed(s)", "new, 2 seed(s)"]
    assert seen["lines"][1] == pytest.approx([r["mean"] for r in rows if r["config"] == "new"])
    with pytest.raises(ValueError, match="needs every row's n"):
        learning_curve([{**rows[0], "n": None}], tmp_path / "x.png", "score", "t")
