"""Domain knowledge at small n: how much a clinician's prior buys a segmenter trained on a few labelled cases.

The survey (Zhang et al. 2019, "A Survey on Deep Learning of Small Sample in Biomedical Image Analysis",
https://arxiv.org/abs/1908.00473) lists domain knowledge among the ways to need fewer labels. Priors here, each a
small function in ``common/priors/``, used as post-processing, a loss term, or a change of what the network sees:

- cardiac LV (ACDC-like phantom or ACDC): ``one-lv`` one connected component, filled, inside the myocardium ring;
  ``convex`` convex hull; ``size`` the area in a known range (Kervadec et al. 2019, https://arxiv.org/abs/1805.04628);
  ``compact`` compactness P^2 / (4 pi A) (Kervadec et al. 2021, https://arxiv.org/abs/2105.00859);
- fundus disc / cup (REFUGE-like phantom, camera A, or REFUGE): ``cup-in-disc``; ``polar``, the polar transform
  around the disc centre (Fu et al., M-Net, IEEE TMI 2018, https://arxiv.org/abs/1801.00926).

A small U-Net is trained on n labelled volumes / images for each n and seed (the labelled set is drawn by the seed)
through the sweep runner; the metric is Dice on separate validation volumes / images against n, beside the plain
network. (Windowing CT into several input channels is ``common.priors.windowing``; no phantom here has Hounsfield
units, so it is not part of this study.)

Usage: python 04_Miscellaneous/domain_knowledge.py --quick
       python 04_Miscellaneous/domain_knowledge.py --priors one-lv,size --ns 1,2,4,8 --seeds 3
"""

import argparse
import functools
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from common.cli import add_common_args, comma_list, float_range, int_at_least, make_parser, parse_args  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.metrics import dice  # noqa: E402
from common.priors.polar import to_polar  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import log, setup_run  # noqa: E402
from common.sweep import aggregate, compare, grid, learning_curve, mean_std, sweep  # noqa: E402
from common.tasks.priors_study import (  # noqa: E402
    LV,
    PRIORS,
    TASKS,
    StudyConfig,
    cardiac_data,
    fundus_data,
    run_prior,
    train_configs,
)
from common.viz import MASK_COLOURS, plt, save_figure, show_image  # noqa: E402

DATASETS = ("phantom", "acdc", "refuge")  # acdc: the cardiac task only; refuge: the fundus task only
FULL = {"size": 96, "epochs": 30, "pool": 40, "n_val": 10, "ns": (1, 2, 4, 8, 16, 32), "seeds": 3,
        "samples_per_epoch": 64, "width": 16, "lr": 3e-3, "batch_size": 8}
# Quick: ~3 CPU-s a run at 48 px, width 8; every run at once, one thread each.
QUICK = {"size": 48, "epochs": 10, "pool": 12, "n_val": 4, "ns": (2, 8), "seeds": 2, "samples_per_epoch": 48,
         "width": 8}
GOAL = 0.03  # the issue's goal: a prior's Dice gain at n <= 10, beyond the seeds' spread
GAIN_COLUMNS = ["task", "metric", "config", "n", "gain", "spread", "exceeds", "goal", "paired gain"]



def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"every n must be >= 1, got {text!r}")
    return values


int_list.__name__ = "comma list of integers"


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "domain_knowledge", datasets=DATASETS, epochs=FULL["epochs"], batch_size=FULL["batch_size"],
                    lr=FULL["lr"])
    p.add_argument("--priors", type=comma_list(tuple(PRIORS), "prior(s)"), default=None,
                   help="comma list of " + ", ".join(f"{k} ({v.task}, {v.kind})" for k, v in PRIORS.items())
                   + " (default: every prior of the dataset's tasks)")
    p.add_argument("--ns", type=int_list, default=FULL["ns"], help="labelled volumes (cardiac) / images (fundus)")
    p.add_argument("--seeds", type=int_at_least(1), default=FULL["seeds"], help="seeds per (config, n)")
    p.add_argument("--size", type=int_at_least(16), default=FULL["size"], help="image side the U-Net sees (mult. of 8)")
    p.add_argument("--pool", type=int_at_least(1), default=FULL["pool"],
                   help="training volumes / images n is drawn from; the rest of the pool is the unlabelled set "
                        "(real data: a cap, 0 = all)")
    p.add_argument("--n-val", type=int_at_least(1), default=FULL["n_val"], help="validation volumes / images")
    p.add_argument("--n-unlabelled", type=int_at_least(0), default=8,
                   help="unlabelled volumes / images the loss priors (size, compact) also see")
    p.add_argument("--samples-per-epoch", type=int_at_least(1), default=FULL["samples_per_epoch"],
                   help="training samples an epoch for every n (small n repeats its items)")
    p.add_argument("--width", type=int_at_least(1), default=FULL["width"], help="U-Net channels at the first level")
    p.add_argument("--size-weight", type=float_range(0), default=StudyConfig.size_weight, help="size prior's weight")
    p.add_argument("--compact-weight", type=float_range(0), default=StudyConfig.compact_weight,
                   help="compactness prior's weight")
    p.add_argument("--polar-radius", type=float_range(0, 1, low_open=True), default=StudyConfig.polar_radius,
                   help="polar transform out to this fraction of the image side around the detected disc centre")
    p.add_argument("--jobs", type=int_at_least(1), default=None,
                   help="runs at once in worker processes (default: with --quick two a CPU core, one thread each; "
                        "else 1)")
    p.add_argument("--threads", type=int_at_least(0), default=0, help="torch threads a run (0: cores / jobs)")
    args = parse_args(p, argv, quick=QUICK)
    tasks = {"phantom": TASKS, "acdc": ("cardiac",), "refuge": ("fundus",)}[args.dataset]
    if args.priors is None:
        args.priors = tuple(k for k, v in PRIORS.items() if v.task in tasks)
    wrong = [k for k in args.priors if PRIORS[k].task not in tasks]
    if wrong:
        p.error(f"argument --priors: {wrong[0]} is a {PRIORS[wrong[0]].task} prior, and --dataset {args.dataset} "
                f"holds only the {', '.join(tasks)} task")
    if args.jobs is None:
        args.jobs = 2 * (os.cpu_count() or 1) if args.quick else 1
    if args.quick and not args.threads:  # tiny models: one thread a run (several threads on busy cores only spin)
        args.threads = 1
    shown = argv if argv is not None else sys.argv[1:]
    args.command = "python 04_Miscellaneous/domain_knowledge.py " + " ".join(shlex.quote(a) for a in shown)
    return args


def study_config(args) -> StudyConfig:
    """The flags as the typed configuration the recipe takes (once, here)."""
    return StudyConfig(
        cardiac_data="acdc" if args.dataset == "acdc" else "phantom",
        fundus_data="refuge" if args.dataset == "refuge" else "phantom",
        data_root=None if args.data_root is None else str(args.data_root), size=args.size, pool=args.pool,
        n_unlabelled=args.n_unlabelled, n_val=args.n_val, data_seed=0, epochs=args.epochs,
        samples_per_epoch=args.samples_per_epoch, batch_size=args.batch_size, lr=args.lr, width=args.width,
        size_weight=args.size_weight, compact_weight=args.compact_weight, polar_radius=args.polar_radius,
        workers=args.workers)


# ------------------------------------------------------------------------------------------------ tables


def task_rows(results, task: str, priors, metric: str = "dice") -> list[dict]:
    """Rows (config, n, mean, std, n_seeds, values) of one task: each trained configuration, then the plain
    network with each post-processing prior."""
    mine = [r for r in results if r.run.params["task"] == task]
    rows = []
    for config in dict.fromkeys(r.run.config for r in mine):
        name = config.split("-", 1)[1]
        rows += [{**row, "config": name} for row in aggregate([r for r in mine if r.run.config == config],
                                                              f"{metric}.raw")]
    plain = [r for r in mine if r.run.params["train"] == "plain"]
    for prior in priors:
        if PRIORS[prior].task == task and PRIORS[prior].kind == "post":
            rows += [{**row, "config": f"plain + {prior}"} for row in aggregate(plain, f"{metric}.{prior}")]
    return rows


def gain_rows(rows: list[dict], task: str) -> list[dict]:
    """Each prior's gain over the plain network at each n: difference of means against the seeds' spread."""
    base = {r["n"]: r for r in rows if r["config"] == "plain"}
    out = []
    for r in rows:
        if r["config"] == "plain" or r["n"] not in base:
            continue
        c = compare(r, base[r["n"]])
        goal = None if c["exceeds"] is None else bool(c["gain"] >= GOAL and c["exceeds"] and r["n"] <= 10)
        paired = ""
        if r["config"].startswith("plain + "):  # post-processing of the same networks: the gain seed by seed
            by_seed = dict(zip(base[r["n"]]["seeds"], base[r["n"]]["values"], strict=True))
            diffs = np.array([v - by_seed[s] for s, v in zip(r["seeds"], r["values"], strict=True) if s in by_seed])
            paired = mean_std({"mean": float(diffs.mean()) if len(diffs) else None,
                               "std": float(diffs.std(ddof=1)) if len(diffs) > 1 else None})
        out.append({"task": task, "config": r["config"], "n": r["n"], "gain": c["gain"], "spread": c["spread"],
                    "exceeds": c["exceeds"], "goal": goal, "paired gain": paired})
    return out


# ------------------------------------------------------------------------------------------------ figures


def _load(out: Path, config: str, n: int, seed: int) -> dict | None:
    path = out / config / f"n{n}" / f"seed{seed}" / "masks.npz"
    return dict(np.load(path)) if path.exists() else None


def cardiac_figure(out: Path, cfg: StudyConfig, priors, n: int, seed: int, k: int = 3) -> Path | None:
    """Validation slices where a prior changes the plain network's LV the most: without / with each prior."""
    val = cardiac_data(cfg)["val"]
    plain = _load(out, "cardiac-plain", n, seed)
    if plain is None:
        return None
    panels = [("plain", plain["raw"])]
    panels += [(f"plain + {p}", plain[p]) for p in priors if PRIORS[p].task == "cardiac" and PRIORS[p].kind == "post"]
    for p in priors:
        if PRIORS[p].task == "cardiac" and PRIORS[p].kind == "loss" and _load(out, f"cardiac-{p}", n, seed):
            panels.append((f"{p} loss", _load(out, f"cardiac-{p}", n, seed)["raw"]))
    truth = val["target"] == LV
    score = np.array([[dice(m[i], truth[i]) for i in range(len(truth))] for _, m in panels])   # (P, N)
    change = np.abs(score[1:] - score[0]).max(0) if len(panels) > 1 else np.zeros(len(truth))
    pick = [i for i in np.argsort(-change)[:k] if truth[i].any() or panels[0][1][i].any()]
    fig, axes = plt.subplots(len(pick), len(panels) + 1, figsize=(2.3 * (len(panels) + 1), 2.4 * len(pick) + 0.7),
                             squeeze=False)
    for row, i in enumerate(pick):
        image = val["image"][i, 0]
        show_image(axes[row, 0], image, f"image, val slice {i}", masks=[truth[i]])
        for ax, (name, masks), s in zip(axes[row, 1:], panels, score[:, i], strict=True):
            show_image(ax, image, f"{name}\nDice {s:.2f}" if row == 0 else f"Dice {s:.2f}", masks=[truth[i], masks[i]])
    handles = [plt.Line2D([], [], color=MASK_COLOURS[0], linewidth=2, label="truth (LV cavity)"),
               plt.Line2D([], [], color=MASK_COLOURS[1], linewidth=2, label="prediction")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(f"Cardiac LV: the slices a prior changes most (n = {n} labelled volumes, seed {seed})")
    return save_figure(fig, out / "cardiac_failures.png")


def _head(text: str, first: bool) -> str:
    return text + "\n" if first else ""


def fundus_figure(out: Path, cfg: StudyConfig, priors, n: int, seed: int, k: int = 3) -> Path | None:
    """Validation images where a prior changes the cup the most, and the polar view the polar U-Net sees."""
    val = fundus_data(cfg)["val"]
    plain = _load(out, "fundus-plain", n, seed)
    if plain is None:
        return None
    panels = [("plain", plain["raw"])]
    if "cup-in-disc" in priors:
        panels.append(("plain + cup-in-disc", plain["cup-in-disc"]))
    polar = _load(out, "fundus-polar", n, seed) if "polar" in priors else None
    if polar is not None:
        panels += [("polar", polar["raw"])] + ([("polar + cup-in-disc", polar["cup-in-disc"])]
                                               if "cup-in-disc" in polar else [])
    truth = val["target"] > 0.5                                                    # (N, 2, S, S)
    score = np.array([[dice(m[i, 1], truth[i, 1]) for i in range(len(truth))] for _, m in panels])
    change = np.abs(score[1:] - score[0]).max(0) if len(panels) > 1 else np.zeros(len(truth))
    pick = list(np.argsort(-change)[:k])
    radius, half = cfg.polar_radius * cfg.size, cfg.size // 2
    fig, axes = plt.subplots(len(pick), len(panels) + 2, figsize=(2.3 * (len(panels) + 2), 2.4 * len(pick) + 0.7),
                             squeeze=False)
    for row, i in enumerate(pick):
        image = val["image"][i].transpose(1, 2, 0)
        cx, cy = val["centre"][i]
        x0, y0 = int(np.clip(round(cx) - half // 2, 0, cfg.size - half)), int(np.clip(round(cy) - half // 2, 0,
                                                                                        cfg.size - half))
        zoom = (slice(y0, y0 + half), slice(x0, x0 + half))                       # the disc's neighbourhood
        head = functools.partial(_head, first=row == 0)
        show_image(axes[row, 0], image[zoom], head("image (zoom)") + f"val image {i}",
                   masks=[truth[i, 1][zoom], np.zeros((half, half), bool), truth[i, 0][zoom]])
        pol = to_polar(image, (cx, cy), radius, (cfg.size, cfg.size))
        pol_t = to_polar(truth[i].transpose(1, 2, 0), (cx, cy), radius, (cfg.size, cfg.size), "nearest")
        show_image(axes[row, 1], pol, head("polar view (rows: angle,\ncolumns: radius)"),
                   masks=[pol_t[..., 1], np.zeros(pol.shape[:2], bool), pol_t[..., 0]])
        for ax, (name, masks), s in zip(axes[row, 2:], panels, score[:, i], strict=True):
            show_image(ax, image[zoom], head(name) + f"cup Dice {s:.2f}",
                       masks=[truth[i, 1][zoom], masks[i, 1][zoom], masks[i, 0][zoom]])
    names = ("truth cup", "predicted cup", "disc (truth in the first two columns)")
    handles = [plt.Line2D([], [], color=c, linewidth=2, label=t) for c, t in zip(MASK_COLOURS, names, strict=False)]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False)
    fig.suptitle(f"Fundus cup: the images a prior changes most (n = {n} labelled images, seed {seed})")
    return save_figure(fig, out / "fundus_failures.png")


# ------------------------------------------------------------------------------------------------ main


def main(args):
    if args.size % 8:
        raise InputError(f"--size {args.size} is not a multiple of 8", hint="the U-Net halves the image 3 times")
    if args.dataset in ("acdc", "refuge") and args.data_root is None:
        raise InputError(f"--dataset {args.dataset} needs --data-root", hint="pass the folder in its published layout")
    if args.dataset == "phantom" and max(args.ns) > args.pool:
        raise InputError(f"n={max(args.ns)} exceeds the pool of {args.pool} training volumes / images",
                         hint="lower --ns or raise --pool")
    cfg = study_config(args)
    tasks = [t for t in TASKS if any(PRIORS[p].task == t for p in args.priors)]
    for task in tasks:  # bad data is found before anything is written
        (cardiac_data if task == "cardiac" else fundus_data)(cfg)
    ctx = setup_run(args)
    t0 = time.perf_counter()
    posts = {"cardiac": ("raw", "one-lv", "convex", "one-lv+convex"), "fundus": ("raw", "cup-in-disc")}
    configs = {k: {**v, "posts": posts[v["task"]]} for k, v in train_configs(args.priors).items()}
    runs = grid(configs, seeds=range(args.seed, args.seed + args.seeds), ns=args.ns, params={"cfg": cfg})
    results = sweep(runs, functools.partial(run_prior, str(ctx.device), args.resume), ctx.out, jobs=args.jobs,
                    threads=args.threads, resume=args.resume,
                    describe_metrics=lambda m: ", ".join(f"{k} {v:.3f}" for k, v in m["dice"].items()))
    seconds = time.perf_counter() - t0
    failed = [f"{r.out_dir}: {r.error}" for r in results if not r.ok]
    cols = ["config", "n", "mean", "std", "n_seeds"]
    sections = [f"Command: `{args.command}` ({seconds / 60:.1f} min, {args.jobs} run(s) at a time). U-Net "
                f"(width {cfg.width}) at {cfg.size} px, {cfg.epochs} epochs of {cfg.samples_per_epoch} samples for "
                f"every n; mean ± sample std over {args.seeds} seed(s) (a seed draws the labelled set and the "
                f"initialisation); {cfg.n_val} validation volumes / images."]
    summary, gains = {"seconds": round(seconds, 1), "command": args.command, "failed": failed}, []
    metrics = {"cardiac": [("cardiac", "dice", "LV 3D Dice")],
               "fundus": [("fundus", "dice", "cup Dice"), ("fundus_disc", "disc", "disc Dice")]}
    for task in tasks:
        for name, metric, label in metrics[task]:
            rows = task_rows(results, task, args.priors, metric)
            summary[name] = [{k: r[k] for k in (*cols, "values")} for r in rows]
            gains += [{**g, "metric": label} for g in gain_rows(rows, task)]
            curve = learning_curve(rows, ctx.out / f"{name}_curve.png", label,
                                   f"{task}: {label} vs labelled {'volumes' if task == 'cardiac' else 'images'}",
                                   baseline="plain")
            sections += [f"### {task}: {label}", markdown_table(rows, cols, name=name), f"![{name}]({curve.name})"]
    n0 = min(args.ns)
    figures = [f(ctx.out, cfg, args.priors, n0, args.seed) for task, f in
               (("cardiac", cardiac_figure), ("fundus", fundus_figure)) if task in tasks]
    met = [g for g in gains if g["goal"]]
    summary.update(gains=gains, goal_met=bool(met), goal=f"a prior's Dice gain >= {GOAL} beyond the seeds' spread "
                   "at n <= 10")
    verdict = ("Goal met by " + "; ".join(f"{g['task']} {g['config']} at n = {g['n']} ({g['metric']} "
                                          f"{g['gain']:+.3f}, spread {g['spread']:.3f})" for g in met) + "."
               if met else f"Goal (Dice gain >= {GOAL} beyond the seeds' spread at n <= 10) not met in this run.")
    sections += ["### Gains over the plain network (difference of means; spread = sqrt(std^2 + std_plain^2); "
                 "paired gain: a post-processing prior against the same networks without it, mean ± std over seeds)",
                 markdown_table(gains, GAIN_COLUMNS, name="gains"), verdict,
                 *[f"![failure cases]({f.name})" for f in figures if f]]
    write_report(ctx.out, f"Domain-knowledge priors at small n ({args.dataset})", sections)
    summary["config"] = asdict(cfg)
    save_json(ctx.out / "metrics.json", summary)
    log("\n".join(str(s) for s in sections[1:]) + f"\ntook {seconds:.0f} s; wrote {ctx.out}")
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: " + "; ".join(failed))
    return summary


if __name__ == "__main__":
    cli_main(main, get_args())
