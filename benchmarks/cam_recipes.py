"""Does the demo classifier's recipe point its CAMs at the lesion whatever the training seed? A sweep over seeds.

The interpretability goal is a block-4 CAM pointing game >= 0.8 on the bone phantom's abnormal images
(Zhang et al. 2016, https://arxiv.org/abs/1608.00507; tolerance 1/16 of the side). This trains the demo DenseNet
(``common.tasks.bone_demo.DEMO``, v8: random 128-px crops of the 160-px images) and the recipe it replaced (v7, whole
images) over several seeds, through the one sweep runner (``common.sweep``: parallel jobs, resume, seed-major), and
scores every model the same way: validation AUROC, and the pointing game per lesion type of CAM (block 4, single
view and flip-averaged) and Layer-CAM (blocks 2-4). ``restart_crop128`` is the demo's warm restart
(``common.tasks.bone_demo.restart_config``) of the same seed's ``crop128`` run. A recipe's training cost is a
measured time per training step times its number of steps (same device, one process). The committed study is
benchmarks/results/cam_recipes_crop/; the history of the recipe is docs/demo_model_history.md.

Usage: python benchmarks/cam_recipes.py --quick                                  (demo, crop128 x 1 seed, tiny, CPU)
       python benchmarks/cam_recipes.py --recipes demo,crop128 --seeds 5 --jobs 2 --threads 1
       python benchmarks/cam_recipes.py --recipes crop128,restart_crop128 --seeds 1 --jobs 1 --threads 1
"""

import csv
import functools
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common.cli import int_at_least, make_parser, parse_args  # noqa: E402
from common.errors import cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import choose_device  # noqa: E402
from common.sweep import RUN, Run, aggregate, compare, mean_std, sweep  # noqa: E402
from common.tasks.bone_classifier import ClassifierConfig  # noqa: E402


@dataclass(frozen=True)
class Recipe:
    about: str
    overrides: dict
    restart_from: str | None = None  # a warm restart of that recipe's run of the same seed (in the same --out)


RECIPES = {
    "demo": Recipe("v7, the demo before v8: whole 160-px images", {"train_crop": None}),
    "crop128": Recipe("v8, the demo now (DEMO): random 128-px crops of the 160-px images", {}),
    "restart_crop128": Recipe("the demo's warm restart of crop128's run: 6 epochs on the next seed's images, "
                              "sharpness from 1", {}, restart_from="crop128"),
}
LESIONS = ("fracture", "lytic", "hardware")
METHODS = ("cam_b4", "cam_b4_flips", "layercam_b4", "layercam_b3", "layercam_b2")
QUICK = dict(n_train=64, n_val=32, epochs=1, size=64)  # a smoke run of the machinery, not a measurement


def recipe_config(name: str, seed: int, quick: bool) -> ClassifierConfig:
    """A recipe's training run; a restart's ``weights`` are relative to the sweep's folder (``<source>/seed<k>``)."""
    from common.tasks.bone_demo import DEMO, restart_config

    recipe = RECIPES[name]
    if recipe.restart_from is not None:
        cfg = restart_config(Path(recipe.restart_from) / f"seed{seed}", seed)
    else:
        cfg = replace(DEMO, **recipe.overrides, seed=seed)
    return replace(cfg, resume=True, **(QUICK if quick else {}))  # resume: a killed run continues from last.pt


def score_model(model, size: int, n: int, device) -> dict:
    """Pointing game of CAM at block 4 (single view and averaged over flips) and Layer-CAM at blocks 2-4, per
    lesion type and their mean ("all"); "detected": the share of those abnormal images called abnormal."""
    from common.cam.scoring import pointing_tolerance, score_dataset
    from common.data.phantoms import BoneXrayPhantom
    from common.models import block_layers

    layers = {k: block_layers(model)[k] for k in (2, 3, 4)}
    out: dict = {}
    tol = pointing_tolerance(size)
    for lesion in LESIONS:
        data = BoneXrayPhantom(n=n, size=size, seed=300_000, abnormal_fraction=1.0, lesion_types=(lesion,))
        res = score_dataset(model, data, ("cam", "layercam"), layers, device, target=1, tolerance=tol, keep=0)
        for row in res["rows"]:
            out.setdefault(f"{row['method']}_b{row['block']}", {})[lesion] = row["pointing_game"]
        out.setdefault("detected", {})[lesion] = float((res["probs"] > 0.5).mean())
        flips = score_dataset(model, data, ("cam",), {4: layers[4]}, device, target=1, tolerance=tol, keep=0,
                              tta="flips")
        out.setdefault("cam_b4_flips", {})[lesion] = flips["rows"][0]["pointing_game"]
    for scores in out.values():
        scores["all"] = sum(scores[t] for t in LESIONS) / len(LESIONS)
    return out


def train_and_score(device: str, run, out_dir: Path) -> dict:
    """The sweep's run function: train one recipe / seed (a killed run resumes) and score its CAMs."""
    from common.tasks.bone_classifier import train_classifier

    cfg = ClassifierConfig(**run.params["classifier"])
    if cfg.weights is not None:  # a restart: the source run's best.pt in this sweep's folder
        cfg = replace(cfg, weights=str(out_dir.parents[1] / cfg.weights))
    dev = torch.device(device)
    t0 = time.perf_counter()
    model, result = train_classifier(cfg, dev, out_dir)
    seconds = time.perf_counter() - t0
    scores = score_model(model.eval(), cfg.size, run.params["n_eval"], dev)
    (out_dir / "last.pt").unlink(missing_ok=True)  # best.pt (the scored weights) stays, for a restart or a look
    return {"recipe": run.config, "seed": run.seed, "auroc": result["evaluation"]["image"]["auroc"],
            "kappa": result["evaluation"]["image"]["kappa"], "best_epoch": result["best_epoch"],
            "train_seconds": round(seconds, 1), "scores": scores}


def training_steps(cfg: ClassifierConfig) -> int:
    """Optimizer steps of a training (one process): batches per epoch x epochs."""
    return math.ceil(cfg.n_train / cfg.batch_size) * cfg.epochs


def step_time(cfg: ClassifierConfig, device, steps: int = 6) -> float:
    """Seconds per training step (at the recipe's batch size) of its network at the side it trains on (its training
    crop, if any), in this process."""
    from common.models import build_densenet
    from common.tasks.bone_classifier import train_crop_side

    model = build_densenet(cfg.arch, 1, cam_stride=cfg.cam_stride, pooling=cfg.pooling, lse_r=cfg.lse_r).to(device)
    side = train_crop_side(cfg) or cfg.size
    x = torch.randn(cfg.batch_size, 3, side, side, device=device)
    if cfg.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters())
    y = torch.rand(cfg.batch_size, device=device)
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def learnt_at(run_dir: Path, level: float = 0.8) -> str:
    """First epoch whose validation AUROC exceeds ``level`` (the model left the metal-only plateau, ~0.7), "-" if
    none did, "?" if the run kept no per-epoch curve."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return "?"
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if float(row["val_auroc"]) > level:
                return row["epoch"]
    return "-"


def get_args(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--recipes", default="demo,crop128", help=f"comma list of {', '.join(RECIPES)}")
    p.add_argument("--seeds", type=int_at_least(1), default=5, help="training seeds per recipe (0, 1, ...)")
    p.add_argument("--n-eval", type=int_at_least(1), default=60, help="abnormal images per lesion type to score")
    p.add_argument("--jobs", type=int_at_least(1), default=1, help="trainings at once, in separate processes")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int_at_least(0), default=0, help="CPU threads per job (0: cores / jobs)")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder; a finished run there is reused (default: runs/cam_recipes, or "
                        "runs/cam_recipes_quick with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (1 seed, 1 epoch at 64 px, 4 images a lesion "
                   "type scored)")
    args = parse_args(p, argv, quick={"seeds": 1, "n_eval": 4})
    shown = argv if argv is not None else sys.argv[1:]
    args.command = "python benchmarks/cam_recipes.py " + " ".join(shlex.quote(a) for a in shown)
    args.recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown or not args.recipes:
        p.error(f"argument --recipes: unknown or no recipe(s) {unknown}; choose from {', '.join(RECIPES)}")
    if args.out is None:  # never into a committed results folder, nor a smoke run's scores among measured ones
        args.out = Path("runs/cam_recipes_quick" if args.quick else "runs/cam_recipes")
    for r in args.recipes:  # a restart needs its source run's weights: kept in --out, or trained in this sweep
        src = RECIPES[r].restart_from
        runs = [args.out / str(src) / f"seed{s}" for s in range(args.seeds)]
        # a finished run is reused, not retrained: without its weights it cannot be continued
        missing = [d for d in runs if src is not None and not (d / "best.pt").exists()
                   and (src not in args.recipes or (d / RUN).exists())]
        if missing:
            p.error(f"recipe {r} continues {src}'s runs, and {missing[0] / 'best.pt'} is missing: "
                    + (f"delete {missing[0]} to train it again" if src in args.recipes else f"add {src} to --recipes"))
    return args


def main(args) -> dict:
    device = choose_device(args.device)
    t0 = time.perf_counter()
    configs = {r: recipe_config(r, 0, args.quick) for r in args.recipes}
    command = args.command.strip()
    print(f"{len(args.recipes)} recipes x {args.seeds} seeds on {device}; results under {args.out}", flush=True)

    def runs_of(names):  # seed-major; a run is its whole training config (resume refuses other settings)
        return [Run(name, seed, params={"classifier": asdict(recipe_config(name, seed, args.quick)),
                                        "n_eval": args.n_eval}) for seed in range(args.seeds) for name in names]

    fn = functools.partial(train_and_score, str(device))
    line = lambda m: f"AUROC {m['auroc']:.3f}, CAM b4 pointing game {m['scores']['cam_b4']['all']:.3f}"  # noqa: E731
    # a restart continues its source run, so restarts train in a second sweep, after every source run
    first = [r for r in args.recipes if RECIPES[r].restart_from is None]
    results = []
    for names in (first, [r for r in args.recipes if r not in first]):
        if names:
            results += sweep(runs_of(names), fn, args.out, jobs=args.jobs, threads=args.threads, resume=True,
                             describe_metrics=line)
    # training cost: measured time a step x number of steps (recipes differ in crop, images and epochs)
    costs = {r: step_time(cfg, device) * training_steps(cfg) for r, cfg in configs.items()}
    metric = {"AUROC": "auroc", **{f"PG {m}": f"scores.{m}.all" for m in METHODS},
              **{f"CAM b4 {t}": f"scores.cam_b4.{t}" for t in LESIONS}}
    agg = {name: {row["config"]: row for row in aggregate(results, key)} for name, key in metric.items()}
    base = args.recipes[0]
    rows = []
    for r in args.recipes:
        pg = compare(agg["PG cam_b4"][r], agg["PG cam_b4"][base])
        verdict = "" if r == base or pg["gain"] is None else f"{pg['gain']:+.3f} " + (
            "(one seed: spread unknown)" if pg["exceeds"] is None else
            f"({'exceeds' if pg['exceeds'] else 'within'} the seeds' spread {pg['spread']:.3f})")
        seeds = agg["AUROC"][r]["seeds"]
        rows.append({"recipe": r, "what": RECIPES[r].about, "seeds": len(seeds),
                     "training cost": f"{costs[r] / costs[base]:.2f}x",
                     "AUROC > 0.8 at epoch": " / ".join(learnt_at(args.out / r / f"seed{s}") for s in seeds),
                     **{name: mean_std(agg[name][r]) for name in metric}, f"PG cam_b4 vs {base}": verdict})
    failed = [{"run": str(x.out_dir), "error": x.error} for x in results if not x.ok]
    seconds = round(time.perf_counter() - t0, 1)
    save_json(args.out / "results.json", {
        "rows": rows, "pointing_game": list(agg["PG cam_b4"].values()), "auroc": list(agg["AUROC"].values()),
        "runs": [x.metrics for x in results if x.ok], "failed": failed, "device": str(device), "seconds": seconds,
        "command": command})
    md = markdown_table(rows, name="recipes")
    write_report(args.out, "Demo-classifier recipes vs CAM localisation on the bone phantom", [
        f"Command: `{command}` on {device} ({seconds / 60:.1f} min). Pointing game with a tolerance of 1/16 of the "
        f"image side on {args.n_eval} abnormal images per lesion type (mean over types; mean ± sample std over "
        f"seeds). Training cost: time per training step times number of steps, relative to `{base}`, the step timed "
        "in one process on the same device. \"AUROC > 0.8 at epoch\": per seed, the first epoch whose validation "
        "AUROC passed 0.8 (the model had left the plateau where it knows the metal only), - for never. The last "
        "column: the CAM block-4 pointing game's gain over the first recipe against the seeds' spread "
        "(sqrt(sd1^2 + sd2^2)).", md])
    print(md, flush=True)
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: " + "; ".join(f"{f['run']} ({f['error']})" for f in failed))
    return {"rows": rows}


if __name__ == "__main__":
    cli_main(main, get_args())
