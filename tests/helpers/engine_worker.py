"""A tiny training run through common.engine, launched as a subprocess by the engine tests.

Used for the kill-and-resume test (SIGKILL mid-run, then --resume) and the torchrun DDP test.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.engine import FitConfig, fit, supervised_step  # noqa: E402
from common.runtime import cleanup_distributed, setup_run  # noqa: E402


class Blobs(Dataset):
    """Two Gaussian classes of 16-pixel images; ``delay`` slows items so a test can kill mid-run."""

    def __init__(self, n: int, seed: int, delay: float = 0.0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 2, (n,), generator=g)
        self.x = torch.randn(n, 1, 4, 4, generator=g) + self.y.view(-1, 1, 1, 1).float()
        self.delay = delay

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        # augmentation that consumes the global RNG, to prove it is restored on resume
        x = self.x[i] + 0.1 * torch.randn_like(self.x[i])
        return {"image": x, "label": self.y[i]}


def accuracy_and_count(outputs, targets):
    return {"acc": (outputs.argmax(1) == targets).float().mean().item(), "n": float(len(targets))}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--n-val", type=int, default=7)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    ctx = setup_run(args)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Dropout(0.3),
                                torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    cfg = FitConfig(epochs=args.epochs, batch_size=4, out=ctx.out, seed=args.seed, resume=args.resume,
                    args={k: v for k, v in vars(args).items() if k != "delay"})  # delay: a test knob
    fit(model, Blobs(32, 1, args.delay), Blobs(args.n_val, 2), supervised_step(torch.nn.functional.cross_entropy),
        opt, cfg, ctx.device, scheduler=sched, metric_fn=accuracy_and_count)
    cleanup_distributed()


if __name__ == "__main__":
    main()
