"""Attention mechanisms at small n: squeeze-and-excitation and CBAM in a classifier, attention gates in a U-Net.

Channel attention (squeeze-and-excitation, Hu et al. 2018, https://arxiv.org/abs/1709.01507), channel + spatial
attention (CBAM, Woo et al. 2018, https://arxiv.org/abs/1807.06521) after each stage of a small CNN that tells normal
from abnormal bone radiographs (the bone phantom, or MURA), and additive attention gates on the skips of a U-Net
(Attention U-Net, Oktay et al. 2018, https://arxiv.org/abs/1804.03999) that segments the left ventricle (the cardiac
phantom, or ACDC): with and without, across the number of labelled samples n, mean ± sample std over seeds. The
attention maps -- CBAM's spatial maps, the gates' coefficients -- are drawn over the test images and scored by the
pointing game against the lesion / LV masks, beside CAM and Grad-CAM (Zhou et al. 2016, Selvaraju et al. 2017) of
the same classifiers and a map that is brightest at the image centre (both targets lie near it).

Usage: python 04_Miscellaneous/attention.py --quick
       python 04_Miscellaneous/attention.py --study segmenter --dataset acdc --data-root /data/ACDC
"""

import os
import shlex
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.cli import add_common_args, float_range, int_at_least, make_parser, parse_args  # noqa: E402
from common.data.phantoms.bone import LESION_TYPES  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import log, setup_run  # noqa: E402
from common.sweep import aggregate, compare, grid, learning_curve, mean_std, sweep  # noqa: E402
from common.tasks.attention_study import (  # noqa: E402
    CLASSIFIER_CONFIGS,
    FULL,
    QUICK,
    SEGMENTER_CONFIGS,
    ClassifierStudy,
    SegmenterStudy,
    cam_keys,
    run_classifier,
    run_segmenter,
)
from common.viz import MASK_COLOURS, image_grid  # noqa: E402

DATASETS = ("phantom", "mura", "acdc")
STUDIES = {"both": ("classifier", "segmenter"), "classifier": ("classifier",), "segmenter": ("segmenter",)}
REAL = {"mura": "classifier", "acdc": "segmenter"}
MAP_LABEL = "map value: CAM / Grad-CAM min-max scaled to [0, 1]; attention maps as they are (sigmoid, 0..1)"


def int_list(text: str) -> tuple[int, ...]:
    """argparse ``type=`` for a comma list of positive integers, e.g. ``50,200,1000``."""
    import argparse

    try:
        values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


int_list.__name__ = "comma list of integers"


def lesion_list(text: str) -> tuple[str, ...]:
    import argparse

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in LESION_TYPES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown lesion type(s) {bad or text!r}; choose from "
                                         f"{', '.join(LESION_TYPES)}")
    return names


lesion_list.__name__ = "comma list of lesion types"


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "attention", datasets=DATASETS, train=False)
    p.add_argument("--study", default="both", choices=STUDIES,
                   help="the classifier (none / SE / CBAM), the segmenter (U-Net with / without gates), or both")
    p.add_argument("--ns", type=int_list, default=FULL["ns"], help="classifier: labelled training images n")
    p.add_argument("--volumes", type=int_list, default=FULL["volumes"],
                   help="segmenter: labelled training volumes n (all their slices)")
    p.add_argument("--seeds", type=int_at_least(1), default=FULL["seeds"],
                   help="seeds per (configuration, n); a seed draws the training set and the initialisation")
    p.add_argument("--steps", type=int_at_least(1), default=FULL["steps"],
                   help="classifier optimiser steps per run, whatever n (epochs = steps / batches per epoch)")
    p.add_argument("--seg-steps", type=int_at_least(1), default=FULL["seg_steps"], help="segmenter optimiser steps")
    p.add_argument("--batch-size", type=int_at_least(1), default=FULL["batch_size"], help="classifier batch size")
    p.add_argument("--seg-batch-size", type=int_at_least(1), default=FULL["seg_batch_size"],
                   help="segmenter batch size (slices)")
    p.add_argument("--lr", type=float_range(0, low_open=True), default=FULL["lr"], help="Adam learning rate, both")
    p.add_argument("--size", type=int_at_least(32), default=FULL["size"], help="classifier image side (pixels)")
    p.add_argument("--seg-size", type=int_at_least(32), default=FULL["seg_size"],
                   help="segmenter image side (pixels, a multiple of 8)")
    p.add_argument("--crop", type=float_range(0, 1, low_open=True), default=SegmenterStudy.crop,
                   help="segmenter: central fraction of the field of view kept (a heart region of interest)")
    p.add_argument("--width", type=int_at_least(1), default=FULL["width"], help="channels of the first stage, both")
    p.add_argument("--reduction", type=int_at_least(1), default=ClassifierStudy.reduction,
                   help="SE / CBAM channel reduction ratio (Hu et al.: 16 for 64+ channels)")
    p.add_argument("--lesion-types", type=lesion_list, default=FULL["lesion_types"],
                   help="bone phantom lesions, comma list of " + ", ".join(LESION_TYPES))
    p.add_argument("--n-test", type=int_at_least(1), default=FULL["n_test"], help="classifier test images")
    p.add_argument("--test-volumes", type=int_at_least(1), default=FULL["test_volumes"], help="segmenter test volumes")
    p.add_argument("--label", type=int, default=3, help="segmenter: class to segment (3 = LV cavity)")
    p.add_argument("--jobs", type=int_at_least(1), default=None,
                   help="runs at once in worker processes (default: with --quick one a CPU core, else 1)")
    p.add_argument("--threads", type=int_at_least(0), default=0,
                   help="torch CPU threads per run (0: torch's default, or cores / jobs with --jobs > 1)")
    p.add_argument("--resume", action="store_true", help="reuse finished runs and continue unfinished ones")
    args = parse_args(p, argv, quick=QUICK)
    if args.dataset in REAL:
        if args.study not in ("both", REAL[args.dataset]):
            p.error(f"argument --dataset: {args.dataset} is a {REAL[args.dataset]} dataset, not for --study "
                    f"{args.study}")
        args.study = REAL[args.dataset]
    if args.seg_size % 8:
        p.error(f"argument --seg-size: must be a multiple of 8 (the U-Net halves it three times), got {args.seg_size}")
    if args.jobs is None:
        args.jobs = (os.cpu_count() or 1) if args.quick else 1
    shown = argv if argv is not None else sys.argv[1:]
    args.command = "python 04_Miscellaneous/attention.py " + " ".join(shlex.quote(a) for a in shown)
    return args


def studies(args) -> tuple[ClassifierStudy, SegmenterStudy]:
    """The flags as the typed configurations the recipe takes (once, here)."""
    root = None if args.data_root is None else str(args.data_root)
    cls = ClassifierStudy(dataset=args.dataset if args.dataset != "acdc" else "phantom", data_root=root,
                          size=args.size, lesion_types=tuple(args.lesion_types), width=args.width,
                          reduction=args.reduction, n_test=args.n_test, steps=args.steps, batch_size=args.batch_size,
                          lr=args.lr)
    seg = SegmenterStudy(dataset=args.dataset if args.dataset != "mura" else "phantom", data_root=root,
                         size=args.seg_size, crop=args.crop, label=args.label, width=args.width,
                         n_test=args.test_volumes, steps=args.seg_steps, batch_size=args.seg_batch_size, lr=args.lr)
    return cls, seg


# ------------------------------------------------------------------------------------------------ tables


def curve_rows(results, metric: str, baseline: str) -> list[dict]:
    """Rows config, n, mean, std, n_seeds (and the gain over the baseline at the same n against the seeds' spread)."""
    rows = aggregate(results, metric)
    base = {r["n"]: r for r in rows if r["config"] == baseline}
    for r in rows:
        c = compare(r, base[r["n"]]) if r["config"] != baseline and r["n"] in base else None
        r["mean ± std"] = mean_std(r)
        r[f"vs {baseline}"] = "" if c is None or c["gain"] is None else (
            f"{c['gain']:+.3f} (one seed: spread unknown)" if c["exceeds"] is None else
            f"{c['gain']:+.3f} ({'exceeds' if c['exceeds'] else 'within'} the spread {c['spread']:.3f})")
        r["verdict"] = None if c is None else c["exceeds"] and c["gain"] > 0
    return rows


def pointing_rows(results, n: int) -> list[dict]:
    """Pointing game of each (configuration, map) at n: mean ± std over seeds."""
    rows = []
    mine = [r for r in results if r.run.n == n]
    for config in dict.fromkeys(r.run.config for r in mine):
        done = [r for r in mine if r.run.config == config and r.ok and "pointing" in r.metrics]
        for name in (done[0].metrics["pointing"] if done else {}):
            if name == "centre" and any(r["map"] == "centre" for r in rows):
                continue  # the same fixed map for every configuration: one row
            row = aggregate(done, f"pointing.{name}")[0]
            rows.append({"config": "(prior)" if name == "centre" else config, "map": name, "n": n,
                         "mean": row["mean"], "std": row["std"], "n_seeds": row["n_seeds"],
                         "mean ± std": mean_std(row)})
    centre = [r for r in rows if r["map"] == "centre"]
    return [r for r in rows if r["map"] != "centre"] + centre


def verdict(rows: list[dict], baseline: str, what: str) -> str:
    """One sentence per configuration: at which n its gain over the baseline exceeds the seeds' spread."""
    lines = []
    for config in dict.fromkeys(r["config"] for r in rows if r["config"] != baseline):
        mine = [r for r in rows if r["config"] == config]
        unknown = [r["n"] for r in mine if r["std"] is None]
        ahead = [r["n"] for r in mine if r["verdict"]]
        behind = [r["n"] for r in mine if r[f"vs {baseline}"] and "exceeds" in r[f"vs {baseline}"]
                  and not r["verdict"]]
        def ns(values):
            return ", ".join(map(str, values)) or "none"

        text = (f"{config}: {what} above {baseline} beyond the seeds' spread at n = {ns(ahead)}; below it beyond "
                f"the spread at n = {ns(behind)}; within the spread elsewhere")
        lines.append(text + (f" (one seed, spread unknown, at n = {ns(unknown)})." if unknown else "."))
    return " ".join(lines)


# ------------------------------------------------------------------------------------------------ figures


def map_figure(out: Path, folders: dict[str, Path], maps: list[tuple[str, str]], title: str,
               target: str) -> Path | None:
    """Rows: test images; columns: image + target outline, then each (config, map) over the image."""
    data = {c: np.load(f / "figure.npz") for c, f in folders.items() if (f / "figure.npz").exists()}
    cols = [(c, m) for c, m in maps if c in data and f"map_{m}" in data[c]]
    if not cols:
        return None
    first = data[cols[0][0]]
    images, heatmaps, masks, titles = [], [], [], []
    for row in range(len(first["image"])):
        image, truth = first["image"][row], first["mask"][row]
        images.append(image)
        heatmaps.append(None)
        masks.append([truth])
        titles.append("image" if row == 0 else "")
        for config, name in cols:
            images.append(image)
            heatmaps.append(data[config][f"map_{name}"][row])
            masks.append([truth])
            titles.append(f"{config}: {name}" if row == 0 else "")
    return image_grid(images, out, titles=titles, ncols=len(cols) + 1, heatmaps=heatmaps, masks=masks,
                      suptitle=title, shared_colorbar=MAP_LABEL, legend=[(target, MASK_COLOURS[0])])


# ------------------------------------------------------------------------------------------------ the studies


def run_study(kind: str, args, study, device, out: Path) -> dict:
    """Sweep one study's grid, write its tables and figures; returns its summary and markdown sections."""
    if kind == "classifier":
        configs = {c: {"attention": c} for c in CLASSIFIER_CONFIGS}
        fn, ns, metric, ylabel, baseline = run_classifier, args.ns, "auroc", "test AUROC", "none"
    else:
        configs = {c: {"model": c} for c in SEGMENTER_CONFIGS}
        fn, ns, metric, ylabel, baseline = run_segmenter, args.volumes, "dice3d", "test 3D Dice (LV)", "unet"
    runs = grid(configs, seeds=range(args.seed, args.seed + args.seeds), ns=ns, params={"study": study})
    results = sweep(runs, partial(fn, str(device), args.resume), out / kind, jobs=args.jobs, threads=args.threads,
                    resume=args.resume)
    rows = curve_rows(results, metric, baseline)
    what = "AUROC" if kind == "classifier" else "Dice"
    title = (f"SE / CBAM in a small CNN, normal vs abnormal ({study.dataset})" if kind == "classifier" else
             f"Attention gates in a U-Net, LV segmentation ({study.dataset})")
    xlabel = "labelled training images n" if kind == "classifier" else "labelled training volumes n (all slices)"
    curve = learning_curve(rows, out / f"{kind}_{metric}.png", ylabel, title, baseline=baseline, xlabel=xlabel)
    cols = ["config", "n", "mean", "std", "n_seeds", "mean ± std", f"vs {baseline}"]
    sections = [f"### {kind}: {ylabel} vs n", markdown_table(rows, cols, name=kind), verdict(rows, baseline, what),
                f"![{kind} learning curve]({curve.name})"]
    summary = {"rows": [{k: r[k] for k in ("config", "n", "mean", "std", "n_seeds", "values")} for r in rows],
               "failed": [str(r.out_dir) for r in results if not r.ok]}
    if kind == "classifier":
        accuracy = curve_rows(results, "accuracy", baseline)
        sections += ["Test accuracy (threshold 0.5):", markdown_table(accuracy, cols, name="classifier_accuracy")]
        summary["accuracy_rows"] = [{k: r[k] for k in ("config", "n", "mean", "std", "n_seeds")} for r in accuracy]
    top = max(ns)
    point = pointing_rows(results, top)
    if point:
        target = "lesion" if kind == "classifier" else "LV"
        sections += [f"Pointing game against the {target} at n = {top} (share of test images whose map peaks within "
                     f"1/16 of the side of the {target}; 'centre' is a fixed map brightest at the image centre):",
                     markdown_table(point, ["config", "map", "n", "mean", "std", "n_seeds", "mean ± std"],
                                    name=f"pointing_{kind}")]
        summary["pointing"] = [{k: r[k] for k in ("config", "map", "n", "mean", "std", "n_seeds")} for r in point]
        folders = {c: out / kind / c / f"n{top}" / f"seed{args.seed}" for c in configs}
        if kind == "classifier":
            cams = list(cam_keys(study.stages))
            maps = [("none", m) for m in cams] + [("cbam", cams[-1])] + [("cbam", f"cbam{k}") for k in (1, 2, 3)]
            title = f"CAM / Grad-CAM and CBAM spatial maps, abnormal test images (n = {top}, seed {args.seed})"
        else:
            maps = [("attention_unet", f"gate{k}") for k in (1, 2, 3)]
            title = f"attention-gate coefficients on test slices (n = {top} volumes, seed {args.seed})"
        fig = map_figure(out / f"{kind}_maps.png", folders, maps, title, target)
        if fig is not None:
            sections.append(f"![{kind} maps]({fig.name})")
    return {"summary": summary, "sections": sections}


def main(args):
    cls, seg = studies(args)
    if args.dataset in REAL and args.data_root is None:
        raise InputError(f"--dataset {args.dataset} needs --data-root", hint="pass the dataset's folder")
    ctx = setup_run(args)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    try:
        done = {kind: run_study(kind, args, cls if kind == "classifier" else seg, ctx.device, ctx.out)
                for kind in STUDIES[args.study]}
    finally:  # main() is also called in-process (tests, reproduce.py): leave torch's thread count as it was
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t0
    spread = f"mean ± sample std over {args.seeds} seeds" if args.seeds > 1 else "one seed, so no spread"
    head = (f"Command: `{args.command}` ({seconds / 60:.1f} min, {args.jobs} run(s) at a time); {spread}. A gain "
            "counts where it exceeds the seeds' spread (sqrt(std_a^2 + std_b^2)).")
    write_report(ctx.out, "Attention mechanisms across n", [head, *[s for d in done.values() for s in d["sections"]]])
    summary = {kind: d["summary"] for kind, d in done.items()} | {"seconds": round(seconds, 1),
                                                                    "command": args.command}
    save_json(ctx.out / "metrics.json", summary)
    for d in done.values():
        log("\n".join(str(s) for s in d["sections"] if not s.startswith("!")))
    failed = [f for d in done.values() for f in d["summary"]["failed"]]
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: " + "; ".join(failed))
    log(f"took {seconds:.0f} s; wrote {ctx.out}")
    return summary


if __name__ == "__main__":
    cli_main(main, get_args())
