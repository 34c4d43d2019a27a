"""The one sweep runner: a grid of runs (configuration, seed[, n]) trained in parallel worker processes, resumable,
in seed-major order; their metrics as mean ± sample std rows, a markdown table and a learning curve.

    runs = grid({"baseline": {}, "mixup": {"alpha": 0.2}}, seeds=range(3), ns=[10, 30, 100], params={"epochs": 5})
    results = sweep(runs, train_run, out, jobs=2, resume=True)  # train_run(run, out_dir) -> {"dice": 0.81, ...}
    rows = aggregate(results, "dice")                             # per (config, n): mean, std (ddof 1), values
    write_tables(rows, out, "dice", baseline="baseline"); learning_curve(rows, out / "dice.png", "Dice", "...")

A run's folder is ``<out>/<config>/[n<n>/]seed<seed>/``: what ``fn`` writes, ``metrics.json`` (the dict it returned)
and ``run.json`` (config, seed, n, params and their hash), both written atomically, run.json last: a run is
finished when both exist. ``fn`` is a module-level function (or a functools.partial of one) because workers get it
by name; a script's function is found again from the script's file, so scripts loaded by path (tests) work too.

``runner``: :class:`Run`, :func:`grid`, :func:`sweep`; ``tables``: :func:`aggregate`, :func:`compare`,
:func:`markdown`, :func:`write_tables`, :func:`learning_curve`.
"""

from common.sweep.runner import ERROR, LOG, METRICS, RUN, Result, Run, finished, grid, sweep
from common.sweep.tables import aggregate, compare, learning_curve, markdown, mean_std, write_tables

__all__ = ["ERROR", "LOG", "METRICS", "RUN", "Result", "Run", "aggregate", "compare", "finished", "grid",
           "learning_curve", "markdown", "mean_std", "sweep", "write_tables"]
