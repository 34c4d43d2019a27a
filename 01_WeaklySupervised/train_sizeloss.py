"""Weakly supervised LV segmentation with size constraints (ENet), and the table of Kervadec et al.'s ACDC rows.

Kervadec, Dolz, Tang, Granger, Boykov, Ben Ayed, "Constrained-CNN losses for weakly supervised segmentation",
Medical Image Analysis 2019, https://arxiv.org/abs/1805.04628; reference code github.com/LIVIAETS/SizeLoss_WSS.
An ENet (Paszke et al. 2016, https://arxiv.org/abs/1606.02147) learns the LV cavity (label 3) from weak labels
(eroded masks, random points, centroids or boxes) plus a penalty on the predicted size; see --variant.
Runs on the built-in cardiac phantom, or on ACDC with --dataset acdc --data-root DIR.
Validation: 3D Dice of the LV per volume (the reference's grouped "val_batch_dice"), also 2D Dice per slice.

Usage: python 01_WeaklySupervised/train_sizeloss.py --variant presize --weak erosion --quick
       python 01_WeaklySupervised/train_sizeloss.py --table --quick
       python 01_WeaklySupervised/train_sizeloss.py --from-json benchmarks/results/wss_full/table.json  (no training)
"""

import dataclasses
import functools
import json
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.cli import add_common_args, float_range, int_at_least, make_parser  # noqa: E402
from common.engine import FitConfig, fit, predict  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.models.enet import ENet  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import log, seed_everything, setup_run  # noqa: E402
from common.sweep import aggregate, grid, mean_std, sweep  # noqa: E402
from common.tasks.lv_weak_seg import (  # noqa: E402
    VARIANTS,
    WEAK_KINDS,
    WeakVolumes,
    collate_volumes,
    dice_by_volume,
    load_cardiac,
    make_step,
    volume_dice_metric,
)
from common.viz import MASK_COLOURS, curves, plt, save_figure, show_image  # noqa: E402

DATASETS = ("phantom", "acdc")
# Rows of the survey authors' ACDC demo of Kervadec et al. (3D Dice of the LV), and extra weak-label rows.
TABLE_ROWS = [("fs", "erosion", 0.8502), ("partial", "erosion", 0.1372), ("loose", "erosion", 0.6707),
              ("size", "erosion", 0.7072), ("presize_upper", "erosion", 0.6786), ("presize", "erosion", 0.7655),
              ("3d_size", "erosion", 0.7876), ("3d_size", "random", 0.7949), ("3d_size", "centroid", None),
              ("3d_size", "box", None)]
# Quick: a few minutes on 2 CPU cores; the higher lr makes up for ~160 steps instead of the reference's ~10^5,
# and one torch thread per run (the quick table trains one run per core) avoids OpenMP threads spinning against
# each other on a shared machine.
QUICK = {"size": 64, "n_train": 8, "n_val": 4, "epochs": 20, "lr": 5e-3, "threads": 1}
FULL = {"size": 128, "n_train": 40, "n_val": 10, "epochs": 100, "lr": 5e-4, "threads": 0}


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "train_sizeloss", datasets=DATASETS, epochs=None, batch_size=1, lr=None)
    p.add_argument("--variant", default="presize", choices=sorted(VARIANTS), help="loss of Kervadec et al.")
    p.add_argument("--weak", default="erosion", choices=sorted(WEAK_KINDS), help="weak label drawn from the masks")
    p.add_argument("--label", type=int, default=3, help="class to segment (ACDC: 3 = LV cavity)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (multiple of 8)")
    p.add_argument("--n-train", type=int_at_least(0), default=None,
                   help="training volumes (phantom; cap for ACDC, 0 = all)")
    p.add_argument("--n-val", type=int_at_least(0), default=None,
                   help="validation volumes (phantom; cap for ACDC, 0 = all)")
    # Adam betas (0.9, 0.99) and lr 5e-4 (full mode) as in the reference main.py; batch = whole volumes.
    p.add_argument("--lam", type=float_range(0), default=None,
                   help="size-penalty weight, >= 0 (default: the variant's)")
    p.add_argument("--margin", type=float, default=None,
                   help="relative margin of the precise / upper / 3D size bounds (default: the variant's, 0.1; "
                        "0 for 3d_size)")
    p.add_argument("--threads", type=int_at_least(0), default=None,
                   help="torch CPU threads per run (0: torch's default, or cores / jobs with --jobs > 1)")
    p.add_argument("--table", action="store_true", help="train every row of the table and write it")
    p.add_argument("--seeds", type=int_at_least(1), default=None, help="seeds per table row (default 1 quick, 3 full)")
    p.add_argument("--rows", default=None,
                   help="with --table: only these rows, a comma list of variant/weak (e.g. fs/erosion,3d_size/box)")
    p.add_argument("--jobs", type=int_at_least(1), default=None,
                   help="table runs trained at once in separate processes, each with --threads threads (0: cores / "
                        "jobs); logs go to <out>/<row>/seed<k>/train.log (default: with --quick one a CPU core, "
                        "else 1)")
    p.add_argument("--from-json", type=Path, default=None,
                   help="train nothing: write the report and tables of an earlier --table run's table.json (into "
                        "its folder)")
    args = p.parse_args(argv)
    preset = dict(QUICK if args.quick else FULL)
    if args.dataset == "acdc":  # every patient of the split unless capped
        preset.update(n_train=0, n_val=0)
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("n_train", "n_val"):
        value = getattr(args, key)
        if args.dataset == "phantom" and value < 1:  # 0 = every patient is for ACDC
            p.error(f"argument --{key.replace('_', '-')}: the phantom needs at least 1 volume, got {value} "
                    "(0 = all is for --dataset acdc)")
    table_only = [f"--{k}" for k, v in (("rows", args.rows), ("seeds", args.seeds)) if v is not None]
    table_only += ["--jobs"] if args.jobs is not None else []
    if table_only and not args.table:  # they would be ignored: one run trains --variant / --weak once
        p.error(f"argument {table_only[0]}: only with --table (one run trains --variant / --weak with --seed)")
    args.seeds = (1 if args.quick else 3) if args.seeds is None else args.seeds
    known = [f"{v}/{w}" for v, w, _ in TABLE_ROWS]
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows else known
    unknown = [r for r in args.rows if r not in known]
    if unknown or not args.rows:
        p.error(f"--rows: unknown or no table row(s) {unknown}; choose from {', '.join(known)}")
    if args.jobs is None:  # the quick table shares the cores (one thread a run); a run's result does not depend on it
        args.jobs = min(os.cpu_count() or 1, len(args.rows) * args.seeds) if args.quick and args.table else 1
    args.batch_size = args.batch_size or 1
    shown = argv if argv is not None else sys.argv[1:]
    args.command = "python 01_WeaklySupervised/train_sizeloss.py " + " ".join(shlex.quote(a) for a in shown)
    return args


def load_sets(args, weak: str, seed: int):
    images, labels, ids = load_cardiac(args.dataset, "train", args.size, args.n_train, args.seed, args.data_root)
    if not any((np.asarray(lab) == args.label).any() for lab in labels):
        raise InputError(f"--label {args.label} does not occur in the {args.dataset} training masks",
                         hint="check the dataset's label map (ACDC: 1 = RV, 2 = myocardium, 3 = LV cavity)")
    train = WeakVolumes(images, labels, weak, args.label, seed, ids)
    images, labels, ids = load_cardiac(args.dataset, "val", args.size, args.n_val, args.seed, args.data_root,
                                       n_train=args.n_train)
    val = WeakVolumes(images, labels, weak, args.label, seed, ids)
    return train, val


def prediction_figure(model, val, device, path: Path, title: str, n: int = 6) -> np.ndarray:
    """Validation slices with the LV (green: truth, red: prediction); returns the predicted masks (N, H, W)."""
    logits = predict(model, val, lambda m, b, d: m(b["image"].to(d)), device, batch_size=1,
                     collate_fn=collate_volumes)
    pred = logits.argmax(1).numpy()
    batch = collate_volumes([val[i] for i in range(len(val))])
    mask, image = batch["mask"].numpy(), batch["image"][:, 0].numpy()
    with_lv = np.flatnonzero(mask.reshape(len(mask), -1).any(1))
    pick = with_lv[np.linspace(0, len(with_lv) - 1, min(n, len(with_lv))).astype(int)]
    fig, axes = plt.subplots(1, max(len(pick), 1), figsize=(2.6 * max(len(pick), 2), 3.2), squeeze=False)
    for ax, i in zip(axes[0], pick, strict=False):  # no LV in any slice: one empty panel
        show_image(ax, image[i], f"slice {i}", masks=[mask[i], pred[i]])  # contours in MASK_COLOURS[0], [1]
    handles = [plt.Line2D([], [], color=MASK_COLOURS[k], linewidth=2, label=label)
               for k, label in enumerate(("truth (LV)", "prediction"))]
    axes[0][0].legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.12), ncol=2, frameon=False,
                      borderaxespad=0.0)  # above the first panel, clear of the slices
    fig.suptitle(title)
    save_figure(fig, path)
    return pred


def run_config(args) -> dict:
    """The settings a run's result depends on besides its variant, weak label and seed (stored in metrics.json)."""
    return {"dataset": args.dataset, "size": args.size, "n_train": args.n_train, "n_val": args.n_val,
            "epochs": args.epochs, "lr": args.lr, "lam": args.lam, "margin": args.margin, "label": args.label}


def train_one(args, variant: str, weak: str, seed: int, out: Path, device) -> dict:
    """Train one (variant, weak label, seed) and return its best and last validation Dice.

    Under ``--resume`` a run whose ``metrics.json`` says it finished with this configuration is not trained
    again, so a table can be put together from runs trained elsewhere even when their checkpoints were not kept.
    """
    config = run_config(args)
    done = out / "metrics.json"
    if args.resume and done.exists():
        summary = json.loads(done.read_text())
        if (summary.get("config") == config and (summary["variant"], summary["weak"], summary["seed"]) ==
                (variant, weak, seed) and len(summary["history"]) == args.epochs):
            log(f"--- {variant} / {weak} / seed {seed}: finished earlier ({done}); not trained again")
            return summary
    seed_everything(seed)
    train, val = load_sets(args, weak, seed)
    v = VARIANTS[variant]
    if args.lam is not None:
        v = dataclasses.replace(v, lam=args.lam)
    if args.margin is not None:
        v = dataclasses.replace(v, margin=args.margin)
    model = ENet(in_channels=1, num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    cfg = FitConfig(epochs=args.epochs, batch_size=args.batch_size, out=out, seed=seed, resume=args.resume,
                    workers=args.workers, monitor="val_dice3d", mode="max", collate_fn=collate_volumes,
                    args={**{k: str(x) for k, x in vars(args).items()}, "variant": variant, "weak": weak,
                          "seed": str(seed)})  # the row's, not the script's --variant / --weak / --seed
    log(f"--- {variant} / {weak} / seed {seed}: {v.about}; lambda={v.lam}; "
        f"{len(train)} train / {len(val)} val volumes at {args.size} px")
    result = fit(model, train, val, make_step(v), optimizer, cfg, device,
                 metric_fn=volume_dice_metric(val.slice_volume_ids()))
    hist = result["history"]
    best = max(hist, key=lambda h: h["val_dice3d"])
    curves([h["epoch"] for h in hist], {"3D Dice (validation)": [h["val_dice3d"] for h in hist],
                                        "2D Dice (validation)": [h["val_dice2d"] for h in hist]},
           out / "dice.png", "epoch", "Dice of the LV", f"{variant} ({weak})")
    # Figures and the last-epoch scores come from the model as it ends; best.pt holds the best epoch's weights.
    pred = prediction_figure(model, val, device, out / "predictions.png", f"{variant} ({weak}), last epoch")
    batch = collate_volumes([val[i] for i in range(len(val))])
    last = dice_by_volume(pred.astype(bool), batch["mask"].numpy().astype(bool), val.slice_volume_ids())
    summary = {"variant": variant, "weak": weak, "seed": seed, "lambda": v.lam, "best_epoch": best["epoch"],
               "best_dice3d": best["val_dice3d"], "best_dice2d": best["val_dice2d"], "last_dice3d": last["dice3d"],
               "last_dice2d": last["dice2d"], "n_val_volumes": last["n_volumes"], "config": config, "history": hist}
    save_json(out / "metrics.json", summary)
    return summary


def table_run(args, device: str, run, out: Path) -> dict:
    """One run of the table (common.sweep's run function): the row's variant and weak label at the run's seed."""
    return train_one(args, run.params["variant"], run.params["weak"], run.seed, out, torch.device(device))


def table_goals(rows: list[dict], key: str) -> dict:
    """The issue's goals from the table rows' ``key`` (mean best or last Dice); nan where a row is left out."""
    nan = float("nan")
    by_method = {r["method"]: r[key] for r in rows}  # fs and partial have one row each
    fs = by_method.get("fs", nan)  # a --rows subset may leave out fs, partial or every size row: nan
    best_size = max([r[key] for r in rows if VARIANTS[r["method"]].bounds is not None], default=nan)
    return {"fs_dice": fs, "partial_over_fs": by_method.get("partial", nan) / fs if fs > 0 else nan,
            "best_size_over_fs": best_size / fs if fs > 0 else nan}


def run_table(args, device) -> dict:
    """Every row of TABLE_ROWS over ``args.seeds`` seeds through common.sweep (seed-major, ``args.jobs`` at a
    time): markdown + JSON table and a prediction figure."""
    t0 = time.perf_counter()
    table_rows = [row for row in TABLE_ROWS if f"{row[0]}/{row[1]}" in args.rows]
    shared = {**run_config(args), "batch_size": args.batch_size}  # what a finished run is reused for (--resume)
    runs = grid({f"{v}_{w}": {"variant": v, "weak": w} for v, w, _ in table_rows},
                seeds=range(args.seed, args.seed + args.seeds), params=shared)
    results = sweep(runs, functools.partial(table_run, args, str(device)), args.out, jobs=args.jobs,
                    threads=args.threads, resume=args.resume,
                    describe_metrics=lambda m: f"best 3D Dice {m['best_dice3d']:.3f}")
    best, last = aggregate(results, "best_dice3d"), aggregate(results, "last_dice3d")
    rows = []
    for (variant, weak, paper), b, la in zip(table_rows, best, last, strict=True):
        nan = float("nan")
        rows.append({"method": variant, "weak label": "full mask" if variant == "fs" else weak,
                     "paper/survey ACDC": "" if paper is None else f"{paper:.4f}",
                     "phantom 3D Dice": mean_std(b), "last epoch": mean_std(la), "seeds": b["n_seeds"],
                     "config": f"{variant}/{weak}", "n": args.n_train or None, "n_seeds": b["n_seeds"],
                     "mean": nan if b["mean"] is None else b["mean"], "std": b["std"], "values": b["values"],
                     "last_mean": nan if la["mean"] is None else la["mean"], "last_std": la["std"],
                     "figure": f"{variant}_{weak}/seed{args.seed}/predictions.png"})
    failed = [{"run": str(r.out_dir), "error": r.error} for r in results if not r.ok]
    goals, goals_last = table_goals(rows, "mean"), table_goals(rows, "last_mean")
    fs = goals["fs_dice"]
    ratios = {r["method"] + "/" + r["weak label"]: r["mean"] / fs if fs > 0 else float("nan") for r in rows}
    runs_kept = [{k: v for k, v in r.metrics.items() if k != "history"} for r in results if r.ok]
    table = {"rows": rows, "runs": runs_kept, "failed": failed, "ratios_to_fs": ratios, "goals": goals,
             "goals_last_epoch": goals_last, "seconds": round(time.perf_counter() - t0, 1), "command": args.command,
             "quick": args.quick, "jobs": args.jobs, "dataset": args.dataset, "size": args.size,
             "seeds": args.seeds}
    md = write_table(table, args.out)
    log(md + f"table took {table['seconds']:.0f} s; wrote {args.out}")
    if failed:  # the table holds the runs that finished; say which did not, and fail the command
        raise RuntimeError(f"{len(failed)} table run(s) failed: " + "; ".join(f"{f['run']} ({f['error']})"
                                                                            for f in failed))
    return table


def write_table(table: dict, out: Path) -> str:
    """``table.json``, ``table.md`` and ``report.md`` (its table named "table" for the README) of a table in ``out``;
    returns the markdown. Tables written before these keys existed take dataset and size from their runs."""
    config = table["runs"][0].get("config", {}) if table["runs"] else {}
    dataset, size = table.get("dataset", config.get("dataset")), table.get("size", config.get("size"))
    seeds = table.get("seeds", max(r["seeds"] for r in table["rows"]))
    save_json(out / "table.json", table)
    cols = ["method", "weak label", "paper/survey ACDC", "phantom 3D Dice", "last epoch", "seeds"]
    md = markdown_table(table["rows"], cols, name="table")
    (out / "table.md").write_text(md)
    # rows of tables written before they named their figure: seed 0's
    figures = [r.get("figure", f"{r['method']}_{'erosion' if r['method'] == 'fs' else r['weak label']}/seed0/"
                               "predictions.png") for r in table["rows"]]
    links = [f"![{Path(f).parts[0]}]({f})" for f in figures if (out / f).exists()]
    goals, goals_last = table["goals"], table["goals_last_epoch"]
    spread = "mean ± sample std" if seeds > 1 else "one seed, so no spread"
    at_once = f", {table['jobs']} run(s) at a time" if "jobs" in table else ""
    write_report(out, f"Size-constrained weak supervision, {dataset} ({size} px)", [
        f"Command: `{table['command']}` ({table['seconds'] / 60:.1f} min{at_once}). 3D Dice of the LV per "
        f"validation volume at the best validation epoch ({spread} over {seeds} seed(s)), as the reference "
        "code reports it; 'last epoch' is the final model. The paper/survey column is ACDC at 256 px, 200 epochs.",
        md, f"Best epoch: full supervision {goals['fs_dice']:.3f}; partial/fs {goals['partial_over_fs']:.2f}; "
        f"best size-constrained/fs {goals['best_size_over_fs']:.2f}. Last epoch: full supervision "
        f"{goals_last['fs_dice']:.3f}; partial/fs {goals_last['partial_over_fs']:.2f}; best size-constrained/fs "
        f"{goals_last['best_size_over_fs']:.2f}.", *links])
    return md


def main(args):
    if args.from_json is not None:
        return tables_again(args.from_json)
    if args.size % 8 or args.size < 32:
        raise InputError(f"--size {args.size} is not usable",
                         hint="use a multiple of 8, at least 32 (ENet downsamples by 8)")
    for name in ("epochs", "seeds", "jobs", "batch_size"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} {getattr(args, name)} must be at least 1")
    if args.label not in (1, 2, 3):
        raise InputError(f"--label {args.label} is not a structure of the cardiac labels",
                         hint="ACDC and the phantom: 1 = RV, 2 = myocardium, 3 = LV cavity")
    if args.margin is not None and not 0.0 <= args.margin < 1.0:
        raise InputError(f"--margin {args.margin} must be a fraction in [0, 1)")
    if args.dataset == "acdc" and args.data_root is None:
        raise InputError("--dataset acdc needs --data-root", hint="pass the ACDC folder that holds training/")
    ctx = setup_run(args)
    threads = torch.get_num_threads()
    if ctx.device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, ctx)
    finally:  # main() is also called in-process (tests, notebooks): leave torch's thread count as it was
        torch.set_num_threads(threads)


def _table_summary(table: dict) -> dict:
    keys = ("method", "weak label", "mean", "std", "n_seeds")
    return {"goals": table["goals"], "seconds": table["seconds"], "command": table["command"],
            "rows": [{k: r.get(k, r.get("seeds")) for k in keys} for r in table["rows"]]}


def tables_again(path: Path) -> dict:
    """--from-json: the report and tables of an earlier table run, from its table.json; nothing trains."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read it as JSON ({type(exc).__name__})", path=path,
                         hint="pass the table.json a --table run wrote") from None
    keys = {"rows", "runs", "goals", "goals_last_epoch", "seconds", "command"}
    if not isinstance(table, dict) or not keys <= set(table):
        raise InputError("not a table.json of train_sizeloss.py --table", path=path,
                         hint="pass the table.json a --table run wrote")
    md = write_table(table, path.parent)
    log(md + f"wrote the report and tables of {path.parent}")
    return _table_summary(table)


def _run(args, ctx) -> dict:
    if args.table:
        summary = _table_summary(run_table(args, ctx.device))
        save_json(ctx.out / "metrics.json", summary)
        return summary
    summary = train_one(args, args.variant, args.weak, args.seed, ctx.out, ctx.device)
    write_report(ctx.out, f"{args.variant} ({args.weak}) on {args.dataset}", [
        f"Command: `{args.command}`. Best validation 3D Dice {summary['best_dice3d']:.3f} (epoch "
        f"{summary['best_epoch']}), last {summary['last_dice3d']:.3f}.", "![predictions](predictions.png)",
        "![Dice curves](dice.png)"])
    log(f"{args.variant}/{args.weak}: best 3D Dice {summary['best_dice3d']:.3f}, last {summary['last_dice3d']:.3f}")
    return {k: v for k, v in summary.items() if k != "history"}


if __name__ == "__main__":
    cli_main(main, get_args())
