"""Weakly supervised LV segmentation with pseudo labels: region growing / k-means -> ENet -> DenseCRF / graph search.

The survey's "representative framework" of weakly supervised segmentation (Zhang et al. 2019, "A Survey on Deep
Learning of Small Sample in Biomedical Image Analysis", https://arxiv.org/abs/1908.00473): weak labels (eroded masks,
random points, centroids or boxes; Kervadec et al. 2019, https://arxiv.org/abs/1805.04628) grow into pseudo masks
(region growing from the seeds' mean ± k std, or k-means), an ENet (Paszke et al. 2016,
https://arxiv.org/abs/1606.02147) learns them, and its softmax is refined by DenseCRF (Krähenbühl & Koltun 2011,
https://arxiv.org/abs/1210.5644) and by graph methods (an optimal closed path in polar coordinates around the LV
centre, GrabCut). The survey authors' ACDC numbers: ENet 0.6850, + DenseCRF 0.7146 (3D Dice of the LV).
Every stage is scored by 3D Dice of the LV on validation volumes; ENet's epoch and the CRF / graph parameters are
chosen on other ("tune") volumes. Runs on the built-in cardiac phantom, or on ACDC with --dataset acdc --data-root.

Usage: python 01_WeaklySupervised/train_pseudolabel.py --weak erosion --quick
       python 01_WeaklySupervised/train_pseudolabel.py --table --quick
"""

import functools
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.cli import add_common_args, comma_list, float_range, int_at_least, make_parser, parse_args  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.metrics import dice  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import log, setup_run  # noqa: E402
from common.sweep import Run, aggregate, grid, mean_std, sweep  # noqa: E402
from common.tasks.lv_frameworks import size_rows  # noqa: E402
from common.tasks.lv_pseudolabel import (  # noqa: E402
    FULL,
    QUICK,
    STAGES,
    SURVEY,
    TARGETS,
    VOLUMES,
    PipelineConfig,
    check_inputs,
    run_pipeline,
    stage_name,
)
from common.tasks.lv_weak_seg import WEAK_KINDS  # noqa: E402
from common.viz import MASK_COLOURS, plt, save_figure, show_image  # noqa: E402
from common.weak.crf import CRFParams  # noqa: E402
from common.weak.graph import GRAPH_METHODS, PolarParams  # noqa: E402
from common.weak.pseudo import PSEUDO_METHODS, PseudoConfig  # noqa: E402

DATASETS = ("phantom", "acdc")



def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "train_pseudolabel", datasets=DATASETS, epochs=FULL["epochs"], batch_size=1, lr=FULL["lr"])
    p.add_argument("--weak", default="erosion", choices=sorted(WEAK_KINDS), help="weak label drawn from the masks")
    p.add_argument("--target", default="pseudo", choices=TARGETS,
                   help="what ENet learns: the pseudo masks, or the true masks (full supervision, the reference)")
    p.add_argument("--pseudo", default="region", choices=sorted(PSEUDO_METHODS), help="weak label -> pseudo mask")
    p.add_argument("--k", type=float_range(0), default=3.0, help="region growing: seeds' mean ± k std (survey: 3)")
    p.add_argument("--clusters", type=int_at_least(2), default=3, help="k-means: clusters")
    p.add_argument("--position-weight", type=float_range(0), default=0.0,
                   help="k-means: weight of the pixel position (in image sides) beside the intensity")
    p.add_argument("--ignore-band", type=int_at_least(0), default=0,
                   help="pixels either side of a pseudo mask's border left out of ENet's loss (0: none)")
    p.add_argument("--stages", type=comma_list(STAGES), default=STAGES, help="comma list of " + ", ".join(STAGES))
    p.add_argument("--graph", type=comma_list(tuple(GRAPH_METHODS)), default=tuple(GRAPH_METHODS),
                   help="graph methods, comma list of " + ", ".join(GRAPH_METHODS))
    crf = CRFParams()
    p.add_argument("--crf-sxy", type=float_range(0, low_open=True), default=crf.sxy,
                   help="DenseCRF bilateral kernel's spatial std, pixels (survey: 3)")
    p.add_argument("--crf-schan", type=float_range(0, low_open=True), default=crf.schan,
                   help="DenseCRF bilateral kernel's intensity std, grey levels of 0..255 (survey: 10)")
    p.add_argument("--crf-compat", type=float_range(0), default=crf.compat, help="DenseCRF bilateral kernel's weight")
    p.add_argument("--crf-gauss-compat", type=float_range(0), default=crf.gauss_compat,
                   help="DenseCRF Gaussian (smoothness) kernel's weight, sxy 3 px (0: off)")
    p.add_argument("--crf-iters", type=int_at_least(1), default=crf.iters, help="DenseCRF mean-field iterations")
    polar = PolarParams()
    p.add_argument("--polar-edge-weight", type=float_range(0), default=polar.edge_weight,
                   help="polar graph search: weight of the image edge beside ENet's probability")
    p.add_argument("--polar-max-jump", type=int_at_least(1), default=polar.max_jump,
                   help="polar graph search: largest radius change between neighbouring rays, in 0.5-px samples")
    p.add_argument("--no-tune", action="store_true",
                   help="use the --crf-* / --polar-* values as given; by default they are chosen on the tune volumes "
                        "(the survey's DenseCRF values are scored too)")
    p.add_argument("--label", type=int, default=3, help="class to segment (ACDC: 3 = LV cavity)")
    p.add_argument("--size", type=int, default=FULL["size"], help="image side in pixels (multiple of 8)")
    p.add_argument("--n-train", type=int_at_least(0), default=None,
                   help="training volumes (phantom: 8 quick, 40 full; cap for ACDC, default 0 = all)")
    p.add_argument("--n-val", type=int_at_least(0), default=None,
                   help="scored validation volumes (phantom: 4 quick, 10 full; ACDC: cap on the validation split's "
                        "volumes but the tune ones, default 0 = all)")
    p.add_argument("--n-tune", type=int_at_least(1), default=FULL["n_tune"],
                   help="validation volumes ENet's epoch and the CRF / graph parameters are chosen on (not scored)")
    p.add_argument("--threads", type=int_at_least(0), default=FULL["threads"],
                   help="torch CPU threads per run (0: torch's default, or cores / jobs with --jobs > 1)")
    p.add_argument("--table", action="store_true",
                   help="the table: every stage for each --weaks label over --seeds seeds, and full supervision")
    p.add_argument("--weaks", type=comma_list(tuple(WEAK_KINDS)), default=None,
                   help="with --table: weak labels (default: erosion,random with --quick, all four without)")
    p.add_argument("--seeds", type=int_at_least(1), default=None, help="seeds per table row (default 1 quick, 3 full)")
    p.add_argument("--compare-sizeloss", type=Path, default=None, metavar="TABLE_JSON",
                   help="with --table: the table.json of train_sizeloss.py --table on the same volumes; its best "
                        "size-constrained row for each weak label joins the table")
    p.add_argument("--jobs", type=int_at_least(1), default=None,
                   help="table runs at once in worker processes (default: with --quick every run, at most two a CPU "
                        "core, one thread each; else 1)")
    args = parse_args(p, argv, quick=QUICK)
    for key, value in VOLUMES["quick" if args.quick else "full"].items():
        if getattr(args, key) is None:  # ACDC: every patient of the split unless capped
            setattr(args, key, 0 if args.dataset == "acdc" else value)
    for key in ("n_train", "n_val"):
        if args.dataset == "phantom" and getattr(args, key) < 1:
            p.error(f"argument --{key.replace('_', '-')}: the phantom needs at least 1 volume, got "
                    f"{getattr(args, key)} (0 = all is for --dataset acdc)")
    table_only = [f"--{k.replace('_', '-')}" for k in ("weaks", "seeds", "jobs", "compare_sizeloss")
                  if getattr(args, k) is not None]
    if table_only and not args.table:
        p.error(f"argument {table_only[0]}: only with --table (one run trains --weak / --target with --seed)")
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.weaks = args.weaks or (("erosion", "random") if args.quick else tuple(WEAK_KINDS))
    if args.jobs is None and args.quick and args.table:
        # Every run at once, one thread each (up to two a core): 3 runs on 2 cores take 1.5 run-times, not 2,
        # and single-threaded runs time-share without OpenMP spinning. A run's result does not depend on it.
        args.jobs = min(2 * (os.cpu_count() or 1), (len(args.weaks) + 1) * args.seeds)
    args.jobs = args.jobs or 1
    shown = argv if argv is not None else sys.argv[1:]
    args.command = "python 01_WeaklySupervised/train_pseudolabel.py " + " ".join(shlex.quote(a) for a in shown)
    return args


def pipeline_config(args) -> PipelineConfig:
    """The script's flags as the typed configuration the library takes (once, here)."""
    return PipelineConfig(
        dataset=args.dataset, data_root=None if args.data_root is None else str(args.data_root), size=args.size,
        n_train=args.n_train, n_val=args.n_val, n_tune=args.n_tune, label=args.label, data_seed=args.seed,
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, ignore_band=args.ignore_band,
        pseudo=PseudoConfig(args.pseudo, args.k, args.clusters, args.position_weight),
        crf=CRFParams(sxy=args.crf_sxy, schan=args.crf_schan, compat=args.crf_compat,
                      gauss_compat=args.crf_gauss_compat, iters=args.crf_iters),
        polar=PolarParams(edge_weight=args.polar_edge_weight, max_jump=args.polar_max_jump),
        graph=tuple(args.graph), stages=tuple(args.stages), choose=not args.no_tune, workers=args.workers)


# ------------------------------------------------------------------------------------------------ figure

PANELS = [("truth", "ground truth"), ("weak", "weak label"), ("mask_pseudo", "pseudo mask"), ("prob", "ENet P(LV)"),
          ("mask_enet", "ENet (p > 0.5)"), ("mask_crf", "after DenseCRF (tuned)"), ("mask_polar", "after graph search"),
          ("mask_grabcut", "after GrabCut")]


def stage_figure(npz: Path, path: Path, title: str) -> Path | None:
    """The survey's figure: image, truth, weak label, pseudo mask, ENet probability, after CRF, after graph methods;
    one row per validation slice, each stage's mask (red) over the truth (green), its slice Dice in the title."""
    if not npz.exists():
        return None
    data = np.load(npz)
    panels = [("image", "image")] + [(k, t) for k, t in PANELS if k in data]
    n = len(data["slices"])
    fig, axes = plt.subplots(n, len(panels), figsize=(2.3 * len(panels), 2.4 * n + 0.6), squeeze=False)
    for row in range(n):
        image, truth = data["image"][row], data["truth"][row]
        for ax, (key, name) in zip(axes[row], panels, strict=True):
            head = name + "\n" if row == 0 else ""  # stage names over the first row only
            if key == "image":
                show_image(ax, image, f"{head}slice {data['slices'][row]}")
            elif key == "truth":
                show_image(ax, image, head, masks=[truth])
            elif key == "weak":
                weak = data["weak"][row]
                shown = (weak == 1) if (weak == 1).any() else (weak == 255)  # seeds, or the box of a box label
                show_image(ax, image, head, masks=[np.zeros_like(truth), shown])
            elif key == "prob":
                show_image(ax, image, head, heatmap=data["prob"][row], masks=[truth], colorbar=True)
                fig.axes[-1].set_title("P(LV)", fontsize=7)  # the colour bar just drawn
            else:
                mask = data[key][row]
                show_image(ax, image, f"{head}Dice {dice(mask, truth):.2f}", masks=[truth, mask])
    handles = [plt.Line2D([], [], color=MASK_COLOURS[0], linewidth=2, label="truth (LV)"),
               plt.Line2D([], [], color=MASK_COLOURS[1], linewidth=2, label="weak label / stage output")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.subplots_adjust(wspace=0.25)
    fig.suptitle(title)
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------------ table


def table_runs(args, cfg: PipelineConfig) -> list[Run]:
    """Seed-major runs: the pipeline for each weak label, then full supervision (ENet on the true masks)."""
    configs = {f"{cfg.pseudo.method}_{w}": {"weak": w, "target": "pseudo"} for w in args.weaks}
    configs["fs"] = {"weak": args.weaks[0], "target": "mask"}
    return grid(configs, seeds=range(args.seed, args.seed + args.seeds), params={"cfg": cfg})


def table_rows(results, cfg: PipelineConfig) -> list[dict]:
    """One row per (configuration, stage): mean ± sample std of the 3D Dice over seeds, the survey's number beside."""
    rows = []
    for config in dict.fromkeys(r.run.config for r in results):
        mine = [r for r in results if r.run.config == config]
        done = [r for r in mine if r.ok]
        if not done:
            continue
        weak = "full mask" if config == "fs" else mine[0].run.params["weak"]
        for stage in done[0].metrics["dice3d"]:
            row = aggregate(mine, f"dice3d.{stage}")[0]
            survey = SURVEY.get(stage) if weak == "erosion" and cfg.pseudo.method == "region" else None
            nan = float("nan")  # shown as n/a: no finished run, or one seed and so no spread
            rows.append({"stage": stage_name(stage, cfg.pseudo), "weak": weak,
                         "mean": nan if row["mean"] is None else row["mean"],
                         "std": nan if row["std"] is None else row["std"], "n_seeds": row["n_seeds"],
                         "survey ACDC": "" if survey is None else f"{survey:.4f}", "3D Dice": mean_std(row),
                         "key": stage, "config": config, "values": row["values"]})
    return rows


def paired_gain(results, config: str, stage: str, base: str = "enet") -> dict:
    """Per-seed gain of ``stage`` over ``base`` within the same runs: mean, sample std, and whether it exceeds it."""
    gains = np.array([r.metrics["dice3d"][stage] - r.metrics["dice3d"][base] for r in results
                      if r.ok and r.run.config == config and stage in r.metrics["dice3d"]])
    if not len(gains):
        return {"mean": None, "std": None, "n_seeds": 0, "exceeds": None}
    std = float(gains.std(ddof=1)) if len(gains) > 1 else None
    return {"mean": float(gains.mean()), "std": std, "n_seeds": len(gains),
            "exceeds": None if std is None else bool(abs(gains.mean()) > std)}


def run_table(args, cfg: PipelineConfig, device) -> dict:
    t0 = time.perf_counter()
    runs = table_runs(args, cfg)
    results = sweep(runs, functools.partial(run_pipeline, str(device), args.resume), args.out, jobs=args.jobs,
                    threads=args.threads, resume=args.resume,
                    describe_metrics=lambda m: ", ".join(f"{k} {v:.3f}" for k, v in m["dice3d"].items()))
    rows = table_rows(results, cfg)
    compared = size_rows(args.compare_sizeloss, cfg, args.weaks) if args.compare_sizeloss else []
    fs = next((r["mean"] for r in rows if r["config"] == "fs" and r["key"] == "enet"), float("nan"))  # nan: failed
    goals = {}
    for config in dict.fromkeys(r.run.config for r in results):
        if config == "fs":
            continue
        mine = {r["key"]: r["mean"] for r in rows if r["config"] == config}  # nan where every seed failed
        goals[config] = {"crf_gain": paired_gain(results, config, "crf"),
                         "crf_survey_gain": paired_gain(results, config, "crf_survey"),
                         "polar_gain": paired_gain(results, config, "polar"),
                         **{f"{k}_over_fs": v / fs if fs > 0 else float("nan") for k, v in mine.items()}}
    seconds = time.perf_counter() - t0
    failed = [{"run": str(r.out_dir), "error": r.error} for r in results if not r.ok]
    figures = [stage_figure(args.out / f"{cfg.pseudo.method}_{w}" / f"seed{args.seed}" / "figure.npz",
                            args.out / f"stages_{w}.png", f"{cfg.pseudo.method} pseudo masks from {w} labels -> ENet "
                            f"-> post-processing (validation volumes, seed {args.seed})") for w in args.weaks]
    cols = ["stage", "weak", "mean", "std", "n_seeds", "survey ACDC"]  # JSON rows of tables.json: these keys
    md = markdown_table(rows + compared, cols, name="table")
    spread = f"mean ± sample std over {args.seeds} seeds" if args.seeds > 1 else "one seed, so no spread"
    lines = []
    for config, g in goals.items():
        gain = g["crf_gain"]
        if gain["mean"] is not None:
            within = "exceeds" if gain["exceeds"] else "within"
            spread_txt = "" if gain["std"] is None else f" ± {gain['std']:.3f} ({within} the seeds' spread)"
            ratio = {k: g.get(f"{k}_over_fs", float("nan")) for k in ("enet", "crf", "polar")}
            lines.append(f"{config}: DenseCRF (chosen on tune volumes) - ENet {gain['mean']:+.3f}{spread_txt}; "
                         f"over full supervision: ENet {ratio['enet']:.2f}, + DenseCRF {ratio['crf']:.2f}, "
                         f"+ graph search {ratio['polar']:.2f}.")
    for row in compared:
        pipeline = {r["key"]: r["mean"] for r in rows if r["weak"] == row["weak"] and r["config"] != "fs"}
        if pipeline:
            stage, best = max(pipeline.items(), key=lambda kv: kv[1])
            lines.append(f"{row['weak']} labels: the best pseudo-label stage ({stage_name(stage, cfg.pseudo)}) "
                         f"{best:.3f} vs the best size-constrained ENet ({row['variant']}) {row['mean']:.3f}: the "
                         f"{'pseudo-label pipeline' if best > row['mean'] else 'size loss'} wins here.")
    write_report(args.out, f"Pseudo labels -> ENet -> DenseCRF / graph search, {args.dataset} ({args.size} px)", [
        f"Command: `{args.command}` ({seconds / 60:.1f} min, {args.jobs} run(s) at a time). 3D Dice of the LV per "
        f"scored validation volume ({cfg.n_val or 'all'} volumes; {spread}); ENet's epoch "
        f"and the DenseCRF / graph parameters were chosen on {cfg.n_tune} other validation volumes. Training: "
        f"{cfg.n_train or 'all'} volumes, {cfg.epochs} epochs, lr {cfg.lr:g}. The survey column is the survey "
        "authors' ACDC demo (region growing k = 3 on eroded seeds -> ENet, then DenseCRF sxy 3, schan 10).",
        md, *lines, *[f"![stages {w}]({f.name})" for w, f in zip(args.weaks, figures, strict=True) if f]])
    keys = ("stage", "weak", "mean", "std", "n_seeds", "3D Dice", "config", "key", "values")
    table = {"rows": [{k: r[k] for k in keys} for r in rows], "sizeloss_rows": compared, "goals": goals,
             "fs_dice3d": fs, "failed": failed,
             "seconds": round(seconds, 1), "command": args.command, "quick": args.quick, "jobs": args.jobs,
             "chosen": {f"{r.run.config}/seed{r.run.seed}": r.metrics.get("chosen", {}).get("crf") for r in results
                        if r.ok}}
    save_json(args.out / "table.json", table)
    log(md + "\n".join(lines) + f"\ntable took {seconds:.0f} s; wrote {args.out}")
    if failed:
        raise RuntimeError(f"{len(failed)} table run(s) failed: " + "; ".join(f"{f['run']} ({f['error']})"
                                                                            for f in failed))
    return table


# ------------------------------------------------------------------------------------------------ main


def main(args):
    if args.size % 8 or args.size < 32:
        raise InputError(f"--size {args.size} is not usable",
                         hint="use a multiple of 8, at least 32 (ENet downsamples by 8)")
    if args.label not in (1, 2, 3):
        raise InputError(f"--label {args.label} is not a structure of the cardiac labels",
                         hint="ACDC and the phantom: 1 = RV, 2 = myocardium, 3 = LV cavity")
    if args.dataset == "acdc" and args.data_root is None:
        raise InputError("--dataset acdc needs --data-root", hint="pass the ACDC folder that holds training/")
    cfg = pipeline_config(args)
    # Bad data (no seed in a volume, image / mask sizes that differ) is found before anything is written.
    check_inputs(cfg, (args.weaks if args.table else (args.weak,)), args.seed)
    if args.table and args.compare_sizeloss:
        size_rows(args.compare_sizeloss, cfg, args.weaks)  # missing, not a size table, or other volumes: say so now
    ctx = setup_run(args)
    threads = torch.get_num_threads()
    if ctx.device.type == "cpu" and args.threads and not (args.table and args.jobs > 1):
        torch.set_num_threads(args.threads)
    try:
        if args.table:
            table = run_table(args, cfg, ctx.device)
            summary = {k: table[k] for k in ("rows", "goals", "fs_dice3d", "seconds", "command")}
            save_json(ctx.out / "metrics.json", summary)
            return summary
        return single_run(args, cfg, ctx)
    finally:  # main() is also called in-process (tests, notebooks): leave torch's thread count as it was
        torch.set_num_threads(threads)


def single_run(args, cfg: PipelineConfig, ctx) -> dict:
    config = "fs" if args.target == "mask" else f"{cfg.pseudo.method}_{args.weak}"
    run = Run(config, args.seed, None, {"cfg": cfg, "weak": args.weak, "target": args.target})
    summary = run_pipeline(str(ctx.device), args.resume, run, ctx.out)
    save_json(ctx.out / "metrics.json", summary)
    figure = stage_figure(ctx.out / "figure.npz", ctx.out / "stages.png",
                          f"{config} (seed {args.seed}), validation volumes")
    rows = [{"stage": stage_name(k, cfg.pseudo), "3D Dice": v,
             "2D Dice": summary["dice2d"][k]} for k, v in summary["dice3d"].items()]
    md = markdown_table(rows, ["stage", "3D Dice", "2D Dice"])
    write_report(ctx.out, f"{config} on {args.dataset} ({args.size} px)", [
        f"Command: `{args.command}`. Validation volumes: {summary['n_val_volumes']}; chosen on the tune volumes: "
        f"{ {k: v for k, v in summary.get('chosen', {}).items() if not k.endswith('_grid')} }.", md,
        *([f"![stages]({figure.name})"] if figure else [])])
    log(md)
    return {k: v for k, v in summary.items() if k != "history" and k != "chosen"} | {
        "chosen": {k: v for k, v in summary.get("chosen", {}).items() if not k.endswith("_grid")}}


if __name__ == "__main__":
    cli_main(main, get_args())
