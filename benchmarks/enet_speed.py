"""ENet training throughput with the weakly supervised losses of Kervadec et al. 2019.

One training step is what ``01_WeaklySupervised`` does per batch: ENet forward (Paszke et al. 2016,
https://arxiv.org/abs/1606.02147), partial cross-entropy on point seeds plus 1e-2 x size penalty
(Kervadec et al., https://arxiv.org/abs/1805.04628), backward, Adam step. Prints a markdown table of images/s
per input size, with each size's step time relative to the smallest size.

    python benchmarks/enet_speed.py --quick
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import OneLineErrorParser, int_at_least  # noqa: E402
from common.errors import cli_main  # noqa: E402
from common.losses import bounds_from_masks, partial_cross_entropy, size_penalty  # noqa: E402
from common.models.enet import ENet  # noqa: E402
from common.runtime import DEVICE_CHOICES, choose_device, seed_everything  # noqa: E402
from common.weak.labels import make_weak_label  # noqa: E402


def enet_size(text: str) -> int:
    """argparse ``type=`` of --sizes: a multiple of 8 (ENet halves the input three times), at least 16 (at 8 the
    bottleneck is 1 x 1 and batch norm fails on a batch of one)."""
    value = int_at_least(16)(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"must be a multiple of 8 (ENet halves it three times), got {value}")
    return value


def get_args(argv=None) -> argparse.Namespace:
    p = OneLineErrorParser(description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", type=enet_size, nargs="+", default=[128, 256],
                   help="square input sizes (multiples of 8, >= 16)")
    p.add_argument("--batch-size", type=int_at_least(1), default=8)
    p.add_argument("--steps", type=int_at_least(1), default=10, help="timed training steps per size")
    p.add_argument("--warmup", type=int_at_least(0), default=2, help="untimed steps first (allocator, kernel choice)")
    p.add_argument("--device", default="cpu", choices=DEVICE_CHOICES)
    p.add_argument("--threads", type=int_at_least(0), default=0, help="torch CPU threads; 0 keeps torch's default")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--quick", action="store_true", help="3 timed steps, 1 warm-up")
    return p.parse_args(argv)


def make_batch(batch_size: int, size: int, seed: int):
    """Random images with one disk each, its point-seed weak label and common size bounds."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = []
    for _ in range(batch_size):
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        masks.append((yy - cy) ** 2 + (xx - cx) ** 2 <= (size // 8) ** 2)
    masks = np.stack(masks)                                                       # (B, H, W)
    weak = np.stack([make_weak_label("point", m, seed=seed + i) for i, m in enumerate(masks)])
    images = torch.from_numpy(masks[:, None].astype(np.float32)) + 0.3 * torch.randn(batch_size, 1, size, size)
    bounds = bounds_from_masks("common", torch.from_numpy(masks))
    return images, torch.from_numpy(weak.astype(np.int64)), bounds


def time_steps(size: int, args: argparse.Namespace, device: torch.device) -> float:
    """Mean seconds per training step at one input size."""
    net = ENet(in_channels=1, num_classes=2).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=5e-4)
    images, weak, bounds = (t.to(device) for t in make_batch(args.batch_size, size, args.seed))

    def step():
        opt.zero_grad(set_to_none=True)
        logits = net(images)
        loss = partial_cross_entropy(logits, weak) + 1e-2 * size_penalty(logits, bounds)
        loss.backward()
        opt.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    return (time.perf_counter() - start) / args.steps


def main(args: argparse.Namespace) -> dict:
    if args.quick:
        args.steps, args.warmup = 3, 1
    seed_everything(args.seed)
    device = choose_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"args: {vars(args)}")

    rows = []
    for size in sorted(args.sizes):
        sec = time_steps(size, args, device)
        rows.append({"size": size, "s_per_step": sec, "images_per_s": args.batch_size / sec})
    base = rows[0]["s_per_step"]

    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/enet_speed.py", *sys.argv[1:]])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nENet training throughput ({where}, batch {args.batch_size}, {args.steps} timed steps, "
          f"torch {torch.__version__})\n\nCommand: `{command}`\n")
    print("| input | s / step | images / s | step time vs first row |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| 1x{r['size']}x{r['size']} | {r['s_per_step']:.3f} | {r['images_per_s']:.1f} | "
              f"{r['s_per_step'] / base:.2f}x |")
    return {"device": str(device), "batch_size": args.batch_size, "rows": rows}


if __name__ == "__main__":
    cli_main(main, get_args())
