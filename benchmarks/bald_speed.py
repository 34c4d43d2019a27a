"""BALD (T MC-dropout passes) over a pool on the CPU: common.active against baal, same model, pool and seed.

baal 2.1's ``ModelWrapper.predict_on_dataset`` stacks each batch T times and runs the whole network on the T * B
images (``replicate_in_memory=True``, its default) and ``BALD`` scores the (N, C, T) logits it returns.
common.active.pool.score_pool runs the SmallCNN trunk once per batch and resamples only dropout + head T times
(common/active/mc.py). Both draw the same dropout masks from the same seed, so the scores must agree to float
rounding. Each method runs in its own fresh process, so its peak memory (the rise of the peak resident set over
what the process held with the pool and model loaded) is its own. The pool is random images (seeded): speed and
agreement do not depend on what the images show.

Usage: python benchmarks/bald_speed.py --out benchmarks/results/bald_speed
       python benchmarks/bald_speed.py --quick
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from common.cli import int_at_least, make_parser  # noqa: E402
from common.io.atomic import save_json  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402

METHODS = ("common.active", "baal")
HEAD_SCALE = 30.0


def get_args(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--n", type=int_at_least(1), default=10_000, help="pool images")
    p.add_argument("--size", type=int_at_least(16), default=32, help="image side")
    p.add_argument("--passes", type=int_at_least(2), default=20, help="MC-dropout passes T")
    p.add_argument("--batch-size", type=int_at_least(1), default=128, help="pool images a batch (both methods)")
    p.add_argument("--width", type=int_at_least(1), default=8, help="SmallCNN width (the demo's)")
    p.add_argument("--stages", type=int_at_least(1), default=3, help="SmallCNN stages (the demo's)")
    p.add_argument("--threads", type=int_at_least(1), default=1, help="torch CPU threads (both methods)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--quick", action="store_true", help="a 2,000-image pool")
    p.add_argument("--out", type=Path, default=Path("runs") / "bald_speed")
    p.add_argument("--method", choices=METHODS, default=None, help=argparse.SUPPRESS)  # one child process's work
    args = p.parse_args(argv)
    if args.quick and "--n" not in (argv if argv is not None else sys.argv[1:]):
        args.n = 2_000
    return args


class Pool(Dataset):
    """Random (1, size, size) images; baal wants (input, target) pairs, common.active {"image"} dicts."""

    def __init__(self, n: int, size: int, seed: int, pairs: bool):
        self.x = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))
        self.pairs = pairs

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return (self.x[i], 0) if self.pairs else {"image": self.x[i]}


def model_for(args):
    from common.models.smallcnn import SmallCNN

    torch.manual_seed(args.seed)
    model = SmallCNN(1, 2, width=args.width, stages=args.stages, dropout=0.5).eval()
    with torch.no_grad():  # an untrained head barely moves under dropout (BALD ~1e-7 everywhere): scale it up so
        model.classifier.weight.mul_(HEAD_SCALE)  # the passes disagree as a trained model's do
    return model


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def child(args) -> None:
    """Score the pool with one method; write its BALD scores (.npy) and timing / memory (.json) to --out."""
    torch.set_num_threads(args.threads)
    model, pool = model_for(args), Pool(args.n, args.size, args.seed + 1, pairs=args.method == "baal")
    base = peak_mb()
    t0 = time.process_time()
    w0 = time.perf_counter()
    if args.method == "baal":
        from baal.active.heuristics import BALD
        from baal.bayesian.dropout import patch_module
        from baal.modelwrapper import ModelWrapper, TrainingArgs

        wrapper = ModelWrapper(patch_module(model), TrainingArgs(batch_size=args.batch_size, use_cuda=False,
                                                                  workers=0, replicate_in_memory=True))
        torch.manual_seed(args.seed)
        logits = wrapper.predict_on_dataset(pool, iterations=args.passes, verbose=False)  # (N, C, T)
        scores = BALD().get_uncertainties(logits)
    else:
        from common.active.pool import score_pool
        from common.active.scores import bald

        view = score_pool(model, pool, np.arange(args.n), args.n, {"mc"}, passes=args.passes,
                          batch_size=args.batch_size, seed=args.seed, progress=False)
        scores = bald(view.mc)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    np.save(args.out / f"scores_{args.method}.npy", np.asarray(scores, np.float64))
    save_json(args.out / f"{args.method}.json", {"cpu_s": cpu, "wall_s": wall, "peak_rise_mb": peak_mb() - base,
                                                  "peak_mb": peak_mb()})


def main(args):
    args.out.mkdir(parents=True, exist_ok=True)
    if args.method:
        return child(args)
    shown = [a for a in sys.argv[1:]] if __name__ == "__main__" else []
    flags = ["--n", str(args.n), "--size", str(args.size), "--passes", str(args.passes), "--batch-size",
             str(args.batch_size), "--width", str(args.width), "--stages", str(args.stages), "--threads",
             str(args.threads), "--seed", str(args.seed), "--out", str(args.out)]
    for method in METHODS:
        subprocess.run([sys.executable, __file__, *flags, "--method", method], check=True)
    runs = {m: json.loads((args.out / f"{m}.json").read_text()) for m in METHODS}
    ours, theirs = (np.load(args.out / f"scores_{m}.npy") for m in METHODS)
    diff = float(np.abs(ours - theirs).max())
    spread = float(theirs.std())
    rows = [{"method": m, "cpu_s": r["cpu_s"], "wall_s": r["wall_s"], "peak_memory_rise_mb": r["peak_rise_mb"],
             "time_ratio_to_baal": r["cpu_s"] / runs["baal"]["cpu_s"]} for m, r in runs.items()]
    ratio = rows[0]["time_ratio_to_baal"]
    table = markdown_table(rows, name="bald_speed")
    command = "python benchmarks/bald_speed.py " + " ".join(shown)
    verdict = (f"Largest |BALD difference| {diff:.2e} nats, against a spread (std) of the scores of {spread:.2e}. "
               f"Time ratio (CPU) "
               f"{ratio:.3f} of baal's (goal <= 0.5: {'met' if ratio <= 0.5 else 'not met'}).")
    write_report(args.out, f"BALD, T = {args.passes}, on {args.n:,} images of {args.size} px (CPU, "
                           f"{args.threads} thread(s))", [
        f"Command: `{command.strip()}`. SmallCNN width {args.width}, {args.stages} stages, dropout 0.5 before the "
        f"head (its weights x{HEAD_SCALE:g}, so the passes disagree); batches of {args.batch_size} pool images for "
        f"both; each method in a fresh process.", table, verdict])
    save_json(args.out / "metrics.json", {"rows": rows, "max_abs_diff": diff, "score_std": spread,
                                          "time_ratio": ratio, "n": args.n, "passes": args.passes,
                                          "command": command.strip()})
    for m in METHODS:
        (args.out / f"scores_{m}.npy").unlink()
        (args.out / f"{m}.json").unlink()
    print(table + verdict)
    return {"time_ratio": ratio, "max_abs_diff": diff}


if __name__ == "__main__":
    main(get_args())
