"""Augmentation throughput in the DataLoader beside the training step's, on the augmentation demo's images and models.

For each study of 04_Miscellaneous/augmentation.py (SmallCNN on the bone phantom, U-Net on cardiac LV crops) and each
augmentation family, three rates in images/s: the loader alone (per-item augmentation + collate / mixing, in
``--workers`` worker processes as the demo's ``--workers``), the training step alone on batches made once, and the
two together (what a run does). The goal: the step with augmentation takes <= 1.1x the step without it, i.e.
augmentation is not what the training waits for.

Usage: python benchmarks/augment_speed.py --quick
       python benchmarks/augment_speed.py --workers 0,2 --out benchmarks/results/augment_speed
"""

import argparse
import itertools
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common.cli import add_common_args, int_at_least, make_parser, parse_args  # noqa: E402
from common.data.augment import FAMILIES  # noqa: E402
from common.errors import cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import log, setup_run  # noqa: E402
from common.tasks.augmentation_study import (  # noqa: E402
    StudyConfig,
    make_model,
    soft_step,
    target_key,
    train_loader_parts,
    training_items,
)


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected integers >= 0, got {text!r}")
    return values


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "augment_speed", batch_size=16, train=False, data_root=False)
    p.add_argument("--batch-size", type=int_at_least(1), default=16, help="images per batch")
    p.add_argument("--workers", type=int_list, default=(0,), help="DataLoader worker counts, comma list")
    p.add_argument("--batches", type=int_at_least(2), default=40, help="batches timed per measurement")
    p.add_argument("--size", type=int_at_least(32), default=64, help="classifier image side (segmenter: half)")
    p.add_argument("--width", type=int_at_least(1), default=16, help="model channels at the first level")
    p.add_argument("--threads", type=int_at_least(0), default=0, help="torch threads of the training step (0: all)")
    args = parse_args(p, argv, quick={"batches": 10, "size": 48, "width": 8})
    shown = argv if argv is not None else sys.argv[1:]
    args.command = "python benchmarks/augment_speed.py " + " ".join(shlex.quote(a) for a in shown)
    return args


def rate(batches, fn, count: int) -> float:
    """Images/s of ``fn`` over ``count`` batches (after one warm-up batch)."""
    it = iter(batches)
    fn(next(it))
    t0, images = time.perf_counter(), 0
    for batch in itertools.islice(it, count):
        fn(batch)
        images += len(batch["image"])
    return images / (time.perf_counter() - t0)


def measure(cfg: StudyConfig, family: str, workers: int, args, device) -> dict:
    from torch.utils.data import DataLoader

    train = training_items(cfg, 8 if cfg.task == "classifier" else 2, 0)
    data, collate = train_loader_parts(cfg, train, (family,))
    count = args.batches
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, num_workers=workers, collate_fn=collate,
                        persistent_workers=workers > 0)

    def forever():
        while True:
            yield from loader

    model = make_model(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = soft_step(target_key(cfg), cfg.task == "segmenter")

    def train_step(batch):
        loss, _, _ = step(model, batch, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    loader_rate = rate(forever(), lambda b: None, count)
    fixed = [b for b, _ in zip(forever(), range(count + 1), strict=False)]
    step_rate = rate(fixed, train_step, count)
    both_rate = rate(forever(), train_step, count)
    return {"task": cfg.task, "family": family, "workers": workers, "loader img/s": loader_rate,
            "step img/s": step_rate, "step + augmentation img/s": both_rate,
            "with / without augmentation": step_rate / both_rate}


def main(args):
    ctx = setup_run(args)
    if ctx.device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    cfgs = [StudyConfig(task="classifier", size=args.size, width=args.width, batch_size=args.batch_size,
                        lesion_types=("hardware",), n_test=2, pool=64),
            StudyConfig(task="segmenter", size=args.size // 2 // 8 * 8, width=args.width, depth=3,
                        batch_size=args.batch_size, n_test=1, pool=2)]
    rows = [measure(cfg, family, w, args, ctx.device) for cfg in cfgs for w in args.workers for family in FAMILIES]
    for r in rows:
        log(", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))
    worst = max(r["with / without augmentation"] for r in rows)
    table = markdown_table(rows, name="speed")
    write_report(ctx.out, "Augmentation throughput vs the training step", [
        f"Command: `{args.command}` on {ctx.device} ({torch.get_num_threads()} torch threads), batch "
        f"{args.batch_size}. Goal: step with augmentation <= 1.1x the step without; worst ratio here {worst:.2f}.",
        table])
    save_json(ctx.out / "metrics.json", {"rows": rows, "worst_ratio": worst, "command": args.command})
    log(table)
    return {"rows": rows, "worst_ratio": worst}


if __name__ == "__main__":
    cli_main(main, get_args())
