"""Summarize training runs from their per-epoch ``metrics.csv``: epochs done, best and last value of a metric.

For runs that were cut short (a device's time ran out) or trained elsewhere, where no table script
finished: one row per run folder, ratios to a reference run, as a markdown table.

Usage: python benchmarks/summarize_runs.py benchmarks/results/wss_full_seed0_h200 --metric val_dice3d --ref fs_erosion
       (--out DIR also writes the table to DIR/report.md and DIR/tables.json, table "runs", for a README block)
"""

import argparse
import csv
import math
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import OneLineErrorParser  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402


def summarize(root: Path, metric: str, ref: str | None) -> list[dict]:
    rows = []
    for path in sorted(root.glob("*/metrics.csv")):
        with open(path, newline="") as fh:
            history = list(csv.DictReader(fh))
        if not history or metric not in history[0]:
            raise SystemExit(f"error: {path} has no column {metric!r}")
        values = []
        for row, h in enumerate(history, 1):
            try:
                values.append(float(h[metric]))
            except (TypeError, ValueError):  # an empty cell (a run killed mid-write) or text
                raise SystemExit(f"error: {path} row {row}: {metric} is {h[metric]!r}, not a number "
                                 "-- fix or remove that row") from None
        scored = [i for i, v in enumerate(values) if not math.isnan(v)]  # nan compares false: max() could pick it
        if not scored:
            raise SystemExit(f"error: {path}: every {metric} value is nan")
        best = max(scored, key=values.__getitem__)
        rows.append({"run": path.parent.name, "epochs": len(values), f"best {metric}": values[best],
                     "best epoch": best + 1, f"last {metric}": values[-1]})
    if not rows:
        raise SystemExit(f"error: no */metrics.csv under {root}")
    if ref is not None:
        base = next((r[f"best {metric}"] for r in rows if r["run"] == ref), None)
        if base is None:
            raise SystemExit(f"error: no run named {ref!r} under {root}")
        for r in rows:
            r[f"best / {ref}"] = r[f"best {metric}"] / base
    return rows


def main(argv=None):
    p = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="folder of run folders, each with a metrics.csv")
    p.add_argument("--metric", default="val_dice3d", help="column to summarize (higher is better)")
    p.add_argument("--ref", default=None, help="run folder the ratios are taken to")
    p.add_argument("--out", type=Path, default=None,
                   help="also write the table to <out>/report.md and <out>/tables.json (table \"runs\")")
    args = p.parse_args(argv)
    rows = summarize(args.root, args.metric, args.ref)
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float):
                r[k] = f"{v:.3f}"
    table = markdown_table(rows, list(rows[0]), name="runs")
    print(table)
    if args.out is not None:
        shown = argv if argv is not None else sys.argv[1:]
        command = "python benchmarks/summarize_runs.py " + " ".join(shlex.quote(str(a)) for a in shown)
        write_report(args.out, f"{args.metric} of the runs under {args.root}", [f"Made by `{command}`.", table])


if __name__ == "__main__":
    main()
