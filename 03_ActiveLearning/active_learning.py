"""Pool-based active learning, measured by the labels it saves, and usable with a real annotator.

Start from a few random labels, then in rounds: train the network (from scratch, or warm from the last round),
score the unlabelled pool in batches, ask for the labels of the k images the strategy picks, repeat to a budget.
Strategies (common/active/strategies.py): random, least confidence, margin, entropy (Settles 2009), BALD with MC
dropout (Gal et al. 2017, https://arxiv.org/abs/1703.02910), BatchBALD (Kirsch et al. 2019,
https://arxiv.org/abs/1906.08158), PowerBALD, core-set (Sener & Savarese 2018, https://arxiv.org/abs/1708.00489),
BADGE (Ash et al. 2020, https://arxiv.org/abs/1906.03671), TypiClust (Hacohen et al. 2022,
https://arxiv.org/abs/2202.02794) and ProbCover (Yehuda et al. 2022, https://arxiv.org/abs/2205.11320). The
medical anchor: Suggestive Annotation (Yang et al., MICCAI 2017) matched full supervision with half the labels.

The comparison (default): every strategy over --seeds seeds on the bone phantom's normal / abnormal task (or
--dataset folder|csv --data-root DIR), beside the same network trained on the whole pool; the learning curves,
and the labels each strategy needs to reach --target-fraction of the full-pool model's AUROC. Every run goes
through common.sweep (--jobs, --resume) and saves its rounds, so a killed run resumes at its round.

Annotator mode (--oracle folder): one strategy; each run writes the round's queried images to
<out>/round_K/query/ with labels.csv to fill in, and stops; rerun the same command once it is filled.

Usage: python 03_ActiveLearning/active_learning.py --quick
       python 03_ActiveLearning/active_learning.py --oracle folder --dataset images --data-root my_images/ \\
           --classes normal,abnormal --strategy badge --out runs/my_labels
"""

import functools
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.active.learner import TrainConfig  # noqa: E402
from common.active.loop import ActiveConfig, FolderOracle, check_config, run_active  # noqa: E402
from common.active.strategies import STRATEGIES  # noqa: E402
from common.cli import add_common_args, comma_list, float_range, int_at_least, make_parser, parse_args  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import log, setup_run  # noqa: E402
from common.sweep import grid, learning_curve, sweep  # noqa: E402
from common.tasks import bone_active as task  # noqa: E402

FULL_POOL = "full_pool"



def get_args(argv=None):
    full = task.FULL
    p = make_parser(__doc__)
    add_common_args(p, "active_learning", datasets=task.DATASETS, epochs=full["epochs"], batch_size=32, lr=3e-3)
    p.add_argument("--strategies", type=comma_list(tuple(STRATEGIES)), default=tuple(STRATEGIES),
                   help="strategies to compare, comma list of " + ", ".join(STRATEGIES) + " (default: all; --quick: "
                        + task.QUICK["strategies"] + ")")
    p.add_argument("--strategy", default="badge", choices=tuple(STRATEGIES), help="--oracle folder: the strategy")
    p.add_argument("--oracle", default="truth", choices=("truth", "folder"),
                   help="truth: the pool's own labels (simulation); folder: a person fills a CSV each round")
    p.add_argument("--classes", default=None, help="--dataset images: the class names, comma list (e.g. normal,"
                   "abnormal)")
    p.add_argument("--initial", type=int_at_least(1), default=full["initial"], help="initial random labelled set")
    p.add_argument("--query", type=int_at_least(1), default=full["query"], help="k: labels asked for per round")
    p.add_argument("--budget", type=int_at_least(1), default=full["budget"], help="labels in all, initial set included")
    p.add_argument("--warm-start", action="store_true", help="train each round from the last round's weights")
    p.add_argument("--passes", type=int_at_least(2), default=20, help="MC-dropout passes T for the Bayesian strategies")
    p.add_argument("--size", type=int_at_least(16), default=full["size"], help="image side in pixels")
    p.add_argument("--n-pool", type=int_at_least(2), default=full["n_pool"], help="phantom: pool images")
    p.add_argument("--n-test", type=int_at_least(0), default=full["n_test"],
                   help="test images (phantom: rendered; folder / csv: held out of the collection)")
    p.add_argument("--width", type=int_at_least(1), default=8, help="SmallCNN: channels of its first stage")
    p.add_argument("--stages", type=int_at_least(1), default=3, help="SmallCNN: stages")
    p.add_argument("--dropout", type=float_range(0, 1, high_open=True), default=0.3,
                   help="SmallCNN: dropout before the head (the MC-dropout passes resample it)")
    p.add_argument("--min-samples", type=int_at_least(1), default=full["min_samples"],
                   help="images an epoch: the labelled set is repeated up to this many")
    p.add_argument("--target-fraction", type=float_range(0, 1, low_open=True), default=0.95,
                   help="labels-to-target: this fraction of the full-pool model's AUROC")
    p.add_argument("--seeds", type=int_at_least(1), default=full["seeds"], help="seeds per strategy")
    p.add_argument("--jobs", type=int_at_least(1), default=None,
                   help="runs at once in worker processes (default: one a CPU core, at most 2, with --quick; else 1)")
    p.add_argument("--threads", type=int_at_least(0), default=0,
                   help="torch CPU threads per run (0: cores / jobs)")
    quick = {k: v for k, v in task.QUICK.items() if k != "strategies"}
    quick["strategies"] = comma_list(tuple(STRATEGIES))(task.QUICK["strategies"])
    args = parse_args(p, argv, quick=quick)
    if args.jobs is None:
        args.jobs = min(2, os.cpu_count() or 1) if args.quick else 1
    shown = argv if argv is not None else sys.argv[1:]
    args.command = "python 03_ActiveLearning/active_learning.py " + " ".join(shlex.quote(a) for a in shown)
    return args


def configs(args):
    """The flags as the typed configurations the library takes (once, here)."""
    pool = task.PoolConfig(dataset=args.dataset, data_root=None if args.data_root is None else str(args.data_root),
                           size=args.size, n_pool=args.n_pool, n_test=args.n_test, data_seed=args.seed)
    model = task.ModelConfig(width=args.width, stages=args.stages, dropout=args.dropout)
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, min_samples=args.min_samples,
                        workers=args.workers)
    active = ActiveConfig(strategy=args.strategy, initial=args.initial, query=args.query, budget=args.budget,
                          warm_start=args.warm_start, passes=args.passes, seed=args.seed)
    return pool, model, train, active


# ------------------------------------------------------------------------------------------------ annotator mode


def annotate(args, pool_cfg, model_cfg, train_cfg, active, ctx) -> dict:
    """One strategy with a person as the oracle: each run continues the loop until it needs new labels."""
    classes = tuple(c.strip() for c in args.classes.split(",")) if args.classes else None
    data = task.load_pool(pool_cfg, ctx.out / "cache", classes)
    check_config(active, len(data.pool))
    if active.strategy in {n for n, s in STRATEGIES.items() if s.bayesian} and model_cfg.dropout == 0:
        raise InputError(f"--strategy {active.strategy} needs MC dropout", hint="pass --dropout > 0")

    def image(i: int) -> np.ndarray:
        return data.pool[i]["image"].numpy()[0]

    files = getattr(data.pool, "files", None)
    oracle = FolderOracle(data.classes, image, None if files is None else (lambda i: str(files[i])))
    learner = task.learner_for(data, model_cfg, train_cfg, ctx.device)
    result = run_active(active, data.pool, learner, oracle, ctx.out, ctx.device, resume=True,
                        settings=task.settings({"pool": pool_cfg, "model": model_cfg, "train": train_cfg}))
    summary = {"status": result["status"], "n_labels": len(result["labelled"]), "rounds": result["rounds"],
               "classes": list(data.classes)}
    if result["status"] == "waiting":
        summary["message"] = oracle.message(ctx.out, result["pending_round"], result["n_pending"])
        log(summary["message"])
    else:
        log(f"done: {len(result['labelled'])} labels, budget {active.budget} reached; state in "
            f"{ctx.out / 'state.json'}")
    save_json(ctx.out / "metrics.json", summary)
    return summary


# ------------------------------------------------------------------------------------------------ comparison


def run_any(device: str, resume: bool, run, out: Path) -> dict:
    """The sweep's run function: the full-pool reference, or one strategy's active-learning run."""
    if run.config == FULL_POOL:
        return task.run_full_pool(device, resume, run, out)
    return task.run_strategy(device, resume, run, out)


def curve_rows(results, strategies) -> list[dict]:
    """Per (strategy, labels): mean and sample std of the test AUROC over seeds (common.sweep's row keys)."""
    rows = []
    for s in strategies:
        done = [r.metrics for r in results if r.ok and r.run.config == s]
        if not done:
            continue
        grid_n = done[0]["n_labels"]
        for j, n in enumerate(grid_n):
            values = np.array([m["auroc"][j] for m in done if len(m["auroc"]) > j])
            rows.append({"config": s, "n": int(n), "mean": float(values.mean()),
                         "std": float(values.std(ddof=1)) if len(values) > 1 else None, "n_seeds": len(values),
                         "values": values.tolist()})
    return rows


def labels_to_reach(ns, means, target: float) -> float | None:
    """The labels at which the mean curve first reaches ``target``, linear between rounds; None if it never does."""
    for j, (n, m) in enumerate(zip(ns, means, strict=True)):
        if m >= target:
            if j == 0:
                return float(n)
            n0, m0 = ns[j - 1], means[j - 1]
            return float(n0 + (target - m0) / (m - m0) * (n - n0))
    return None


def target_rows(rows, strategies, target: float) -> list[dict]:
    """Labels to the target and the ratio to random's, per strategy. Not reached: "> budget"; when random does not
    reach it, a strategy that does gets the bound "< its labels / budget"."""
    table = []
    for s in strategies:
        mine = [r for r in rows if r["config"] == s]
        if not mine:
            continue
        need = labels_to_reach([r["n"] for r in mine], [r["mean"] for r in mine], target)
        table.append({"strategy": s, "need": need, "n_seeds": mine[0]["n_seeds"], "budget": mine[-1]["n"]})
    base = next((t for t in table if t["strategy"] == "random"), None)
    for t in table:
        t["labels_to_target"] = f"> {t['budget']}" if t["need"] is None else round(t["need"], 1)
        if base is None or t["need"] is None:
            t["ratio_to_random"] = "n/a"
        elif base["need"] is None:
            t["ratio_to_random"] = "n/a" if t is base else f"< {t['need'] / base['budget']:.3f}"
        else:
            t["ratio_to_random"] = round(t["need"] / base["need"], 3)
    return table


def diagnosis_rows(results, strategies) -> list[dict]:
    """What each strategy asked for and where it started and ended: a measurement when no strategy saves labels."""
    out = []
    for s in strategies:
        done = [r.metrics for r in results if r.ok and r.run.config == s]
        if not done:
            continue
        share = [v for m in done for v in m["abnormal_picked"] if v is not None]
        out.append({"strategy": s, "auroc_first_round": float(np.mean([m["auroc"][0] for m in done])),
                    "auroc_last_round": float(np.mean([m["auroc"][-1] for m in done])),
                    "abnormal_share_of_queries": float(np.mean(share)) if share else float("nan")})
    return out


def picks_figure(args, data, strategies, path: Path) -> Path | None:
    """The first queries of each strategy (seed --seed): the images it asked labels for, rounds 1 and 2."""
    import json

    images, titles, labels = [], [], []
    per_row = 2 * min(args.query, 5)
    for s in strategies:
        state = args.out / "runs" / s / f"seed{args.seed}" / "state.json"
        if not state.exists():
            continue
        rounds = json.loads(state.read_text())["rounds"]
        picks = [(r["round"] + 1, i) for r in rounds[:2] for i in r["picked"][: per_row // 2]]
        if not picks:
            continue
        picks = (picks + [picks[-1]] * per_row)[:per_row]
        labels.append(s)
        for rnd, i in picks:
            images.append(data.pool[i]["image"].numpy()[0])
            titles.append(f"round {rnd}\n{data.classes[int(data.labels[i])]}")
    if not images:
        return None
    from common.viz import image_grid

    return image_grid(images, path, titles, ncols=per_row, row_labels=labels, cell=1.9,
                      suptitle=f"The first images each strategy asked labels for (seed {args.seed}; true class)")


def compare(args, pool_cfg, model_cfg, train_cfg, active, ctx) -> dict:
    t0 = time.perf_counter()
    data = task.load_pool(pool_cfg, ctx.out / "cache")
    check_config(active, len(data.pool))
    if len(np.unique(data.test_labels)) < 2:
        raise InputError("the test set holds one class only, so AUROC is undefined", hint="raise --n-test")
    strategies = tuple(args.strategies)
    seeds = range(args.seed, args.seed + args.seeds)
    params = {"pool": pool_cfg, "model": model_cfg, "train": train_cfg, "active": active,
              "cache": str(ctx.out / "cache")}
    runs = grid({FULL_POOL: {}, **{s: {} for s in strategies}}, seeds=seeds, params=params)
    results = sweep(runs, functools.partial(run_any, str(ctx.device), args.resume), ctx.out / "runs",
                    jobs=args.jobs, threads=args.threads, resume=args.resume,
                    describe_metrics=lambda m: (f"AUROC {m['auroc']:.3f}" if isinstance(m["auroc"], float) else
                                                f"AUROC {m['auroc'][0]:.3f} -> {m['auroc'][-1]:.3f}"))
    failed = [f"{r.out_dir} ({r.error})" for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: " + "; ".join(failed))
    full = np.array([r.metrics["auroc"] for r in results if r.run.config == FULL_POOL])
    full_mean = float(full.mean())
    target = args.target_fraction * full_mean
    rows = curve_rows(results, strategies)
    table = target_rows(rows, strategies, target)
    diag = diagnosis_rows(results, strategies)
    spread = f"mean ± sample std over {args.seeds} seeds" if args.seeds > 1 else "one seed (no spread)"
    curve = learning_curve(rows, ctx.out / "learning_curves.png", "test AUROC",
                           f"Active learning on the {args.dataset} pool ({len(data.pool)} images, k = {args.query})",
                           baseline="random", xlabel="labelled images")
    figure = picks_figure(args, data, strategies, ctx.out / "picked_images.png")
    best = min((t for t in table if t["strategy"] != "random" and isinstance(t["ratio_to_random"], float)),
               key=lambda t: t["ratio_to_random"], default=None)
    goal = best is not None and best["ratio_to_random"] <= 0.75
    seconds = time.perf_counter() - t0
    md_target = markdown_table(table, ["strategy", "labels_to_target", "ratio_to_random", "n_seeds"],
                               name="labels_to_target")
    md_curve = markdown_table([{"strategy": r["config"], "labels": r["n"], "AUROC": r["mean"],
                                "std": "n/a" if r["std"] is None else r["std"], "n_seeds": r["n_seeds"]}
                               for r in rows], name="curves")
    md_diag = markdown_table(diag, name="diagnosis")
    if best is not None:
        verdict = (f"best: {best['strategy']} at {best['ratio_to_random']:.2f}x random's labels (goal <= 0.75x: "
                   f"{'met' if goal else 'not met'})")
    elif all(t["need"] is None for t in table):
        verdict = "no strategy reached the target within the budget"
    else:
        verdict = "random did not reach the target within the budget, so the ratios are upper bounds"
    write_report(ctx.out, f"Active learning: labels to reach {args.target_fraction:.0%} of the full-pool AUROC", [
        f"Command: `{args.command}` ({seconds / 60:.1f} min). Pool: {len(data.pool)} {args.dataset} images at "
        f"{args.size} px, test {len(data.test)}; SmallCNN width {args.width}, {args.stages} stages, dropout "
        f"{args.dropout}; {args.epochs} epochs a round over >= {args.min_samples} images, "
        f"{'warm start' if args.warm_start else 'from scratch'}; initial {args.initial} random labels, k = "
        f"{args.query}, budget {args.budget}; {spread}. Full-pool AUROC {full_mean:.3f} (target "
        f"{target:.3f}).", md_target, verdict + ".", md_curve,
        "Diagnosis: test AUROC after the initial set and at the budget, and the abnormal share of the queries.",
        md_diag, f"![learning curves]({curve.name})", *([f"![picked images]({figure.name})"] if figure else [])])
    metrics = {"full_pool_auroc": full_mean, "full_pool_values": full.tolist(), "target": target,
               "labels_to_target": table, "curves": rows, "diagnosis": diag, "goal_met": goal,
               "seconds": round(seconds, 1), "command": args.command, "quick": args.quick}
    save_json(ctx.out / "metrics.json", metrics)
    log(md_target + verdict + f"\nfull-pool AUROC {full_mean:.3f}, target {target:.3f}; {seconds:.0f} s; wrote "
        f"{ctx.out}")
    return metrics


def main(args):
    pool_cfg, model_cfg, train_cfg, active = configs(args)
    if args.dataset != "phantom" and args.data_root is None:
        raise InputError(f"--dataset {args.dataset} needs --data-root", hint="pass the folder (or CSV) of images")
    if args.dataset == "images" and args.oracle != "folder":
        raise InputError("--dataset images has no labels to simulate an annotator with",
                         hint="use --oracle folder (you label), or a labelled --dataset folder / csv")
    if args.dataset == "phantom":  # the pool's size is known before anything is rendered or written
        check_config(active, args.n_pool)
    bayes = [s for s in (args.strategies if args.oracle == "truth" else (args.strategy,)) if STRATEGIES[s].bayesian]
    if bayes and args.dropout == 0:
        raise InputError(f"{bayes[0]} needs MC dropout", hint="pass --dropout > 0")
    ctx = setup_run(args)
    threads = torch.get_num_threads()
    try:
        with ctx.removing_out_on_error():
            if args.oracle == "folder":
                return annotate(args, pool_cfg, model_cfg, train_cfg, active, ctx)
            return compare(args, pool_cfg, model_cfg, train_cfg, replace(active, strategy="random"), ctx)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    cli_main(main, get_args())
