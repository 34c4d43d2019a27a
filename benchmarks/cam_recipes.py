"""Which training recipe of the demo classifier gives CAMs that point at the lesion? A sweep over seeds.

The interpretability goal is a block-4 CAM pointing game >= 0.8 on the bone phantom's abnormal images
(Zhang et al. 2016, https://arxiv.org/abs/1608.00507; tolerance 8 px at 128 px). This trains the demo
DenseNet (``common.tasks.bone_demo.DEMO``) under named variations of its recipe, several seeds each, and
scores every model the same way: validation AUROC, and the pointing game per lesion type of CAM (block 4)
and Layer-CAM (blocks 2-4). Each recipe's relative training cost is a measured time per training step
times its number of steps (same device, one process). Not a test: the numbers say which recipe to make the demo default.

Usage: python benchmarks/cam_recipes.py --quick                       (2 recipes x 1 seed, tiny, CPU)
       python benchmarks/cam_recipes.py --recipes demo,tiny_s8,tiny_s4 --seeds 3 --jobs 2 --threads 1
"""

import argparse
import concurrent.futures
import csv
import json
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.cli import OneLineErrorParser  # noqa: E402
from common.io import save_json  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import choose_device, worker_log  # noqa: E402

# name -> overrides of the v7 demo (common.tasks.bone_demo.DEMO without v8's training crops: arch "mini" at cam_stride 4,
# 160 px, 4,800 images x 10 epochs, log-sum-exp pooling with r ramped 0.25 -> 3, one-cycle lr stepped per batch), so
# that recipe "demo" is still what the runs kept under that name were trained as; "arch_spec" defines a DenseNet layout
# for this sweep only. "v6" is the previous demo model (one-cycle lr stepped per epoch), "v5" the one before (average
# pooling), "v4" the one before (128 px), "tiny_s8" the one before that. Recipes
# pooling by average were measured before the weight initialisation followed the seed (runs under
# benchmarks/results keep their scores).
V7 = {"train_crop": None}  # every recipe varies the v7 demo (whole images); v8, the demo now, is recipe "crop128"
V6 = {"schedule": "onecycle"}  # the demo model before v7: the one-cycle lr stepped once per epoch
GAP = {"pooling": "avg", "lse_r": 1.0, "lse_r_start": None, **V6}
V4 = {"size": 128, "n_train": 2400, "epochs": 24, "channels_last": False, **GAP}  # the demo model before v5
HW = {"lesion_types": ("hardware",), "n_train": 1200, "epochs": 10, "channels_last": True}
RECIPES = {
    "demo": {},
    "v6": V6,
    "lse_const": {"lse_r_start": None, **V6},  # v6's log-sum-exp pooling at r = 3 throughout
    "epochs12": {"epochs": 12, **V6},  # v6 with 20 % more training
    "lr1e-3": {"lr": 1e-3},  # the demo at half the peak learning rate
    "epochs8": {"epochs": 8},  # the demo's cycle (lr and sharpness) compressed into 8 epochs
    "epochs7": {"epochs": 7},
    "epochs6": {"epochs": 6},
    "size128": {"size": 128},  # the demo at 128 px: ~0.65x the step cost, towards a 3-minute first use
    "r1": {"lse_r_start": 1.0},  # the demo with the sharpness ramped 1 -> 3 instead of 0.25 -> 3
    # the demo's 3,000 steps (and so its lr and sharpness schedules) at batch 8 on 2,400 images: half the compute
    "b8": {"batch_size": 8, "n_train": 2400},
    "b8_lr1.4e-3": {"batch_size": 8, "n_train": 2400, "lr": 1.4e-3},  # b8 at the peak lr scaled by sqrt(1/2)
    # the demo's network with a narrower bottleneck (1x1 conv to bn_size x growth channels; torchvision: 4): same
    # layers and receptive field, fewer channels to normalise and convolve, towards a 3-minute first use
    "bn2": {"arch_spec": dict(growth_rate=16, block_config=(1, 1, 1, 1), num_init_features=16, bn_size=2)},
    "bn1": {"arch_spec": dict(growth_rate=16, block_config=(1, 1, 1, 1), num_init_features=16, bn_size=1)},
    # towards 0.6x the images seen: does the metal-only plateau end sooner with spectral decoupling (a logit penalty
    # against gradient starvation), or with 75 % abnormal training images (1.5x the lesions an epoch)?
    "sd0.1_e6": {"logit_penalty": 0.1, "epochs": 6},
    "sd0.02_e6": {"logit_penalty": 0.02, "epochs": 6},
    "ab0.75_e6": {"abnormal_fraction": 0.75, "epochs": 6},
    "fl160": {"lesion_types": ("fracture", "lytic")},  # the demo without metal implants: is the metal in the way?
    # demo_model()'s warm restart (common.tasks.bone_demo.restart_config) of the same seed's "demo" run in the same --out
    # folder: does it rescue the runs that stayed on the plateau? The others: the same restart of other stuck runs
    # the demo in 6 / 7 epochs with its stem initialised by oriented Gaussian derivatives (common.models.stem_init)
    "ridge_e6": {"stem_init": "gaussian-derivatives", "epochs": 6},
    "ridge_e7": {"stem_init": "gaussian-derivatives", "epochs": 7},
    # the demo trained on random 128 x 128 crops of its 160-px images (same scale; 0.64x the pixels), scored at 160
    "crop128": {"train_crop": 0.8},
    "restart": {"restart_from": "demo"},
    "restart_b8": {"restart_from": "b8"},
    "restart_crop128": {"restart_from": "crop128"},
    **{f"restart_{r}": {"restart_from": r} for r in ("sd0.1_e6", "sd0.02_e6", "ab0.75_e6")},
    "v5": GAP,
    "v4": V4,
    "n2400_e20": {"n_train": 2400, "epochs": 20, **GAP},  # v5 with v4's 2,400 images, twice the epochs: same steps
    # variations of v4, measured in benchmarks/results/cam_recipes_v4
    "tiny_s8": {**V4, "arch": "tiny", "cam_stride": 8},
    "tiny_s4": {**V4, "arch": "tiny", "cam_stride": 4},
    "mini_s8": {**V4, "cam_stride": 8},
    "demo_epochs30": {**V4, "epochs": 30},
    "demo_lr3e-3": {**V4, "lr": 3e-3},
    "demo_n3200_e18": {**V4, "n_train": 3200, "epochs": 18},
    "b2211_s4": {**V4, "arch_spec": dict(growth_rate=12, block_config=(2, 2, 1, 1), num_init_features=16)},
    "demo_size192": {**V4, "size": 192},
    "tiny_s4_epochs48": {**V4, "arch": "tiny", "cam_stride": 4, "epochs": 48},
    # hardware-only task (normal vs metal): the ring around the implant against the input size, 1-2 min a run
    "hw128": {**HW, "size": 128, **GAP},
    "hw160": {**HW, "size": 160, **GAP},
    "hw192": {**HW, "size": 192, **GAP},
    "hw128_lse": {**HW, "size": 128, "lse_r_start": None, **V6},  # log-sum-exp pooling (r = 3) on the ring's worst case
    # fracture and lytic lesions only: how soon a from-scratch model finds the subtle lesions without the metal
    "fl128": {"lesion_types": ("fracture", "lytic"), "n_train": 1200, "epochs": 10, "channels_last": True,
              "size": 128, **GAP},
}
LESIONS = ("fracture", "lytic", "hardware")


def recipe_args(name: str, seed: int, quick: bool, out: Path | None = None) -> argparse.Namespace:
    """A recipe's training arguments; a restart recipe continues ``out / <its source recipe> / seed<seed>``."""
    from common.models import ARCHS
    from common.tasks.bone_demo import DEMO, restart_config

    overrides = dict(RECIPES[name])
    source = overrides.pop("restart_from", None)
    if source is not None:  # weights: where the source run keeps them (none given: a fresh network, to time a step)
        cfg = {**restart_config(Path(out or ".") / source / f"seed{seed}", seed), "resume": True, "data_root": None,
               "train_crop": recipe_args(source, seed, quick).train_crop}  # a v7 run's restart stays v7 (no crop)
        if out is None:
            cfg["weights"] = None
        if quick:
            cfg.update(n_train=64, n_val=32, epochs=1, size=64)
        return argparse.Namespace(**cfg)
    spec = overrides.pop("arch_spec", None)
    if spec is not None:
        ARCHS[f"sweep_{name}"] = spec
        overrides["arch"] = f"sweep_{name}"
    cfg = {**DEMO, **V7, **overrides, "seed": seed, "resume": True, "data_root": None}
    if quick:  # a smoke run of the machinery, not a measurement
        cfg.update(n_train=64, n_val=32, epochs=1, size=64)
    return argparse.Namespace(**cfg)


def score_model(model, size: int, n: int, device, lesions=LESIONS) -> dict:
    """Pointing game of CAM at block 4 (single view and averaged over flips) and Layer-CAM at blocks 2-4, per
    lesion type and overall.

    The tolerance is 8 px at 128 px, scaled with the input size so that recipes at other sizes are
    held to the same distance on the limb."""
    from common.cam.scoring import pointing_tolerance, score_dataset
    from common.data.phantoms import BoneXrayPhantom
    from common.models import block_layers

    layers = {k: block_layers(model)[k] for k in (2, 3, 4)}
    out: dict = {}
    tol = pointing_tolerance(size)
    for lesion in lesions:
        data = BoneXrayPhantom(n=n, size=size, seed=300_000, abnormal_fraction=1.0, lesion_types=(lesion,))
        res = score_dataset(model, data, ("cam", "layercam"), layers, device, target=1, tolerance=tol, keep=0)
        for row in res["rows"]:
            out.setdefault(f"{row['method']}_b{row['block']}", {})[lesion] = row["pointing_game"]
        out.setdefault("detected", {})[lesion] = float((res["probs"] > 0.5).mean())
        flips = score_dataset(model, data, ("cam",), {4: layers[4]}, device, target=1, tolerance=tol, keep=0,
                              tta="flips")
        out.setdefault("cam_b4_flips", {})[lesion] = flips["rows"][0]["pointing_game"]
    for scores in out.values():
        scores["all"] = float(np.mean([scores[t] for t in lesions]))
    return out


def _lesions(args) -> tuple:
    return tuple(getattr(args, "lesion_types", None) or LESIONS)


def rescore(name: str, seed: int, out_dir: Path, dev: torch.device, n_eval: int, quick: bool) -> dict:
    """Score a finished run's kept best.pt again (after the scorer or the phantom's masks changed); no training."""
    from common.tasks.bone_demo import load_classifier

    old = json.loads((out_dir / "scores.json").read_text())
    args = recipe_args(name, seed, quick)  # registers a sweep-only arch_spec under its name
    # the checkpoint's saved args give the CAM stride, which the weights cannot show
    model, _ = load_classifier(out_dir / "best.pt", dev, arch=args.arch)
    old["scores"] = score_model(model, args.size, n_eval, dev, _lesions(args))
    old["rescored"] = time.strftime("%Y-%m-%d")
    save_json(out_dir / "scores.json", old)
    return old


def run_job(name: str, seed: int, out: str, device: str, threads: int, n_eval: int, quick: bool,
            again: bool = False) -> dict:
    """Train one recipe/seed (resumes a killed run) and score its CAMs; quiet console, log in <out>/train.log.

    A finished run's scores are reused; ``again`` scores its kept weights anew instead."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = out_dir / "scores.json"
    if done.exists() and again and (out_dir / "best.pt").exists():
        with worker_log(out_dir, threads):
            return rescore(name, seed, out_dir, torch.device(device), n_eval, quick)
    if done.exists():
        return json.loads(done.read_text())
    from common.tasks.bone_demo import train_classifier

    args = recipe_args(name, seed, quick, out_dir.parent.parent)
    dev = torch.device(device)
    t0 = time.perf_counter()
    with worker_log(out_dir, threads):
        model, result = train_classifier(args, dev, out_dir)
        seconds = time.perf_counter() - t0
        scores = score_model(model.eval(), args.size, n_eval, dev, _lesions(args))
    res = {"recipe": name, "seed": seed, "auroc": result["evaluation"]["image"]["auroc"],
           "kappa": result["evaluation"]["image"]["kappa"], "train_seconds": round(seconds, 1), "scores": scores}
    save_json(done, res)
    (out_dir / "last.pt").unlink(missing_ok=True)  # best.pt (the scored weights) stays, for a closer look
    return res


def training_steps(args) -> int:
    """Optimizer steps of a recipe's training (one process): batches per epoch x epochs."""
    return math.ceil(args.n_train / args.batch_size) * args.epochs


def step_time(name: str, device, quick: bool = False, steps: int = 6) -> float:
    """Seconds per training step (at the recipe's batch size) of its network at the side it trains on (its training
    crop, if any), in this process."""
    from common.models import build_densenet
    from common.tasks.bone_demo import train_crop_side

    args = recipe_args(name, 0, quick)
    model = build_densenet(args.arch, 1, cam_stride=args.cam_stride, pooling=args.pooling, lse_r=args.lse_r).to(device)
    side = train_crop_side(args) or args.size
    x = torch.randn(args.batch_size, 3, side, side, device=device)
    if getattr(args, "channels_last", False):
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters())
    y = torch.rand(args.batch_size, device=device)
    for i in range(steps + 2):
        if i == 2:
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


def get_args(argv=None):
    p = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default=",".join(RECIPES), help=f"comma list of {', '.join(RECIPES)}")
    p.add_argument("--seeds", type=int, default=2, help="training seeds per recipe")
    p.add_argument("--n-eval", type=int, default=60, help="abnormal images per lesion type to score")
    p.add_argument("--jobs", type=int, default=1, help="trainings at once, in separate processes")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0, help="CPU threads per job (0: cores / jobs)")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder; a finished run's scores.json there is reused (default: "
                        "benchmarks/results/cam_recipes, or runs/cam_recipes_quick with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (2 recipes, 1 seed, 1 epoch at 64 px)")
    p.add_argument("--rescore", action="store_true",
                   help="score finished runs' kept weights again instead of reusing their scores.json")
    args = p.parse_args(argv)
    args.recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown:
        p.error(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}")
    if args.quick:
        args.recipes, args.seeds, args.n_eval = args.recipes[:2], 1, 4
    if args.out is None:  # never mix a smoke run's scores into the measured ones
        args.out = Path("runs/cam_recipes_quick" if args.quick else "benchmarks/results/cam_recipes")
    for r in args.recipes:  # a restart needs its source run's weights: kept in --out, or trained in this sweep
        src = RECIPES[r].get("restart_from")
        runs = [args.out / str(src) / f"seed{s}" for s in range(args.seeds)]
        # a finished run is reused, not retrained: without its weights it cannot be continued
        missing = [d for d in runs if src is not None and not (d / "best.pt").exists()
                   and (src not in args.recipes or (d / "scores.json").exists())]
        if missing:
            p.error(f"recipe {r} continues {src}'s runs, and {missing[0] / 'best.pt'} is missing: "
                    + (f"delete {missing[0] / 'scores.json'} to train it again" if src in args.recipes
                       else f"add {src} to --recipes"))
    return args


def _mean_sd(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else "n/a"


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


def main(args) -> dict:
    device = choose_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(args.jobs, 1))
    jobs = [(r, s) for r in args.recipes for s in range(args.seeds)]
    print(f"{len(jobs)} trainings ({len(args.recipes)} recipes x {args.seeds} seeds), {args.jobs} at a time on "
          f"{device}, {threads} thread(s) each; results under {args.out}", flush=True)
    t0 = time.perf_counter()
    results = []
    ctx = multiprocessing.get_context("spawn")
    # a restart continues its source run, so restarts train in a second pass, after every source run
    restarts = [j for j in jobs if "restart_from" in RECIPES[j[0]]]
    passes = [[j for j in jobs if j not in restarts], restarts]
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(args.jobs, 1), mp_context=ctx) as pool:
        for batch in passes:
            futures = {pool.submit(run_job, r, s, str(args.out / r / f"seed{s}"), str(device), threads, args.n_eval,
                                   args.quick, args.rescore): (r, s) for r, s in batch}
            for future in concurrent.futures.as_completed(futures):
                res = future.result()
                results.append(res)
                print(f"[{len(results)}/{len(jobs)}] {res['recipe']} seed {res['seed']}: AUROC {res['auroc']:.3f}, "
                      f"CAM b4 pointing game {res['scores']['cam_b4']['all']:.3f} ({res['train_seconds']:.0f} s)",
                      flush=True)
    if args.rescore:
        stale = [f"{x['recipe']}/seed{x['seed']}" for x in results if "rescored" not in x]
        if stale:
            print(f"not rescored (no kept best.pt, scores reused): {', '.join(sorted(stale))}", flush=True)
    # training cost: measured time a step x number of steps (recipes differ in batch size, images and epochs)
    costs = {r: step_time(r, device, args.quick) * training_steps(recipe_args(r, 0, args.quick)) for r in args.recipes}
    rows = []
    for r in args.recipes:
        mine = [x for x in results if x["recipe"] == r]
        row = {"recipe": r, "overrides": ", ".join(f"{k}={v}" for k, v in RECIPES[r].items()) or "(DEMO)",
               "seeds": len(mine), "AUROC": _mean_sd([x["auroc"] for x in mine]),
               "training cost": f"{costs[r] / costs[args.recipes[0]]:.2f}x",
               "AUROC > 0.8 at epoch": " / ".join(learnt_at(args.out / r / f"seed{x['seed']}")
                                                  for x in sorted(mine, key=lambda x: x["seed"]))}
        for method in ("cam_b4", "cam_b4_flips", "layercam_b4", "layercam_b3", "layercam_b2"):
            row[f"PG {method}"] = _mean_sd([x["scores"][method]["all"] for x in mine if method in x["scores"]])
        for t in LESIONS:
            row[f"CAM b4 {t}"] = _mean_sd([x["scores"]["cam_b4"][t] for x in mine if t in x["scores"]["cam_b4"]])
        rows.append(row)
    cols = list(rows[0])
    shown = " ".join(a for a in sys.argv[1:])
    md = markdown_table(rows, cols)
    save_json(args.out / "results.json", {"rows": rows, "runs": results, "device": str(device),
                                          "seconds": round(time.perf_counter() - t0, 1),
                                          "command": f"python benchmarks/cam_recipes.py {shown}".strip()})
    write_report(args.out, "Demo-classifier recipes vs CAM localisation on the bone phantom", [
        f"Command: `python benchmarks/cam_recipes.py {shown}` on {device} "
        f"({(time.perf_counter() - t0) / 60:.1f} min). Pointing game with a tolerance of 1/16 of the image side "
        f"(8 px at 128, 10 at 160, 12 at 192) on {args.n_eval} abnormal "
        "images per lesion type (mean over types; mean ± sd over seeds). Training cost: time per training step "
        f"times number of steps, relative to `{args.recipes[0]}`, the step timed in one process on the same device. "
        "\"AUROC > 0.8 at epoch\": "
        "per seed, the first epoch whose validation AUROC passed 0.8 (the model had left the plateau where it "
        "knows the metal only), - for never.", md])
    print(md, flush=True)
    return {"rows": rows}


if __name__ == "__main__":
    main(get_args())
