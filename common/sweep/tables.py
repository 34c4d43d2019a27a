"""A sweep's results as rows (mean ± sample std over seeds per configuration and n), tables and a learning curve."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from common.io.atomic import atomic_path, save_json
from common.sweep.runner import Result


def _value(metrics: dict, metric: str | Callable[[dict], float]) -> float:
    if callable(metric):
        return float(metric(metrics))
    return float(functools.reduce(lambda d, k: d[k], metric.split("."), metrics))  # "scores.cam_b4.all"


def aggregate(results: Sequence[Result], metric: str | Callable[[dict], float]) -> list[dict]:
    """Rows per (config, n): ``config``, ``n``, ``mean``, ``std`` (sample std over seeds, ddof 1; None for one
    seed), ``n_seeds``, ``values`` and ``seeds`` (by seed), ``n_failed``. Configs in order of first appearance,
    n ascending. ``metric``: a key of the metrics (dotted for nested dicts) or a function of them."""
    groups: dict[tuple, list[Result]] = {}
    for res in results:
        groups.setdefault((res.run.config, res.run.n), []).append(res)
    configs = list(dict.fromkeys(c for c, _ in groups))
    rows = []
    for key in sorted(groups, key=lambda k: (configs.index(k[0]), -1 if k[1] is None else k[1])):
        done = sorted((r for r in groups[key] if r.ok), key=lambda r: r.run.seed)
        values = np.array([_value(r.metrics, metric) for r in done], dtype=np.float64)
        rows.append({"config": key[0], "n": key[1], "mean": float(values.mean()) if len(values) else None,
                     "std": float(values.std(ddof=1)) if len(values) > 1 else None, "n_seeds": len(values),
                     "values": values.tolist(), "seeds": [r.run.seed for r in done],
                     "n_failed": len(groups[key]) - len(done)})
    return rows


def compare(row: dict, baseline: dict) -> dict:
    """``row``'s gain over ``baseline`` (difference of means) against the seeds' spread, sqrt(std^2 + std_b^2) (the
    std of a difference of two runs): ``exceeds`` is True/False, None where one seed leaves the spread unknown."""
    if row["mean"] is None or baseline["mean"] is None:
        return {"gain": None, "spread": None, "exceeds": None}
    gain = row["mean"] - baseline["mean"]
    if row["std"] is None or baseline["std"] is None:
        return {"gain": gain, "spread": None, "exceeds": None}
    spread = math.hypot(row["std"], baseline["std"])
    return {"gain": gain, "spread": spread, "exceeds": abs(gain) > spread}


def mean_std(row: dict, digits: int = 3) -> str:
    """``"0.812 ± 0.021"``; one seed: the value alone (no spread to show); none: "n/a"."""
    if row["mean"] is None:
        return "n/a"
    return f"{row['mean']:.{digits}f}" + ("" if row["std"] is None else f" ± {row['std']:.{digits}f}")


def markdown(rows: Sequence[dict], baseline: str | None = None, digits: int = 3) -> str:
    """The rows as a markdown table: mean ± std, seeds and, given a baseline config, the gain and whether it
    exceeds the seeds' spread (at the same n)."""
    from common.report import markdown_table

    show_n = any(r["n"] is not None for r in rows)
    base = {r["n"]: r for r in rows if r["config"] == baseline}
    table = []
    for r in rows:
        seeds = f"{r['n_seeds']} ({r['n_failed']} failed)" if r["n_failed"] else r["n_seeds"]
        line = {"config": r["config"], **({"n": r["n"]} if show_n else {}), "mean ± std": mean_std(r, digits),
                "seeds": seeds}
        if baseline is not None:
            c = compare(r, base[r["n"]]) if r["n"] in base and r["config"] != baseline else None
            line[f"vs {baseline}"] = "" if c is None or c["gain"] is None else (
                f"{c['gain']:+.{digits}f} (spread unknown: one seed)" if c["exceeds"] is None else
                f"{c['gain']:+.{digits}f} ({'exceeds' if c['exceeds'] else 'within'} the spread "
                f"{c['spread']:.{digits}f})")
        table.append(line)
    return markdown_table(table, digits=digits)


def write_tables(rows: Sequence[dict], out: str | os.PathLike, name: str, baseline: str | None = None,
                 digits: int = 3) -> str:
    """``<out>/<name>.json`` (the rows) and ``<out>/<name>.md`` (:func:`markdown`); returns the markdown."""
    md = markdown(rows, baseline, digits)
    save_json(Path(out) / f"{name}.json", {"rows": list(rows), "baseline": baseline})
    with atomic_path(Path(out) / f"{name}.md") as tmp:
        tmp.write_text(md)
    return md


def learning_curve(rows: Sequence[dict], path: str | os.PathLike, ylabel: str, title: str,
                   baseline: str | None = None, xlabel: str = "labelled samples n") -> Path:
    """Metric against n (log axis), one line per config with its ± std band; the baseline dashed."""
    from common import viz  # its pyplot: viz chooses the headless backend first

    if any(r["n"] is None for r in rows):
        raise ValueError("a learning curve needs every row's n")
    fig, ax = viz.plt.subplots(figsize=(6, 4.2))
    for config in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == config and r["mean"] is not None]
        x, y = np.array([r["n"] for r in mine]), np.array([r["mean"] for r in mine])
        sd = np.array([np.nan if r["std"] is None else r["std"] for r in mine])
        seeds = max((r["n_seeds"] for r in mine), default=0)
        (line,) = ax.plot(x, y, "--" if config == baseline else "-", marker="o",
                          label=f"{config}{' (baseline)' if config == baseline else ''}, {seeds} seed(s)")
        ax.fill_between(x, y - sd, y + sd, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel} (mean ± sample std over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return viz.save_figure(fig, path)
