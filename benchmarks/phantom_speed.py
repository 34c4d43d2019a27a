"""Generation speed of the built-in procedural phantoms in ``common/data/phantoms``.

The phantoms stand in for public datasets when the project runs offline, so they must be cheap
next to training. For each phantom that exists (fundus in both camera domains, bone X-ray,
cardiac MRI slices) this times producing ``--n`` items at ``--size`` x ``--size``, dataset
construction included, and prints a markdown table of images/s and seconds per 1,000 images with
each row's time relative to the first. Missing phantom modules are skipped with a notice.

    python benchmarks/phantom_speed.py --n 1000 --size 128
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import OneLineErrorParser, int_at_least  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402


def _fundus(domain):
    def make(mod, n, size, seed):
        return mod.FundusPhantom(n=n, size=size, domain=domain, seed=seed)
    return make


def _bone(mod, n, size, seed):
    return mod.BoneXrayPhantom(n=n, size=size, seed=seed)


def _cardiac(mod, n, size, seed):
    # Slices per volume vary, so add volumes until at least n slices exist.
    n_volumes = 1
    while True:
        ds = mod.CardiacPhantomSlices(n_volumes=n_volumes, size=size, seed=seed)
        if len(ds) >= n:
            return ds
        n_volumes = max(n_volumes + 1, math.ceil(n_volumes * n / max(len(ds), 1)))


# name -> (module, factory(module, n, size, seed) -> Dataset)
PHANTOMS = {
    "fundus-A": ("common.data.phantoms.fundus", _fundus("A")),
    "fundus-B": ("common.data.phantoms.fundus", _fundus("B")),
    "bone-xray": ("common.data.phantoms.bone", _bone),
    "cardiac-slices": ("common.data.phantoms.cardiac", _cardiac),
}
# the smallest --size each phantom draws (its own check would stop the run only after the phantoms before it)
MIN_SIZE = {"fundus-A": 16, "fundus-B": 16, "bone-xray": 32, "cardiac-slices": 32}


def get_args(argv=None) -> argparse.Namespace:
    p = OneLineErrorParser(description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int_at_least(1), default=1000, help="items generated per phantom")
    p.add_argument("--size", type=int_at_least(min(MIN_SIZE.values())), default=128,
                   help="image side in pixels (fundus >= 16, bone and cardiac >= 32)")
    p.add_argument("--phantoms", nargs="+", default=list(PHANTOMS), choices=list(PHANTOMS))
    p.add_argument("--workers", type=int_at_least(0), default=0,
                   help="DataLoader worker processes; 0 indexes the dataset in this process")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--out", default="runs/phantom_speed", help="folder for metrics.json")
    p.add_argument("--quick", action="store_true", help="100 items per phantom")
    args = p.parse_args(argv)
    small = [name for name in args.phantoms if args.size < MIN_SIZE[name]]
    if small:
        p.error(f"argument --size: {args.size} is too small for {', '.join(small)} (needs >= "
                f"{max(MIN_SIZE[name] for name in small)}); pass a larger --size or other --phantoms")
    return args


def time_phantom(module, factory, args: argparse.Namespace) -> tuple[float, float]:
    """Wall and CPU seconds to build the dataset and produce its first ``args.n`` items.

    CPU time (this process only, so meaningful with ``--workers 0``) is what to compare on a machine
    shared with other jobs, where wall time mostly measures the neighbours.
    """
    start, cpu = time.perf_counter(), time.process_time()
    ds = factory(module, args.n, args.size, args.seed)
    if args.workers > 0:
        loader = DataLoader(torch.utils.data.Subset(ds, range(args.n)), batch_size=32, num_workers=args.workers)
        count = sum(len(batch["image"]) for batch in loader)
    else:
        count = 0
        for i in range(args.n):
            count += ds[i]["image"].ndim > 0
    if count != args.n:
        raise RuntimeError(f"produced {count} items instead of {args.n}")
    return time.perf_counter() - start, time.process_time() - cpu


def main(args: argparse.Namespace) -> dict:
    if args.quick:
        args.n = 100
    if args.n < 1 or args.size < 16:
        raise InputError(f"--n {args.n} / --size {args.size} too small", hint="use --n >= 1 and --size >= 16")
    print(f"args: {vars(args)}")
    rows, skipped = [], {}
    for name in args.phantoms:
        module_name, factory = PHANTOMS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise  # the phantom exists but one of its own imports is broken: show it
            skipped[name] = f"{module_name} not found"
            print(f"notice: skipping {name}: {module_name} is not in this checkout")
            continue
        seconds, cpu = time_phantom(module, factory, args)
        rows.append({"phantom": name, "seconds": seconds, "images_per_s": args.n / seconds,
                     "seconds_per_1000": 1000 * seconds / args.n,
                     "cpu_seconds_per_1000": 1000 * cpu / args.n if args.workers == 0 else None})

    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/phantom_speed.py", *sys.argv[1:]])
    print(f"\nPhantom generation speed ({args.n} items at {args.size}x{args.size}, dataset construction included, "
          f"workers={args.workers}, {os.cpu_count()} CPUs, torch {torch.__version__})\n\nCommand: `{command}`\n")
    print("| phantom | images / s | s per 1,000 | CPU s per 1,000 (this process) | time vs first row |")
    print("|---|---|---|---|---|")
    for r in rows:
        cpu = "n/a (workers)" if r["cpu_seconds_per_1000"] is None else f"{r['cpu_seconds_per_1000']:.2f}"
        print(f"| {r['phantom']} | {r['images_per_s']:.0f} | {r['seconds_per_1000']:.2f} | {cpu} | "
              f"{r['seconds'] / rows[0]['seconds']:.2f}x |")
    for name, why in skipped.items():
        print(f"| {name} | skipped ({why}) | | | |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average (1 min) at the end: {load:.2f}")
    metrics = {"command": command, "n": args.n, "size": args.size, "workers": args.workers,
               "cpus": os.cpu_count(), "load_average_1min": load, "rows": rows, "skipped": skipped}
    path = save_json(Path(args.out) / "metrics.json", metrics)
    print(f"\nwrote {path}")
    return metrics


if __name__ == "__main__":
    cli_main(main, get_args())
