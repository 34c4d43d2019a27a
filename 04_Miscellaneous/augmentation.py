"""Data augmentation at small n: how much geometric, intensity and sample-mixing augmentation buy, and all together.

The survey (Zhang et al. 2019, "A Survey on Deep Learning of Small Sample in Biomedical Image Analysis",
https://arxiv.org/abs/1908.00473) lists augmentation first among the remedies for few labels. This demo measures it:
a classifier (SmallCNN, normal / abnormal on the bone phantom, or MURA) and a segmenter (U-Net, Ronneberger et al.
2015, LV of the cardiac phantom, or ACDC) are trained on n labelled samples with each augmentation family, every run
the same number of steps, and scored on a fixed held-out set: the learning curve (metric vs n, mean ± sample std over
seeds) shows each family beside none, and whether the gain shrinks as n grows.

- geometric: flip, rotation, scale, elastic deformation (Simard et al. 2003) -- torchvision ``transforms.v2``, the
  mask following the image's geometry;
- intensity: gamma and MRI bias field (MONAI), contrast, Gaussian noise, blur (torchvision);
- mixing: mixup (Zhang et al. 2018, https://arxiv.org/abs/1710.09412), CutMix (Yun et al. 2019,
  https://arxiv.org/abs/1905.04899) -- torchvision, the masks mixed with the images for the segmenter.

Usage: python 04_Miscellaneous/augmentation.py --quick
       python 04_Miscellaneous/augmentation.py --task segmenter --families none,elastic,bias_field --seeds 5
"""

import argparse
import functools
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common.cli import add_common_args, float_range, int_at_least, make_parser, parse_args, set_help  # noqa: E402
from common.data.augment import AUGMENTATIONS, FAMILIES, AugmentConfig, BatchMixer, JointAugment  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import log, setup_run  # noqa: E402
from common.sweep import aggregate, compare, grid, learning_curve, sweep, write_tables  # noqa: E402
from common.tasks.augmentation_study import (  # noqa: E402
    DATASETS,
    METRICS,
    TASKS,
    StudyConfig,
    pool_size,
    render_side,
    run_study,
)
from common.viz import plt, save_figure, show_image  # noqa: E402

NAMES = (*FAMILIES, *(a for a in AUGMENTATIONS if a not in FAMILIES))
FULL = {"families": tuple(FAMILIES), "ns": (8, 16, 32, 64, 128, 256), "seg_ns": (1, 2, 4, 8, 16), "seeds": 3,
        "size": 64, "seg_size": 64, "epochs": 20, "epoch_samples": 256, "width": 16, "n_test": 400,
        "seg_n_test": 10, "threads": 0}
QUICK = {"families": tuple(FAMILIES), "ns": (32, 128), "seg_ns": (1, 4), "seeds": 2, "size": 48, "seg_size": 32,
         "epochs": 6, "epoch_samples": 128, "width": 8, "n_test": 300, "seg_n_test": 6, "threads": 1}
LR = {"classifier": 2e-3, "segmenter": 5e-3}
POOL = {"classifier": 1000, "segmenter": 40}
UNITS = {"classifier": "labelled images n", "segmenter": "labelled volumes n"}


def comma_list(kind):
    """argparse ``type=`` for a comma list of ``kind`` values (names out of a tuple, or positive integers)."""

    def parse(text: str) -> tuple:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if isinstance(kind, tuple):
            unknown = [p for p in parts if p not in kind]
            if unknown or not parts:
                raise argparse.ArgumentTypeError(f"unknown or no name(s) {unknown or text!r}; choose from "
                                                 f"{', '.join(kind)}")
            return tuple(dict.fromkeys(parts))
        try:
            values = tuple(sorted({int(p) for p in parts}))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
        if not values or values[0] < 1:
            raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
        return values

    parse.__name__ = "comma list"
    return parse


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "augmentation", datasets=tuple(DATASETS), epochs=FULL["epochs"], batch_size=16, lr=None)
    set_help(p, "--dataset", "phantom: both studies on the built-in phantoms; mura: the classifier on MURA; acdc: "
                             "the segmenter on ACDC (both need --data-root)")
    set_help(p, "--lr", "learning rate, peak of a one-cycle schedule (default: 2e-3 classifier, 5e-3 segmenter)")
    set_help(p, "--epochs", "epochs per run, each of --epoch-samples items (the n training items cycled)")
    p.add_argument("--task", default=None, choices=(*TASKS, "both"),
                   help="which study (default: both on the phantoms, the dataset's own on real data)")
    p.add_argument("--families", type=comma_list(NAMES), default=FULL["families"],
                   help="configurations, comma list: families (" + ", ".join(FAMILIES) + ") or single augmentations ("
                        + ", ".join(a for a in AUGMENTATIONS) + "); 'none' is the baseline")
    p.add_argument("--ns", type=comma_list(int), default=FULL["ns"], help="classifier: labelled images n")
    p.add_argument("--seg-ns", type=comma_list(int), default=FULL["seg_ns"], help="segmenter: labelled volumes n")
    p.add_argument("--seeds", type=int_at_least(1), default=FULL["seeds"], help="seeds per (family, n)")
    p.add_argument("--size", type=int_at_least(32), default=FULL["size"], help="classifier image side, pixels")
    p.add_argument("--seg-size", type=int_at_least(32), default=FULL["seg_size"],
                   help="segmenter side, pixels: the central half of the field of view (multiple of 8)")
    p.add_argument("--epoch-samples", type=int_at_least(1), default=FULL["epoch_samples"],
                   help="items an epoch shows, whatever n")
    p.add_argument("--width", type=int_at_least(1), default=FULL["width"], help="channels of the first level")
    p.add_argument("--n-test", type=int_at_least(0), default=FULL["n_test"],
                   help="classifier: held-out images (real data: a cap, 0 = the whole valid split)")
    p.add_argument("--seg-n-test", type=int_at_least(0), default=FULL["seg_n_test"],
                   help="segmenter: held-out volumes (real data: a cap, 0 = the whole validation split)")
    p.add_argument("--p", type=float_range(0, 1), default=AugmentConfig.p,
                   help="probability of each per-item augmentation (flips: always a coin toss)")
    p.add_argument("--mix-alpha", type=float_range(0, low_open=True), default=AugmentConfig.mix_alpha,
                   help="mixup / CutMix: lambda ~ Beta(alpha, alpha)")
    p.add_argument("--jobs", type=int_at_least(1), default=1, help="runs at once in worker processes")
    p.add_argument("--threads", type=int_at_least(0), default=FULL["threads"],
                   help="torch CPU threads per run (0: torch's default, or cores / jobs with --jobs > 1)")
    args = parse_args(p, argv, quick=QUICK)
    tasks = DATASETS[args.dataset]
    if args.task not in (None, "both") and args.task not in tasks:
        p.error(f"argument --task: {args.task} is not studied on --dataset {args.dataset} (only {', '.join(tasks)})")
    args.tasks = tasks if args.task in (None, "both") else (args.task,)
    if args.seg_size % 8:
        p.error(f"argument --seg-size: the U-Net needs a multiple of 8, got {args.seg_size}")
    shown = argv if argv is not None else sys.argv[1:]
    args.command = "python 04_Miscellaneous/augmentation.py " + " ".join(shlex.quote(a) for a in shown)
    return args


def study_config(args, task: str) -> StudyConfig:
    """The flags as the typed configuration of one study (once, here)."""
    seg = task == "segmenter"
    return StudyConfig(
        task=task, dataset=args.dataset, data_root=None if args.data_root is None else str(args.data_root),
        size=args.seg_size if seg else args.size, pool=POOL[task], n_test=args.seg_n_test if seg else args.n_test,
        epochs=args.epochs, epoch_samples=args.epoch_samples, batch_size=args.batch_size, lr=args.lr or LR[task],
        width=args.width, depth=3 if seg else 4, data_seed=args.seed, workers=args.workers,
        lesion_types=("hardware",), augment=AugmentConfig(p=args.p, mix_alpha=args.mix_alpha))


# ------------------------------------------------------------------------------------------------ figure


def augmentation_figure(path: Path, size: int = 96, seed: int = 0) -> Path:
    """Each augmentation (p = 1) on a cardiac phantom slice and a bone phantom radiograph, with the mask's outline
    following the geometry; mixup shows the soft LV target as a heat map, CutMix the pasted mask."""
    from common.data.phantoms.bone import BoneXrayPhantom
    from common.data.phantoms.cardiac import CardiacPhantomSlices

    torch.manual_seed(seed)
    cfg = AugmentConfig(p=1.0)
    cardiac = CardiacPhantomSlices(2, size * 2, seed=seed)
    lv = [i for i in range(len(cardiac)) if cardiac[i]["meta"]["lv_area"] > 0]
    half = slice(size // 2, size // 2 + size)

    def crop(item):
        return item["image"][:, half, half].contiguous(), (item["mask"][half, half] == 3).long()

    heart, heart2 = crop(cardiac[lv[len(lv) // 2]]), crop(cardiac[lv[-1]])
    bone = BoneXrayPhantom(40, size, seed=seed, lesion_types=("hardware",))
    hw = next(bone[i] for i in range(len(bone)) if int(bone[i]["label"]) == 1)
    rows = [("cardiac slice, LV", heart), ("bone radiograph, hardware", (hw["image"], hw["mask"].long()))]
    names = ["original", *AUGMENTATIONS]
    fig, axes = plt.subplots(len(rows), len(names), figsize=(1.9 * len(names), 2.3 * len(rows) + 0.5), squeeze=False)
    for r, (label, (image, mask)) in enumerate(rows):
        for c, name in enumerate(names):
            ax, title, minor = axes[r, c], name, None
            if name == "original":
                out, out_mask = image, mask
            elif name in ("mixup", "cutmix"):
                other = heart2 if r == 0 else (bone[1]["image"], bone[1]["mask"].long())
                mixed, soft = BatchMixer((name,), 2, cfg.mix_alpha, dense=True)(
                    torch.stack([image, other[0]]), torch.stack([mask, other[1]]))
                out, fg = mixed[0], soft[0, 1]
                out_mask, minor = fg > 0.5, (fg > 0) & (fg <= 0.5)  # the major and the minor image's mask
                title = f"{name}, weight {float(fg.max()):.2f}" if name == "mixup" else name
            else:
                out, out_mask = JointAugment([name], cfg)(image, mask)
            masks = [out_mask.numpy()] + ([] if minor is None else [minor.numpy()])
            show_image(ax, out[0].clamp(0, 1).numpy(), title if r == 0 else None, masks=masks)
        axes[r, 0].text(-0.08, 0.5, label, transform=axes[r, 0].transAxes, rotation=90, ha="right", va="center",
                        fontsize=9)
    fig.suptitle("Each augmentation once (p = 1). Green: the mask, moved by the same geometry as the image; mixing: "
                 "green where the mixed target is > 0.5, red where the other image's share is <= 0.5")
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------------ studies


def goal_row(task: str, rows: list[dict]) -> dict:
    """At the smallest n: the best family's gain over none against the seeds' spread (sqrt(std^2 + std_none^2))."""
    n0 = min(r["n"] for r in rows)
    at = {r["config"]: r for r in rows if r["n"] == n0 and r["mean"] is not None}
    base = at.get("none")
    others = [r for c, r in at.items() if c != "none"]
    if base is None or not others:
        return {"task": task, "n": n0, "best": "", "gain": float("nan"), "spread": float("nan"), "met": "n/a"}
    best = max(others, key=lambda r: r["mean"])
    c = compare(best, base)
    met = "n/a (one seed)" if c["exceeds"] is None else ("yes" if c["exceeds"] and c["gain"] > 0 else "no")
    return {"task": task, "n": n0, "best": best["config"], "none": base["mean"], "best mean": best["mean"],
            "gain": c["gain"], "spread": float("nan") if c["spread"] is None else c["spread"], "met": met}


def run_task(args, task: str, device) -> dict:
    cfg = study_config(args, task)
    ns = args.seg_ns if task == "segmenter" else args.ns
    available = pool_size(cfg)  # loads the data: bad data or n above the pool is an InputError before training
    if max(ns) > available:
        raise InputError(f"n = {max(ns)} is more than the {available} {UNITS[task].split()[1]} of the {task}'s pool",
                         hint=f"lower the largest --{'seg-' if task == 'segmenter' else ''}ns value")
    configs = {f: {"names": [f]} for f in args.families}
    runs = grid(configs, seeds=range(args.seed, args.seed + args.seeds), ns=ns, params={"cfg": cfg})
    metric = METRICS[task]
    results = sweep(runs, functools.partial(run_study, str(device), args.resume), args.out / task, jobs=args.jobs,
                    threads=args.threads, resume=args.resume,
                    describe_metrics=lambda m: f"{metric} {m[metric]:.3f}")
    failed = [f"{r.out_dir} ({r.error})" for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} {task} run(s) failed: " + "; ".join(failed))
    rows = aggregate(results, metric)
    write_tables(rows, args.out, task, baseline="none")
    phantom = args.dataset == "phantom"
    what = {"classifier": "SmallCNN, bone phantom (hardware vs normal)" if phantom else "SmallCNN, MURA",
            "segmenter": "U-Net, LV of the cardiac phantom" if phantom else "U-Net, LV of ACDC"}[task]
    figure = learning_curve(rows, args.out / f"learning_curve_{task}.png",
                            "held-out AUROC" if task == "classifier" else "held-out LV 3D Dice",
                            f"Augmentation vs none: {what}", baseline="none", xlabel=UNITS[task])
    return {"rows": rows, "goal": goal_row(task, rows), "figure": figure, "cfg": cfg}


def main(args):
    if args.dataset != "phantom" and args.data_root is None:
        raise InputError(f"--dataset {args.dataset} needs --data-root", hint="pass the dataset's folder")
    ctx = setup_run(args)
    threads = torch.get_num_threads()
    if ctx.device.type == "cpu" and args.threads and args.jobs == 1:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        with ctx.removing_out_on_error():
            studies = {task: run_task(args, task, ctx.device) for task in args.tasks}
        figure = augmentation_figure(args.out / "augmentations.png", seed=args.seed)
    finally:  # main() is also called in-process (tests): leave torch's thread count as it was
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t0
    cols = ["config", "n", "mean", "std", "n_seeds"]
    sections = [f"Command: `{args.command}` ({seconds / 60:.1f} min). Every run: {args.epochs} epochs of "
                f"{args.epoch_samples} items (the n training items cycled), batch {args.batch_size}; mean ± sample "
                f"std over {args.seeds} seed(s), each seed drawing its own n samples, initialisation and "
                f"augmentation. ![augmentations]({figure.name})"]
    for task, s in studies.items():
        cfg = s["cfg"]
        detail = (f"AUROC on {cfg.n_test} held-out images at {cfg.size} px" if task == "classifier" else
                  f"mean 3D Dice of the LV over {cfg.n_test} held-out volumes, central {cfg.size} px of "
                  f"{render_side(cfg)}")
        sections += [f"### {task}: {detail}", markdown_table(s["rows"], cols, name=task),
                     f"![learning curve]({s['figure'].name})"]
    goals = [s["goal"] for s in studies.values()]
    sections += ["### goal: at the smallest n, the best augmentation beats none by more than the seeds' spread",
                 markdown_table(goals, ["task", "n", "best", "none", "best mean", "gain", "spread", "met"],
                                name="goals")]
    write_report(args.out, f"Data augmentation at small n ({args.dataset})", sections)
    summary = {task: {"rows": s["rows"], "goal": s["goal"]} for task, s in studies.items()}
    summary.update(seconds=round(seconds, 1), command=args.command)
    save_json(args.out / "metrics.json", summary)
    for task, s in studies.items():
        log(f"{task}:\n" + markdown_table(s["rows"], cols))
    log(markdown_table(goals) + f"took {seconds:.0f} s; wrote {args.out}")
    return summary


if __name__ == "__main__":
    cli_main(main, get_args())
