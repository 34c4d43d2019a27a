"""Post-processing cost per slice: DenseCRF and the graph methods against the ENet forward pass they follow.

The pseudo-label demo (01_WeaklySupervised/train_pseudolabel.py) refines ENet's softmax (Paszke et al. 2016,
https://arxiv.org/abs/1606.02147) with DenseCRF (Krähenbühl & Koltun 2011, https://arxiv.org/abs/1210.5644; the
survey's sxy 3, schan 10, 5 iterations), an optimal closed path in polar coordinates and GrabCut. This times each on
one cardiac phantom slice (default 256 x 256, ACDC's size) with an ENet-like probability (the true LV mask blurred
and noised), next to ENet's forward pass on the same slice (batch 1, eval mode), and prints their ratio. Goal on
the project's 2-core CPU: DenseCRF <= 0.5 s a slice.

    python benchmarks/crf_speed.py                        # -> runs/crf_speed/{metrics.json,report.md}
    python benchmarks/crf_speed.py --out benchmarks/results/crf_speed
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import OneLineErrorParser, int_at_least  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.weak.crf import CRFParams, dense_crf  # noqa: E402
from common.weak.graph import GrabCutParams, PolarParams, grabcut_refine, polar_boundary  # noqa: E402


def get_args(argv=None) -> argparse.Namespace:
    p = OneLineErrorParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", type=int_at_least(32), default=256, help="slice side in pixels (multiple of 8)")
    p.add_argument("--repeats", type=int_at_least(1), default=10, help="timed calls of each method (median reported)")
    p.add_argument("--warmup", type=int_at_least(0), default=2, help="untimed calls first")
    p.add_argument("--threads", type=int_at_least(0), default=1,
                   help="torch CPU threads for ENet (DenseCRF, the DP and GrabCut use one core); 0 keeps torch's")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--out", default="runs/crf_speed", help="folder for metrics.json and report.md")
    p.add_argument("--quick", action="store_true", help="3 timed calls, 1 warm-up")
    return p.parse_args(argv)


def slice_and_prob(size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A phantom slice with the LV (H, W) in [0, 1], its LV mask and an ENet-like probability of it."""
    from common.data.phantoms.cardiac import LABELS, render_cardiac_volume

    volume, labels, _ = render_cardiac_volume([seed, 0], size=size, n_slices=6, extra_slices=False)
    lv = labels == LABELS["lv"]
    k = int(np.argmax(lv.sum((1, 2))))
    rng = np.random.default_rng(seed)
    blurred = ndimage.gaussian_filter(lv[k].astype(np.float64), size / 128)
    prob = np.clip(ndimage.shift(blurred, (size / 128, -size / 128)) + rng.normal(0, 0.1, lv[k].shape), 0, 1)
    return volume[k], lv[k], prob.astype(np.float32)


def median_seconds(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(args: argparse.Namespace) -> dict:
    from common.models.enet import ENet

    if args.size % 8:
        raise InputError(f"--size {args.size} must be a multiple of 8 (ENet halves it three times)")
    if args.quick:
        args.repeats, args.warmup = 3, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"args: {vars(args)}", flush=True)
    load = os.getloadavg()[0]  # other work on the machine slows every row alike; the ratios hold better
    image, _, prob = slice_and_prob(args.size, args.seed)
    probs = np.stack([1 - prob, prob])
    net = ENet(in_channels=1, num_classes=2).eval()
    x = torch.from_numpy(image[None, None].copy())

    def enet():
        with torch.no_grad():
            net(x).softmax(1)

    crf, polar, grabcut = CRFParams(), PolarParams(edge_weight=1.0), GrabCutParams()
    timed = {
        "ENet forward (batch 1)": enet,
        f"DenseCRF (sxy {crf.sxy:g}, schan {crf.schan:g}, {crf.iters} iterations)":
            lambda: dense_crf(image, probs, crf),
        "graph search (polar DP, edge weight 1)": lambda: polar_boundary(prob, image, None, polar),
        f"GrabCut ({grabcut.iters} iterations)": lambda: grabcut_refine(image, prob, grabcut),
    }
    seconds = {name: median_seconds(fn, args.repeats, args.warmup) for name, fn in timed.items()}
    base = seconds["ENet forward (batch 1)"]
    rows = [{"method": name, "seconds a slice": f"{s:.4f}", "x ENet forward": f"{s / base:.2f}"}
            for name, s in seconds.items()]
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/crf_speed.py", *sys.argv[1:]])
    md = markdown_table(rows, list(rows[0]), name="speed")
    crf_s = seconds[list(timed)[1]]
    write_report(Path(args.out), f"Post-processing cost per {args.size} x {args.size} slice", [
        f"Command: `{command}`; median of {args.repeats} calls after {args.warmup} warm-up, {os.cpu_count()} CPUs "
        f"(load average {load:.1f} at the start), {torch.get_num_threads()} torch thread(s); ENet untrained (its "
        "cost does not depend on its weights); "
        "the probability is the phantom's LV blurred, shifted and noised.", md,
        f"DenseCRF: {crf_s:.3f} s a slice (goal <= 0.5 s: {'met' if crf_s <= 0.5 else 'missed'}).",
    ])
    print(md, flush=True)
    metrics = {"command": command, "size": args.size, "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
               "repeats": args.repeats, "load_average": load, "seconds": seconds,
               "ratio_to_enet": {k: v / base for k, v in seconds.items()},
               "crf_goal_met": crf_s <= 0.5}
    save_json(Path(args.out) / "metrics.json", metrics)
    return metrics


if __name__ == "__main__":
    cli_main(main, get_args())
