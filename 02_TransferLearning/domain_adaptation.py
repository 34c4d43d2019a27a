"""Optic disc / cup segmentation across two fundus cameras: unsupervised domain adaptation, measured against a
source-only baseline and a target oracle.

The survey's demo (Zhang et al. 2019, https://arxiv.org/abs/1908.00473): REFUGE's 400 Zeiss Visucam training images
with masks as the source, its Canon CR-2 images without masks as the target, a U-Net with a domain discriminator
(after CFEA, Liu et al. MICCAI 2019, https://arxiv.org/abs/1910.07638): target Cup Dice 0.8246, Disc Dice 0.8975,
vCDR MAE 0.048, reported without a source-only baseline. Here every row trains the same small U-Net on disc-centred
crops of camera A (with masks) and camera B (without) and is scored on other camera B images:

  source only; input-space alignment (histogram matching; Fourier domain adaptation, Yang & Soatto CVPR 2020,
  https://arxiv.org/abs/2004.05498); a batch-statistics control; output-space adversarial on softmax maps (pOSAL,
  Wang et al. TMI 2019, https://arxiv.org/abs/1902.07519) and on entropy maps (BEAL, Wang et al. MICCAI 2019,
  https://arxiv.org/abs/1906.11143); feature-level adversarial through gradient reversal (DANN, Ganin et al. 2016,
  https://arxiv.org/abs/1505.07818); the target oracle trained on camera B's masks.

Disc Dice, Cup Dice and vCDR MAE (REFUGE's metrics) on the target, mean ± sample std over seeds; no row chooses
anything on the target's masks (each keeps its last epoch). --img segments your own photographs with the cached
adapted model (or --checkpoint): REFUGE-encoded mask, overlay and vCDR per image.

Usage: python 02_TransferLearning/domain_adaptation.py --quick
       python 02_TransferLearning/domain_adaptation.py --dataset refuge --data-root /data/REFUGE
       python 02_TransferLearning/domain_adaptation.py --img my_fundus_photos/ --out runs/my_discs
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

from common.cli import add_common_args, comma_list, float_range, int_at_least, make_parser, parse_args  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.io.atomic import save_csv, save_image  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import log, setup_run  # noqa: E402
from common.sweep import aggregate, grid, sweep  # noqa: E402
from common.tasks.fundus_da import (  # noqa: E402
    ADVERSARIAL,
    DEMO_METHOD,
    INPUT_SPACE,
    METHODS,
    QUICK,
    SURVEY,
    DAConfig,
    cache_demo,
    check_config,
    demo_path,
    is_demo_recipe,
    load_model,
    prepare_data,
    run_method,
    segment_photograph,
)
from common.viz import plt, save_figure, show_image  # noqa: E402

DATASETS = ("phantom", "refuge")
QUICK_METHODS = ("source_only", "adabn", "histmatch", "target_bn", "output_adv", "dann", "oracle")
METRICS = ("disc_dice", "cup_dice", "vcdr_mae")



def get_args(argv=None):
    full = DAConfig()
    p = make_parser(__doc__)
    add_common_args(p, "domain_adaptation", datasets=DATASETS, epochs=full.epochs, batch_size=full.batch_size,
                    lr=full.lr)
    p.add_argument("--methods", type=comma_list(tuple(METHODS)), default=None,
                   help=f"rows, comma list of {', '.join(METHODS)} (default: all; with --quick "
                        f"{','.join(QUICK_METHODS)})")
    p.add_argument("--seeds", type=int_at_least(1), default=None, help="seeds per row (default 1 quick, 3 full)")
    p.add_argument("--size", type=int_at_least(32), default=full.size,
                   help="images are padded square and resized to this side before the disc is located")
    p.add_argument("--crop", type=int_at_least(16), default=full.crop, help="side of the disc-centred crop")
    p.add_argument("--n-source", type=int_at_least(0), default=full.n_source,
                   help="camera A images with masks (REFUGE train split; 0 = all)")
    p.add_argument("--n-target", type=int_at_least(0), default=full.n_target,
                   help="camera B images whose masks are not used (REFUGE val split; 0 = all)")
    p.add_argument("--n-val", type=int_at_least(0), default=full.n_val,
                   help="camera B images scored (REFUGE test split; 0 = all)")
    p.add_argument("--width", type=int_at_least(1), default=full.width, help="U-Net channels at full resolution")
    p.add_argument("--depth", type=int_at_least(1), default=full.depth, help="U-Net levels")
    p.add_argument("--lam-adv", type=float_range(0), default=full.lam_adv,
                   help="weight of the output-space fooling loss")
    p.add_argument("--lam-dann", type=float_range(0), default=full.lam_dann,
                   help="DANN: largest gradient-reversal strength (ramped up as Ganin et al.)")
    p.add_argument("--lr-disc", type=float_range(0, low_open=True), default=full.lr_disc,
                   help="discriminators' learning rate")
    p.add_argument("--fda-beta", type=float_range(0, 0.5), default=full.fda_beta,
                   help="FDA: low-frequency half-side as a fraction of the crop")
    p.add_argument("--jobs", type=int_at_least(1), default=None,
                   help="runs at once in worker processes (default: with --quick one a CPU core, else 1)")
    p.add_argument("--threads", type=int_at_least(0), default=0, help="torch CPU threads per run (0: default)")
    p.add_argument("--img", nargs="+", default=None, metavar="FILES|FOLDER",
                   help="segment these fundus photographs (JPEG/PNG/TIFF, any size) instead of training")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="with --img: a model.pt of a run (default: the cached adapted demo model)")
    args = parse_args(p, argv, quick=QUICK)
    if args.checkpoint is not None and args.img is None:
        p.error("argument --checkpoint: only with --img (training writes its own model.pt per run)")
    if args.dataset == "phantom" and min(args.n_source, args.n_target, args.n_val) < 1:
        p.error("the phantom needs --n-source, --n-target and --n-val >= 1 (0 = all is for --dataset refuge)")
    args.methods = args.methods or (QUICK_METHODS if args.quick else tuple(METHODS))
    args.seeds = args.seeds or (1 if args.quick else 3)
    if args.jobs is None:
        args.jobs = min(os.cpu_count() or 1, len(args.methods) * args.seeds) if args.quick else 1
    shown = argv if argv is not None else sys.argv[1:]
    args.command = "python 02_TransferLearning/domain_adaptation.py " + " ".join(shlex.quote(a) for a in shown)
    return args


def da_config(args) -> DAConfig:
    return DAConfig(dataset=args.dataset, data_root=None if args.data_root is None else str(args.data_root),
                    size=args.size, crop=args.crop, n_source=args.n_source, n_target=args.n_target, n_val=args.n_val,
                    data_seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, width=args.width,
                    depth=args.depth, lr_disc=args.lr_disc, lam_adv=args.lam_adv, lam_dann=args.lam_dann,
                    fda_beta=args.fda_beta, workers=args.workers)


# ------------------------------------------------------------------------------------------------ table


def table_rows(results, methods) -> list[dict]:
    """One row per method: mean and sample std over seeds of the three REFUGE numbers, the survey's beside."""
    rows = []
    for key in methods:
        mine = [r for r in results if r.run.config == key]
        row = {"method": METHODS[key].title, "key": key}
        for m in METRICS:
            agg = aggregate(mine, m)[0]
            row[m] = float("nan") if agg["mean"] is None else agg["mean"]
            row[f"{m}_std"] = float("nan") if agg["std"] is None else agg["std"]
            row["n_seeds"] = agg["n_seeds"]
        rows.append(row)
    return rows


def goals(rows: list[dict]) -> tuple[dict, list[str]]:
    """The issue's goals, measured: the camera gap, the share of it the best adversarial row closes, whether it
    beats input-space alignment; a gain counts only beyond the seeds' spread (unknown with one seed)."""
    by = {r["key"]: r for r in rows}
    out, lines = {}, []
    if "source_only" not in by or "oracle" not in by:
        return out, ["(the goals need the source_only and oracle rows)"]
    src, orc = by["source_only"], by["oracle"]
    gap = orc["cup_dice"] - src["cup_dice"]
    out["cup_gap"] = gap
    lines.append(f"Camera gap: the oracle's Cup Dice exceeds source only's by {gap:+.3f} (goal: >= 0.10: "
                 f"{'met' if gap >= 0.10 else 'not met'}).")

    def closed(r):
        return (r["cup_dice"] - src["cup_dice"]) / gap if gap > 0 else float("nan")

    def beyond(r, m, sign):  # gain over source only beyond the larger of the two seed stds
        spread = max(r[f"{m}_std"], src[f"{m}_std"])
        return None if np.isnan(spread) else bool(sign * (r[m] - src[m]) > spread)

    for key, r in by.items():
        if key in ("source_only", "oracle", "survey"):
            continue
        out[key] = {"gap_closed": closed(r), "cup_beyond_std": beyond(r, "cup_dice", 1),
                    "vcdr_beyond_std": beyond(r, "vcdr_mae", -1)}
    adv = [k for k in ADVERSARIAL if k in by]
    if adv:
        best = max(adv, key=lambda k: by[k]["cup_dice"])
        b, g = by[best], out[best]
        std_txt = {None: "spread unknown (one seed)", True: "beyond the seeds' std", False: "within the seeds' std"}
        lines.append(f"Best adversarial row: {b['method']}, closes {100 * g['gap_closed']:.0f} % of the Cup Dice gap "
                     f"(goal >= 50 %: {'met' if g['gap_closed'] >= 0.5 else 'not met'}; {std_txt[g['cup_beyond_std']]}"
                     f"), vCDR MAE {src['vcdr_mae']:.3f} -> {b['vcdr_mae']:.3f} "
                     f"({std_txt[g['vcdr_beyond_std']]}).")
        for label, keys in (("input-space alignment", INPUT_SPACE), ("AdaBN", ("adabn",)),
                            ("its control (camera B forwarded, no adversary)", ("target_bn",))):
            keys = [k for k in keys if k in by]
            if not keys:
                continue
            other = max(keys, key=lambda k: by[k]["cup_dice"])
            diff = b["cup_dice"] - by[other]["cup_dice"]
            spread = max(b["cup_dice_std"], by[other]["cup_dice_std"])
            if np.isnan(spread):
                verdict = "one seed, so no verdict beyond the sign"
            elif abs(diff) <= spread:
                verdict = "within the seeds' std: no difference shown"
            else:
                verdict = f"beyond the seeds' std: it {'beats' if diff > 0 else 'does not beat'} it"
            lines.append(f"Against {label} ({by[other]['method']}): Cup Dice {diff:+.3f}, {verdict}.")
            out[f"adversarial_minus_{other}"] = diff
        out["best_adversarial"] = best
    return out, lines


# ------------------------------------------------------------------------------------------------ figures


def example_figure(out: Path, methods, seed: int, path: Path, n: int = 4) -> Path | None:
    """Rows: camera B val crops; columns: image, truth, each row's prediction (disc green, cup red)."""
    from common.metrics.fundus import fundus_scores

    data = {k: np.load(out / k / f"seed{seed}" / "figure.npz") for k in methods
            if (out / k / f"seed{seed}" / "figure.npz").exists()}
    if not data:
        return None
    first = next(iter(data.values()))
    n = min(n, len(first["image"]))
    cols = ["image", "truth", *data]
    fig, axes = plt.subplots(n, len(cols), figsize=(2.1 * len(cols), 2.2 * n + 0.6), squeeze=False)
    for i in range(n):
        image, truth = first["image"][i].astype(np.float32), first["truth"][i]
        for ax, col in zip(axes[i], cols, strict=True):
            head = "" if i else {"image": "camera B image", "truth": "ground truth"}.get(col, METHODS[col].short
                                                                                           if col in METHODS else col)
            head = head + "\n" if head else ""
            if col == "image":
                show_image(ax, image, head or None)
            else:
                mask = truth if col == "truth" else data[col]["pred"][i]
                title = head
                if col != "truth":
                    s = fundus_scores(mask, truth)
                    title += f"disc {s['disc_dice']:.2f} cup {s['cup_dice']:.2f}"
                show_image(ax, image, title, masks=[mask != 255, mask == 0])
    handles = [plt.Line2D([], [], color="#00ff00", linewidth=2, label="optic disc"),
               plt.Line2D([], [], color="#ff3030", linewidth=2, label="optic cup")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.suptitle(f"Camera B validation crops (seed {seed}): each row's disc / cup contours, per-image Dice")
    return save_figure(fig, path)


def curve_figure(results, methods, seed: int, path: Path) -> Path:
    """Per epoch, one line per row: segmentation loss, discriminator loss, target Cup Dice (camera B val)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    colours = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(METHODS)}  # one colour a row, every panel
    panels = [("val_train_seg_loss", "segmentation loss (source, train)"),
              ("val_train_d_loss", "discriminator / domain loss (train)"),
              ("val_cup_dice", "target Cup Dice (camera B val)")]
    for r in results:
        if not r.ok or r.run.seed != seed or r.run.config not in methods:
            continue
        hist = r.metrics["history"]
        epochs = [h["epoch"] for h in hist]
        for ax, (key, _) in zip(axes, panels, strict=True):
            ys = [h.get(key, np.nan) for h in hist]
            if not np.all(np.isnan(ys)):
                label = METHODS[r.run.config].title + (" (applied after training)" if r.run.config == "adabn" else "")
                ax.plot(epochs, ys, marker=".", color=colours[r.run.config], label=label)
    for ax, (_, label) in zip(axes, panels, strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[1].axhline(np.log(2), color="grey", linestyle=":", linewidth=1)
    axes[1].text(1, np.log(2), " chance (ln 2)", fontsize=7, va="bottom")
    fig.suptitle(f"Training curves (seed {seed}): is the adversarial game stable?")
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------------ photographs


def photo_figure(image: np.ndarray, res: dict, path: Path, title: str) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    mask = res["mask"]
    show_image(axes[0], image, "photograph, disc crop box", boxes=[res["box"]])
    x0, y0, x1, y1 = (int(round(v)) for v in res["box"])
    y0, x0 = max(y0, 0), max(x0, 0)
    sub = (slice(y0, y1), slice(x0, x1))
    show_image(axes[1], image[sub], f"disc crop: vCDR {res['vcdr']:.2f}", masks=[mask[sub] != 255, mask[sub] == 0])
    handles = [plt.Line2D([], [], color="#00ff00", linewidth=2, label="optic disc"),
               plt.Line2D([], [], color="#ff3030", linewidth=2, label="optic cup")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(title)
    return save_figure(fig, path)


def segment_images(args, ctx) -> dict:
    from common.io.listing import list_images
    from common.io.reader import read_image

    files = list_images(args.img)
    path = args.checkpoint or demo_path()
    if args.checkpoint is None and not path.exists():
        raise InputError("no cached demo model yet", path=path,
                         hint="run `python 02_TransferLearning/domain_adaptation.py --quick` once, or pass "
                              "--checkpoint")
    seg, recipe = load_model(path, ctx.device)
    log(f"segmenting {len(files)} photograph(s) with {path} ({recipe['method']}, {recipe['crop']}-px disc crops of "
        f"{recipe['size']}-px images)")
    rows, failed = [], []
    for f in files:
        try:
            image, _ = read_image(f)
        except InputError as exc:
            failed.append(f"{f}: {exc.message}")
            continue
        image = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]
        res = segment_photograph(seg, recipe, image, ctx.device)
        stem = f.stem
        save_image(ctx.out / f"{stem}_mask.png", res["mask"])
        photo_figure(image, res, ctx.out / f"{stem}_overlay.png", f"{f.name}: disc / cup ({recipe['method']})")
        rows.append({"file": str(f), "vcdr": round(res["vcdr"], 4), "disc_found": res["disc_found"],
                     "disc_pixels": int((res["mask"] != 255).sum()), "cup_pixels": int((res["mask"] == 0).sum()),
                     "mask": f"{stem}_mask.png", "overlay": f"{stem}_overlay.png"})
        log(f"{f}: vCDR {res['vcdr']:.3f}" + ("" if res["disc_found"] else " (no disc found)"))
    if rows:
        save_csv(ctx.out / "vcdr.csv", rows)
    if failed:
        raise InputError(f"{len(failed)} file(s) could not be read: " + "; ".join(failed))
    summary = {"checkpoint": str(path), "images": rows}
    save_json(ctx.out / "metrics.json", summary)
    return summary


# ------------------------------------------------------------------------------------------------ main


def run_table(args, cfg: DAConfig, ctx) -> dict:
    t0 = time.perf_counter()
    data = prepare_data(cfg, ctx.out)
    runs = grid(list(args.methods), seeds=range(args.seed, args.seed + args.seeds),
                params={"cfg": cfg, "data": str(data)})
    runs = [replace(r, params={**r.params, "method": r.config}) for r in runs]
    results = sweep(runs, functools.partial(run_method, str(ctx.device), args.resume), ctx.out, jobs=args.jobs,
                    threads=args.threads, resume=args.resume,
                    describe_metrics=lambda m: ", ".join(f"{k} {m[k]:.3f}" for k in METRICS))
    failed = [f"{r.run.label}: {r.error}" for r in results if not r.ok]
    rows = table_rows(results, args.methods)
    rows.append({"method": "survey authors' demo (REFUGE Canon target, CFEA-style U-Net + discriminator)",
                 "key": "survey", **SURVEY, "n_seeds": ""})
    measured, lines = goals(rows)
    figures = [example_figure(ctx.out, args.methods, args.seed, ctx.out / "examples.png"),
               curve_figure(results, args.methods, args.seed, ctx.out / "curves.png")]
    cols = ["method", "disc_dice", "disc_dice_std", "cup_dice", "cup_dice_std", "vcdr_mae", "vcdr_mae_std", "n_seeds"]
    md = markdown_table(rows, cols, name="table")
    seconds = time.perf_counter() - t0
    spread = f"mean and sample std over {args.seeds} seeds" if args.seeds > 1 else "one seed, so no std (n/a)"
    write_report(ctx.out, f"Disc / cup segmentation across fundus cameras, {args.dataset}", [
        f"Command: `{args.command}` ({seconds / 60:.1f} min, {args.jobs} run(s) at a time). Source: camera A "
        f"({cfg.n_source or 'all'} images with masks); target: camera B ({cfg.n_target or 'all'} images, masks "
        f"unused but by the oracle); scored on {cfg.n_val or 'all'} other camera B images; {spread}. U-Net width "
        f"{cfg.width}, depth {cfg.depth}, {cfg.crop}-px disc crops of {cfg.size}-px images, {cfg.epochs} epochs, "
        "last epoch kept. The survey row is the survey authors' REFUGE number (other data, other network).",
        md, *lines, *[f"![{f.stem}]({f.name})" for f in figures if f]])
    if is_demo_recipe(cfg) and DEMO_METHOD in args.methods and args.dataset == "phantom":
        model_pt = ctx.out / DEMO_METHOD / f"seed{args.seed}" / "model.pt"
        if args.seed == 0 and model_pt.exists():
            log(f"demo model cached: {cache_demo(model_pt)} (used by --img without --checkpoint)")
    summary = {"rows": rows, "goals": measured, "seconds": round(seconds, 1), "command": args.command,
               "failed": failed}
    save_json(ctx.out / "metrics.json", summary)
    log(md + "\n".join(lines) + f"\ntook {seconds:.0f} s; wrote {ctx.out}")
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: " + "; ".join(failed))
    return summary


def main(args):
    cfg = da_config(args)
    if args.img is None:
        check_config(cfg)
        if args.dataset == "refuge" and args.data_root is None:
            raise InputError("--dataset refuge needs --data-root", hint="pass the folder holding the REFUGE subsets")
    ctx = setup_run(args)
    threads = torch.get_num_threads()
    if args.threads and args.jobs == 1:
        torch.set_num_threads(args.threads)
    try:
        with ctx.removing_out_on_error():
            if args.img is not None:
                return segment_images(args, ctx)
            return run_table(args, cfg, ctx)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    cli_main(main, get_args())
