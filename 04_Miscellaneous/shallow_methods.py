"""Traditional shallow methods against a CNN trained from scratch, across the number of labelled images n.

The survey (Zhang et al. 2019, "A Survey on Deep Learning of Small Sample in Biomedical Image Analysis",
https://arxiv.org/abs/1908.00473) lists hand-crafted features with a classical classifier as the baseline a deep model
must beat on few samples. Here: HOG (Dalal & Triggs 2005), uniform LBP histograms (Ojala et al. 2002), GLCM / Haralick
properties (Haralick et al. 1973), the intensity histogram and first-order radiomics statistics, read by an RBF SVM and
a random forest (hyper-parameters by cross-validation on the training images only), against SmallCNN trained from
scratch, normal vs abnormal on the bone phantom (MURA-like), for n from 10 up; AUROC on held-out images, mean ± sample
std over seeds; where the CNN's curve crosses the best shallow one is computed from the table. Beside them, classic
unsupervised segmentation (Otsu, marker watershed, Chan-Vese, morphological Chan-Vese) scored by Dice on the cardiac
phantom's LV and the fundus phantom's optic disc (camera A), with no training labels at all.

Usage: python 04_Miscellaneous/shallow_methods.py --quick
       python 04_Miscellaneous/shallow_methods.py --ns 10,20,50,100,200,500,1000,2000 --seeds 3 --jobs 4
"""

import argparse
import shlex
import sys
from dataclasses import asdict
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from common.classic.registry import SEGMENTERS  # noqa: E402
from common.cli import add_common_args, int_at_least, make_parser, parse_args  # noqa: E402
from common.errors import cli_main  # noqa: E402
from common.features.pipeline import ShallowParams  # noqa: E402
from common.io import save_json  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import log, setup_run  # noqa: E402
from common.sweep import aggregate, grid, mean_std, sweep, write_tables  # noqa: E402
from common.tasks.shallow_study import (  # noqa: E402
    FEATURE_SETS,
    METHODS,
    NAMES,
    CNNParams,
    SegConfig,
    StudyConfig,
    crossover,
    prepare_data,
    run_method,
    segmentation_study,
)
from common.viz import MASK_COLOURS, plt, save_figure, show_image  # noqa: E402

DATASETS = ("phantom", "mura")
FULL = {"ns": (10, 20, 50, 100, 200, 500, 1000, 2000), "seeds": 3, "pool": 2000, "n_test": 1000, "n_cardiac": 20,
        "n_fundus": 100}
QUICK = {"ns": (10, 30, 100, 300), "seeds": 1, "threads": 1, "pool": 300, "n_test": 300, "n_cardiac": 3, "n_fundus": 12}


def comma_list(kind, choices=None):
    """argparse ``type=`` for a comma list of ``kind`` values (out of ``choices`` if given)."""

    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma list of {kind.__name__}, got {text!r}") from None
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"unknown or no value(s) {bad or text!r}" +
                                             (f"; choose from {', '.join(map(str, choices))}" if choices else ""))
        return values

    parse.__name__ = "comma list"
    return parse


def get_args(argv=None):
    p = make_parser(__doc__)
    cnn = CNNParams()
    add_common_args(p, "shallow_methods", datasets=DATASETS, epochs=cnn.epochs, batch_size=cnn.batch_size, lr=cnn.lr)
    p.add_argument("--ns", type=comma_list(int), default=FULL["ns"],
                   help="labelled training images n, comma list (default 10..2000; quick 10,30,100,300)")
    p.add_argument("--seeds", type=int_at_least(1), default=FULL["seeds"], help="seeds per (method, n)")
    p.add_argument("--methods", type=comma_list(str, METHODS), default=METHODS, help="comma list of " +
                   ", ".join(METHODS))
    p.add_argument("--features", type=comma_list(str, FEATURE_SETS), default=FEATURE_SETS,
                   help="hand-crafted feature families, comma list of " + ", ".join(FEATURE_SETS))
    p.add_argument("--size", type=int_at_least(32), default=64, help="image side in pixels")
    p.add_argument("--pool", type=int_at_least(4), default=FULL["pool"],
                   help="training images each n is drawn from (>= the largest n)")
    p.add_argument("--n-test", type=int_at_least(2), default=FULL["n_test"],
                   help="held-out images every run is scored on")
    p.add_argument("--width", type=int_at_least(1), default=cnn.width, help="SmallCNN's first-stage channels")
    p.add_argument("--min-steps", type=int_at_least(1), default=cnn.min_steps,
                   help="SmallCNN: at least this many optimizer steps in all (the images repeat within an epoch)")
    p.add_argument("--folds", type=int_at_least(2), default=ShallowParams().folds,
                   help="cross-validation folds on the training images (fewer when a class has fewer images)")
    p.add_argument("--jobs", type=int_at_least(1), default=1, help="runs at once in worker processes")
    p.add_argument("--threads", type=int_at_least(0), default=0, help="torch CPU threads per run (0: cores / jobs)")
    p.add_argument("--seg-size", type=int_at_least(32), default=96, help="segmentation baselines: image side")
    p.add_argument("--n-cardiac", type=int_at_least(1), default=FULL["n_cardiac"], help="cardiac phantom volumes")
    p.add_argument("--n-fundus", type=int_at_least(1), default=FULL["n_fundus"], help="fundus phantom images")
    p.add_argument("--no-seg", action="store_true", help="skip the segmentation baselines")
    args = parse_args(p, argv, quick=QUICK)
    if max(args.ns) > args.pool:
        p.error(f"argument --ns: n = {max(args.ns)} exceeds --pool {args.pool}")
    if min(args.ns) < 4:
        p.error(f"argument --ns: n = {min(args.ns)} is too few (at least 2 images of each class: n >= 4)")
    if args.dataset != "phantom" and args.data_root is None:
        p.error(f"argument --data-root: --dataset {args.dataset} needs the dataset folder")
    args.ns = tuple(sorted(set(args.ns)))
    shown = argv if argv is not None else sys.argv[1:]
    args.command = "python 04_Miscellaneous/shallow_methods.py " + " ".join(shlex.quote(a) for a in shown)
    return args


def study_config(args) -> StudyConfig:
    """The flags as the typed configuration the recipe takes (once, here)."""
    return StudyConfig(dataset=args.dataset, data_root=None if args.data_root is None else str(args.data_root),
                       size=args.size, pool=args.pool, n_test=args.n_test, data_seed=args.seed,
                       features=tuple(args.features), shallow=ShallowParams(folds=args.folds),
                       cnn=CNNParams(width=args.width, min_steps=args.min_steps, epochs=args.epochs,
                                     batch_size=args.batch_size, lr=args.lr))


# ------------------------------------------------------------------------------------------------ figures


def crossover_figure(rows: list[dict], cross: dict, path: Path, title: str) -> Path:
    """AUROC against n (log axis), ± std bands, the crossing bracket shaded and the interpolated crossing marked."""
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for config in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == config and r["mean"] is not None]
        x, y = np.array([r["n"] for r in mine]), np.array([r["mean"] for r in mine])
        sd = np.array([np.nan if r["std"] is None else r["std"] for r in mine])
        seeds = max((r["n_seeds"] for r in mine), default=0)
        (line,) = ax.plot(x, y, "--" if config == "cnn" else "-", marker="o", label=f"{NAMES[config]}, {seeds} seed(s)")
        ax.fill_between(x, y - sd, y + sd, color=line.get_color(), alpha=0.2, linewidth=0)
    if cross["status"] == "crosses":
        ax.axvspan(cross["n_before"], cross["n_at"], color="grey", alpha=0.15,
                   label=f"CNN overtakes between n = {cross['n_before']} and {cross['n_at']}")
        ax.axvline(cross["n_cross"], color="grey", linestyle=":", label=f"interpolated crossing n ≈ "
                   f"{cross['n_cross']:.0f}")
    ax.axhline(0.5, color="black", linewidth=0.8, alpha=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images n (log scale)")
    ax.set_ylabel("test AUROC (mean ± sample std over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)


def segmentation_figure(examples: dict, path: Path) -> Path:
    """One row per structure: the image, then each method's mask (red) over the truth (green), its Dice."""
    from common.metrics.segmentation import dice

    methods = list(next(iter(examples.values()))[2])
    fig, axes = plt.subplots(len(examples), len(methods) + 1, figsize=(2.6 * (len(methods) + 1),
                                                                       2.7 * len(examples) + 0.5), squeeze=False)
    for row, (name, (image, truth, masks)) in zip(axes, examples.items(), strict=True):
        show_image(row[0], image, f"{name}\nimage", masks=[truth])
        for ax, m in zip(row[1:], methods, strict=True):
            show_image(ax, image, f"{m}: Dice {dice(masks[m], truth):.2f}", masks=[truth, masks[m]])
    handles = [plt.Line2D([], [], color=MASK_COLOURS[0], linewidth=2, label="truth"),
               plt.Line2D([], [], color=MASK_COLOURS[1], linewidth=2, label="unsupervised method")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
    fig.suptitle("Classic unsupervised segmentation, no training labels")
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------------ main


def crossover_text(cross: dict) -> str:
    """The README's sentence on where the CNN overtakes, from the computed crossover (never typed)."""
    status = cross["status"]
    if status == "crosses":
        return (f"The CNN from scratch overtakes the better shallow pipeline between n = {cross['n_before']} and "
                f"n = {cross['n_at']} (interpolated in log n: n ≈ {cross['n_cross']:.0f}) and stays ahead at every "
                f"larger n measured.")
    if status == "always ahead":
        return f"The CNN is ahead of both shallow pipelines at every n measured (from n = {cross['n_at']})."
    return f"The CNN does not stay ahead of the shallow pipelines within the measured n ({status})."


def main(args):
    cfg = study_config(args)
    ctx = setup_run(args)
    out = ctx.out
    with ctx.removing_out_on_error():
        data = prepare_data(cfg, out / "cache")
    configs = {m: {"method": m} for m in args.methods}
    runs = grid(configs, seeds=range(args.seed, args.seed + args.seeds), ns=args.ns,
                params={"data": str(data), "cfg": cfg})
    fn = partial(run_method, str(ctx.device), args.resume)
    results = sweep(runs, fn, out / "runs", jobs=args.jobs, threads=args.threads, resume=args.resume,
                    describe_metrics=lambda m: f"AUROC {m['auroc']:.3f}")
    rows = aggregate(results, "auroc")
    failed = [r for r in results if not r.ok]
    if failed:
        log(f"{len(failed)} run(s) failed; first: {failed[0].out_dir}: {failed[0].error}")
    write_tables(rows, out, "auroc", baseline="cnn" if "cnn" in args.methods else None)
    shallow = tuple(m for m in args.methods if m != "cnn")
    cross = crossover(rows, "cnn", shallow) if "cnn" in args.methods and shallow else {"status": "not measured"}
    title = f"Shallow pipelines vs a CNN from scratch, bone {args.dataset} at {args.size} px"
    fig = crossover_figure(rows, cross, out / "learning_curve.png", title)
    table = markdown_table([{"config": r["config"], "method": NAMES[r["config"]], "n": r["n"], "mean": r["mean"],
                             "std": float("nan") if r["std"] is None else r["std"], "n_seeds": r["n_seeds"],
                             "AUROC": mean_std(r)} for r in rows],
                           ["config", "method", "n", "AUROC", "mean", "std", "n_seeds"], name="auroc")
    sections = [f"Command: `{args.command}`", f"Test AUROC on {args.n_test} held-out images; {len(args.features)} "
                f"feature families ({', '.join(args.features)}).", table, crossover_text(cross) if "cnn" in
                args.methods and shallow else "", f"![learning curve]({fig.name})"]
    metrics = {"auroc": rows, "crossover": cross, "config": asdict(cfg)}
    if not args.no_seg:
        seg_cfg = SegConfig(size=args.seg_size, n_cardiac=args.n_cardiac, n_fundus=args.n_fundus, seed=args.seed,
                            methods=tuple(SEGMENTERS))
        seg_rows, examples = segmentation_study(seg_cfg)
        seg_fig = segmentation_figure(examples, out / "segmentation.png")
        seg_table = markdown_table([{**r, "Dice": mean_std(r), "std": float("nan") if r["std"] is None else r["std"]}
                                    for r in seg_rows],
                                   ["structure", "method", "Dice", "mean", "std", "n_images", "unit"],
                                   name="segmentation")
        sections += ["Classic unsupervised segmentation (no training labels), Dice:", seg_table,
                     f"![segmentation]({seg_fig.name})"]
        metrics["segmentation"] = seg_rows
    write_report(out, "Traditional shallow methods vs CNNs", sections)
    save_json(out / "metrics.json", metrics)
    print(table)
    print(crossover_text(cross) if "gaps" in cross else "")
    if not args.no_seg:
        print(seg_table)
    return metrics


if __name__ == "__main__":
    cli_main(main, get_args())
