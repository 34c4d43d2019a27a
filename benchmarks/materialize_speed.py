"""Rendering the demo classifier's training set once, in one process vs in worker processes.

``common.data.cache.Materialized`` renders a procedural dataset once before training (the demo DenseNet's
4,800 bone phantoms at 160 px). This renders the same set both ways in one run, checks that the items are
identical, and prints the speed-up: the first-use training of the demo model waits for it.

    python benchmarks/materialize_speed.py --n 4800 --size 160 --out benchmarks/results/materialize_speed
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import OneLineErrorParser, int_at_least  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402


def get_args(argv=None) -> argparse.Namespace:
    p = OneLineErrorParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int_at_least(1), default=4800,
                   help="bone phantom images (the demo model's training set)")
    p.add_argument("--size", type=int_at_least(32), default=160, help="image side in pixels, >= 32")
    p.add_argument("--workers", type=int_at_least(0), default=None,
                   help="worker processes of the parallel run (default: Materialized's own choice)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--out", default="runs/materialize_speed", help="folder for metrics.json and report.md")
    p.add_argument("--quick", action="store_true", help="600 images at 96 px")
    return p.parse_args(argv)


def same_items(a, b) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"]) and x["label"] == y["label"]
        and x["meta"] == y["meta"] for x, y in zip(a.items, b.items))


def main(args: argparse.Namespace) -> dict:
    from common.data.cache import Materialized
    from common.data.phantoms import BoneXrayPhantom

    if args.quick:
        args.n, args.size = 600, 96
    if args.n < 1 or args.size < 32:
        raise InputError(f"--n {args.n} / --size {args.size} too small", hint="use --n >= 1 and --size >= 32")
    print(f"args: {vars(args)}", flush=True)
    data = BoneXrayPhantom(n=args.n, size=args.size, seed=args.seed)
    t0 = time.perf_counter()
    serial = Materialized(data, workers=0)
    t1 = time.perf_counter()
    parallel = Materialized(data, workers=args.workers)
    t2 = time.perf_counter()
    if not same_items(serial, parallel):
        raise RuntimeError("the items rendered in worker processes differ from the ones rendered in this process")
    workers = args.workers if args.workers is not None else Materialized.default_workers(len(data))
    rows = [{"rendering": "one process (workers=0)", "seconds": f"{t1 - t0:.1f}", "speed-up": "1.00x"},
            {"rendering": f"{workers} worker processes", "seconds": f"{t2 - t1:.1f}",
             "speed-up": f"{(t1 - t0) / (t2 - t1):.2f}x"}]
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/materialize_speed.py", *sys.argv[1:]])
    md = markdown_table(rows, list(rows[0]))
    write_report(Path(args.out), "Rendering the demo training set: one process vs workers", [
        f"Command: `{command}`; {args.n} bone phantoms at {args.size} px, seed {args.seed}, {os.cpu_count()} CPUs, "
        "items checked identical.", md])
    print(md, flush=True)
    metrics = {"command": command, "n": args.n, "size": args.size, "cpus": os.cpu_count(), "workers": workers,
               "serial_seconds": t1 - t0, "parallel_seconds": t2 - t1, "identical": True}
    save_json(Path(args.out) / "metrics.json", metrics)
    return metrics


if __name__ == "__main__":
    cli_main(main, get_args())
