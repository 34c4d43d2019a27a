"""Overhead of common.engine.fit against a bare PyTorch loop: same model, data, optimizer, epochs, one run.

Both train a small CNN for the same number of epochs on the same in-memory tensors; the engine also
validates nothing, but writes its per-epoch checkpoint and metrics as it always does. Printed as a ratio
(goal: engine / bare <= 1.05). Timing only: never a pass/fail test.

Usage: python benchmarks/engine_overhead.py [--quick] [--device cuda]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from common.cli import OneLineErrorParser, int_at_least  # noqa: E402
from common.engine import FitConfig, fit, supervised_step  # noqa: E402
from common.errors import cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.report import markdown_table  # noqa: E402
from common.runtime import DEVICE_CHOICES, choose_device, seed_everything  # noqa: E402


class Tensors(Dataset):
    def __init__(self, n, size):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.rand(n, 1, size, size, generator=g), torch.randint(0, 2, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.y[i]}


def make_model():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(32, 2))


def bare(data, args, device):
    seed_everything(0)
    model = make_model().to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        for batch in loader:
            x, y = batch["image"].to(device), batch["label"].to(device)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def engine(data, args, device):
    seed_everything(0)
    model = make_model().to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = FitConfig(epochs=args.epochs, batch_size=args.batch_size, out=Path(tmp), amp=False)
        t0 = time.perf_counter()
        fit(model, data, None, supervised_step(torch.nn.functional.cross_entropy), opt, cfg, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def get_args(argv=None) -> argparse.Namespace:
    p = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu", choices=DEVICE_CHOICES)
    p.add_argument("--epochs", type=int_at_least(1), default=5)
    p.add_argument("--n", type=int_at_least(1), default=2048)
    p.add_argument("--size", type=int_at_least(2), default=64, help="image side (the model max-pools by 2 once)")
    p.add_argument("--batch-size", type=int_at_least(1), default=32)
    p.add_argument("--repeats", type=int_at_least(1), default=3)
    p.add_argument("--out", type=Path, default=Path("runs/benchmarks/engine_overhead.json"))
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    if args.quick:
        args.epochs, args.n, args.repeats = 2, 512, 2
    device = choose_device(args.device)
    data = Tensors(args.n, args.size)
    times = {"bare": [], "engine": []}
    for _ in range(args.repeats):  # interleaved, best of n: the least disturbed run of each
        times["bare"].append(bare(data, args, device))
        times["engine"].append(engine(data, args, device))
    best = {k: min(v) for k, v in times.items()}
    rows = [{"loop": k, "best seconds": best[k], "ratio to bare": best[k] / best["bare"]} for k in ("bare", "engine")]
    print(f"command: python benchmarks/engine_overhead.py {' '.join(sys.argv[1:])} (device {device})")
    print(markdown_table(rows))
    save_json(args.out, {"device": str(device), "args": vars(args), "times": times,
                         "ratio": best["engine"] / best["bare"]})


if __name__ == "__main__":
    cli_main(main, get_args())
