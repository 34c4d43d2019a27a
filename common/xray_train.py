"""Training the DenseNet normal/abnormal classifier (MURA protocol), and the cached demo model.

Used by ``00_Interpretability/train.py``, by the shortcut demo, and by ``gradcam.py`` /
``evaluate.py`` when no ``--checkpoint`` is given (they train the small demo model on first use and
keep it under ``.cache/models/``).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import torch

from common import checkpoint
from common.engine import FitConfig, fit, predict
from common.errors import InputError
from common.models import build_densenet, load_weights, to_model_input
from common.models.stem_init import init_stem_gaussian_derivatives
from common.runtime import get_world_size, is_main_process, log
from common.xray_task import (Augmented, Materialized, full_evaluation, labels_and_groups, logit_metrics,
                              study_type_weights, weighted_bce_step)

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MIADEEPSSL_CACHE", ROOT / ".cache")) / "models"

# The demo model gradcam.py / evaluate.py use without --checkpoint: a small DenseNet (same four dense
# blocks as DenseNet169, one layer each) that trains on the bone phantom in about 3 minutes on 2 CPU cores.
# Departures from MURA's protocol, each measured on the phantom (benchmarks/cam_recipes.py, 00_Interpretability/README):
# * arch "mini" at cam_stride 4 (blocks 2-4 at input/4, 43 px receptive field at block 4) instead of the
#   v3 demo's "tiny" at stride 8 (127 px): the deeper model's block-4 features learnt to carry a lesion's
#   evidence to cells 10-20 px beside it (common/evidence.py), so its CAM pointing game was 0.06-0.34.
# * 160 px instead of MURA's 320 (v4: 128 px). The receptive field is fixed in pixels, so the smaller the image
#   the wider, relative to the limb, the band of cells that see an implant: at 128 px the block-4 CAM rings the
#   metal outside the pointing-game tolerance (hardware-only task: recipes hw128 / hw160 / hw192).
# * a one-cycle schedule and no rotation augmentation: the phantom already draws every limb at a random
#   angle, and a from-scratch model with rotations on top learnt little beyond the metal in 12 epochs.
# * 4,800 images x 10 epochs (v4: 2,400 x 24) in NHWC memory layout (channels_last; by hand, a batch-16 step of
#   "mini" at 128 px took 31 ms instead of 45 on 2 CPU threads): about as long as v4 on 2 CPU cores. A
#   from-scratch model first learns the metal, then, after a plateau of a few epochs, the fractures and lytic
#   lesions, or not: v4 and 2,400 images x 20 epochs at 160 px stayed at the metal (validation AUROC ~0.7) in
#   some seeds; twice the distinct images got past it in all three (recipes "v5", "v4", "n2400_e20"), but not
#   always (one of the runs training the cached model did not). demo_model() then continues that run (DEMO_RESTART).
# * log-sum-exp pooling of the class map instead of the average pool (v6; Pinheiro & Collobert 2015,
#   DenseNetClassifier.head_logits): the average-pooled v5's block-4 CAM ringed implants even at 160 px; pooled
#   by LSE, the positions that score highest carry the logit, normal images push every high position down, and
#   the CAM (still W x features) peaks on the metal (recipes "hw128_lse" vs "hw128", "demo" vs "v5"). The
#   sharpness r ramps from 0.25 (nearly the mean, whose gradient reaches every position) to 3 over the epochs
#   (SharpnessRamp): at r = 3 throughout most seeds never found the fractures (recipe "lse_const").
# * the one-cycle learning rate stepped after every batch, not once per epoch (v7, schedule "onecycle-batch"): v6
#   (per epoch: a 2.5-epoch warm-up in three steps, then a staircase) missed most fractures in two seeds of five;
#   per batch, all five seeds learnt them (benchmarks/results/cam_recipes_demo5, recipes "demo" vs "v6").
# * trained on random 128 x 128 crops of the 160-px images, at their own scale (v8, train_crop 0.8; validated and
#   explained on whole images): 0.64x the pixels per step, so 0.64x the time, and the lesion a larger share of what
#   the pooled map averages; a run leaves the plateau at the same epochs as v7's
#   (benchmarks/results/cam_recipes_crop, recipe "crop128").
DEMO = dict(dataset="phantom", arch="mini", cam_stride=4, size=160, n_train=4800, n_val=400, epochs=10, batch_size=16,
            lr=2e-3, schedule="onecycle-batch", augment_degrees=0.0, weights=None, confounder=0.0, val_confounder=None,
            seed=0, body_parts=None, workers=0, channels_last=True, pooling="lse", lse_r=3.0,
            lse_r_start=0.25, train_crop=0.8)
DEMO_VERSION = 8
# below this validation AUROC the demo model has learnt the metal but not the fractures and lytic lesions (runs
# that learnt them end at 0.89-0.97, runs that did not at 0.67-0.78)
DEMO_MIN_AUROC = 0.85
# such a run is continued, not replaced: a warm restart (Loshchilov & Hutter, SGDR, ICLR 2017,
# https://arxiv.org/abs/1608.03983) from its weights, on the next seed's images, with a new one-cycle of 6 epochs
# and the sharpness ramped from 1 (the features that carry the metal are there already; from 0.25 the restart did not
# leave the plateau). Measured on stuck runs: benchmarks/results/cam_recipes_restart{,_b8}, v8: cam_recipes_crop
# (restart_crop128); 0.6x a training, not 1x.
DEMO_RESTART = dict(epochs=6, lse_r_start=1.0)


def bone_datasets(args):
    """(train, validation) datasets for --dataset phantom|mura; validation is never augmented."""
    if args.dataset == "phantom":
        from common.phantoms.bone import BODY_PARTS, LESION_TYPES, BoneXrayPhantom

        parts = tuple(args.body_parts) if args.body_parts else tuple(BODY_PARTS)
        lesions = tuple(getattr(args, "lesion_types", None) or LESION_TYPES)
        val_conf = args.confounder if args.val_confounder is None else args.val_confounder
        train = BoneXrayPhantom(n=args.n_train, size=args.size, seed=args.seed, body_parts=parts,
                                lesion_types=lesions, confounder=args.confounder,
                                abnormal_fraction=getattr(args, "abnormal_fraction", 0.5))
        # a disjoint seed stream: validation images never appear in training
        val = BoneXrayPhantom(n=args.n_val, size=args.size, seed=args.seed + 100_000, body_parts=parts,
                              lesion_types=lesions, confounder=val_conf)
        return Materialized(train), Materialized(val)
    from common.datasets import DATASETS

    if args.data_root is None:
        raise InputError(f"--dataset {args.dataset} needs --data-root", hint="pass the folder holding MURA-v1.1/")
    make = DATASETS[args.dataset]
    parts = args.body_parts or None
    return (make(args.data_root, split="train", size=args.size, body_parts=parts),
            make(args.data_root, split="valid", size=args.size, body_parts=parts))


def probabilities(model, dataset, device, batch_size: int = 16) -> np.ndarray:
    def fn(m, batch, dev):
        return torch.sigmoid(m(to_model_input(batch["image"].to(dev)))[:, 0].float())

    return predict(model, dataset, fn, device, batch_size).numpy()


SCHEDULES = ("plateau", "onecycle", "onecycle-batch")


class BatchStepped:
    """An lr scheduler the engine steps after every optimizer step (``step_batch``) instead of once per epoch."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def step_batch(self) -> None:
        self.scheduler.step()

    def step(self, *metric) -> None:  # the engine's per-epoch call: nothing to do
        pass

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int | None = None):
    """Learning-rate schedule, stepped once per epoch by the engine ("onecycle-batch": once per batch).

    "plateau": MURA's protocol (Rajpurkar et al. 2017), lr / 10 when the validation loss stops falling.
    "onecycle": Smith & Topin, "Super-Convergence", 2017 (https://arxiv.org/abs/1708.07120) -- warm-up
    to ``lr`` then annealing to ~0; a short from-scratch run (the demo model) needs far fewer epochs with it.
    "onecycle-batch": the same cycle stepped after every batch (``steps_per_epoch`` needed), as Smith & Topin
    and torch's OneCycleLR intend; per epoch, the whole first epoch runs at lr / 25.
    """
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=1)
    if name in ("onecycle", "onecycle-batch"):
        lr = optimizer.param_groups[0]["lr"]
        per_batch = name == "onecycle-batch"
        if per_batch and not steps_per_epoch:
            raise InputError("the onecycle-batch schedule needs the number of steps per epoch")
        # the engine steps `epochs` (x steps_per_epoch) times, so the last step must still lie in the cycle
        steps = epochs * (steps_per_epoch if per_batch else 1) + 1
        # OneCycleLR divides by (pct_start * total_steps - 1), zero at 4 steps; a run this short (a smoke test) gets
        # a cycle of 5 steps and ends before its last
        steps = max(steps, 5)
        cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.25)
        return BatchStepped(cycle) if per_batch else cycle
    raise InputError(f"unknown lr schedule {name!r}", hint=f"choose one of {SCHEDULES}")


class SharpnessRamp:
    """Per-epoch schedule of a log-sum-exp head's sharpness r, geometric from ``r0`` (first epoch) to ``r1`` (last),
    wrapped around the learning-rate scheduler (stepped with it, saved and resumed with it).

    Small r pools nearly like the mean, whose gradient reaches every position, so a from-scratch model finds the
    fractures and lytic lesions as often as with the average pool; by the last epochs the head pools like the
    LSE r1 the model keeps, whose CAM peaks on the lesion (benchmarks/cam_recipes.py: recipes demo, lse_const).
    The model is saved and used at r1; should the best validation loss come from an earlier epoch, validated at a
    smaller r, its probabilities at r1 differ a little from the ones validated (its CAMs, W x features, do not).
    """

    def __init__(self, model, lr_scheduler, r0: float, r1: float, epochs: int):
        if not (r0 > 0 and r1 > 0):
            raise InputError(f"log-sum-exp sharpness must be > 0, got {r0} -> {r1}")
        self.model, self.lr_scheduler, self.r0, self.r1, self.epochs = model, lr_scheduler, r0, r1, epochs
        # the engine hands a validation metric to schedulers that want one (ReduceLROnPlateau)
        self.wants_metric = isinstance(lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        self.epoch = 0
        self._apply()

    def r_at(self, epoch: int) -> float:
        t = min(1.0, epoch / max(self.epochs - 1, 1))
        return float(self.r0 * (self.r1 / self.r0) ** t)

    def _apply(self) -> None:
        self.model.lse_r = self.r_at(self.epoch)

    def step(self, *metric) -> None:
        if self.lr_scheduler is not None:
            self.lr_scheduler.step(*metric)
        self.epoch += 1
        self._apply()

    def step_batch(self) -> None:  # the lr of a per-batch schedule; r stays per epoch
        if hasattr(self.lr_scheduler, "step_batch"):
            self.lr_scheduler.step_batch()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "lr": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if self.lr_scheduler is not None and state.get("lr") is not None:
            self.lr_scheduler.load_state_dict(state["lr"])
        self.epoch = int(state["epoch"])
        self._apply()


def train_crop_side(args) -> int | None:
    """Side in pixels of the random training crop (``args.train_crop``, a fraction of ``args.size``); None: whole
    images."""
    crop = getattr(args, "train_crop", None)
    return round(crop * args.size) if crop and crop < 1 else None


def train_classifier(args, device, out: Path):
    """Train (or resume) per the MURA protocol; returns (model with the best weights, result dict)."""
    train, val = bone_datasets(args)
    labels, parts, _ = labels_and_groups(train)
    weights = study_type_weights(labels, parts)
    log(f"training set: {len(train)} images ({int(labels.sum())} abnormal); validation: {len(val)}; "
        "BCE weights (w0, w1) per study type: " + ", ".join(f"{p}=({a:.2f}, {b:.2f})" for p, (a, b) in weights.items()))
    torch.manual_seed(args.seed)  # the weight initialisation follows --seed, whoever calls (train.py, the demo)
    model = build_densenet(args.arch, num_outputs=1, weights=args.weights, cam_stride=args.cam_stride,
                           pooling=getattr(args, "pooling", "avg"), lse_r=getattr(args, "lse_r", 1.0)).to(device)
    if getattr(args, "stem_init", None) == "gaussian-derivatives" and not args.weights:  # a probe (cam_recipes)
        init_stem_gaussian_derivatives(model.features.conv0)
    model_input = to_model_input
    if getattr(args, "channels_last", False):  # NHWC: oneDNN's CPU convolutions and CUDA AMP run faster on it
        model = model.to(memory_format=torch.channels_last)

        def model_input(images):  # (B, 3, H, W) stored NHWC
            return to_model_input(images).contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    # batches per epoch on each rank (DistributedSampler pads the set to a multiple of the world size)
    steps_per_epoch = math.ceil(math.ceil(len(train) / get_world_size()) / args.batch_size)
    scheduler = make_scheduler(getattr(args, "schedule", "plateau"), optimizer, args.epochs, steps_per_epoch)
    r_start = getattr(args, "lse_r_start", None)
    if getattr(args, "pooling", "avg") == "lse" and r_start:
        scheduler = SharpnessRamp(model, scheduler, r_start, args.lse_r, args.epochs)
    cfg = FitConfig(epochs=args.epochs, batch_size=args.batch_size, out=out, seed=args.seed, resume=args.resume,
                    workers=args.workers, monitor="val_loss", mode="min", args=vars(args))
    step = weighted_bce_step(weights, model_input, getattr(args, "logit_penalty", 0.0))
    augmented = Augmented(train, degrees=getattr(args, "augment_degrees", 30.0),  # MURA: up to 30 degrees
                          crop=train_crop_side(args))
    fit_result = fit(model, augmented, val, step, optimizer, cfg, device, scheduler=scheduler,
                     metric_fn=logit_metrics)
    best = checkpoint.load(out / "best.pt", map_location=device) if (out / "best.pt").exists() else None
    if best is not None:
        model.load_state_dict(best["model"])
    vlabels, vparts, vstudies = labels_and_groups(val)
    probs = probabilities(model, val, device, args.batch_size)
    evaluation = full_evaluation(probs, vlabels, vparts, vstudies)
    return model, {"fit": fit_result, "evaluation": evaluation, "best_epoch": best["epoch"] + 1 if best else None}


def demo_model(device: torch.device, quiet: bool = False):
    """The cached demo classifier; trained on first use (a few minutes on 2 CPU cores) and kept in .cache/.

    Returns (model in eval mode, info): the cached file's path, the seed of the run that made it and that run's
    validation AUROC, which reports print (the training gate may have continued the first run with a warm restart)."""
    from common.models import read_checkpoint

    path = CACHE / f"bone_demo_v{DEMO_VERSION}.pt"
    model = build_densenet(DEMO["arch"], num_outputs=1, cam_stride=DEMO["cam_stride"], pooling=DEMO["pooling"],
                           lse_r=DEMO["lse_r"])
    if path.exists():
        saved = read_checkpoint(path)
        load_weights(model, saved)
        return model.to(device).eval(), _demo_info(path, saved.get("args", {}), saved.get("metrics", {}))
    log(f"no --checkpoint given: training the demo DenseNet ({DEMO['arch']}) on the bone phantom once "
        f"(about 3 minutes on 2 CPU cores, 2 more if the run must be continued); it is cached at {path} "
        "for later runs")
    work = CACHE / f"bone_demo_v{DEMO_VERSION}_training"  # keeps last.pt, so a killed first use resumes
    first = work / f"seed{DEMO['seed']}"
    args = argparse.Namespace(**DEMO, resume=True, data_root=None)
    model, result = train_classifier(args, device, first)
    auroc = result["evaluation"]["image"]["auroc"]
    log(f"demo model (seed {args.seed}): validation AUROC {auroc:.3f}, "
        f"accuracy {result['evaluation']['image']['accuracy']:.3f}")
    if auroc < DEMO_MIN_AUROC:
        log(f"it learnt little beyond the metal implants (validation AUROC below {DEMO_MIN_AUROC}), as a short "
            f"from-scratch training sometimes does; continuing it for {DEMO_RESTART['epochs']} epochs on new images "
            "(a warm restart)")
        args = argparse.Namespace(**restart_config(first, DEMO["seed"]), resume=True, data_root=None)
        model, result = train_classifier(args, device, work / "restart")
        auroc = result["evaluation"]["image"]["auroc"]
        log(f"demo model (seed {DEMO['seed']}, restarted on seed {args.seed}'s images): validation AUROC "
            f"{auroc:.3f}, accuracy {result['evaluation']['image']['accuracy']:.3f}")
        if auroc < DEMO_MIN_AUROC:
            nxt = DEMO["seed"] + 2
            log("warning: the demo model found little beyond the metal implants even after a warm restart, so its "
                "CAMs of fractures and lytic lesions are weak. Train another: python 00_Interpretability/train.py "
                f"--quick --seed {nxt} --out runs/demo_seed{nxt}, then pass --checkpoint runs/demo_seed{nxt}/best.pt")
    if is_main_process():
        checkpoint.save(path, model=model.state_dict(), args=vars(args), metrics=result["evaluation"],
                        arch=DEMO["arch"])
    return model.to(device).eval(), _demo_info(path, vars(args), result["evaluation"])


def restart_config(first_run: Path, seed: int) -> dict:
    """The demo recipe's warm restart (DEMO_RESTART) of the run of ``seed`` kept in ``first_run`` (its best.pt), on the
    images of seed + 1; demo_model() and benchmarks/cam_recipes.py (recipe "restart") use the same."""
    return {**DEMO, **DEMO_RESTART, "seed": seed + 1, "weights": str(Path(first_run) / "best.pt"),
            "restart_of_seed": seed}


def _demo_info(path: Path, args: dict, metrics: dict) -> dict:
    auroc = metrics.get("image", {}).get("auroc")
    about = f"seed {args.get('seed')}"
    if args.get("restart_of_seed") is not None:
        about = f"seed {args['restart_of_seed']}, restarted on seed {args.get('seed')}'s images"
    about += f", validation AUROC {auroc:.3f}" if auroc is not None else ""
    return {"path": path, "seed": args.get("seed"), "val_auroc": auroc, "about": about}


def load_classifier(path, device: torch.device, arch: str | None = None):
    """A DenseNet classifier from a project checkpoint or a torchvision-style state_dict; None -> the demo model.

    Returns (model in eval mode, info) where info has the arch, the input size it was trained at (when
    the checkpoint records it) and where it came from.
    """
    from common.models import guess_arch, read_checkpoint
    from common.models.densenet import ARCHS, _state_from

    if path is None:
        model, demo = demo_model(device)
        shown = demo["path"].relative_to(ROOT) if demo["path"].is_relative_to(ROOT) else demo["path"]  # reports
        return model, {"arch": DEMO["arch"], "size": DEMO["size"], "source": f"demo model ({shown}; {demo['about']})"}
    obj = read_checkpoint(Path(path))
    state = _state_from(obj, path)
    if arch is None:
        arch = guess_arch(state.keys())
        if arch not in ARCHS:
            raise InputError(f"checkpoint is {arch}", path=path, hint="pass a DenseNet checkpoint or --arch")
    n_out = state["classifier.weight"].shape[0] if "classifier.weight" in state else 1
    saved = obj.get("args", {}) if isinstance(obj, dict) else {}
    saved = saved if isinstance(saved, dict) else {}
    stride = int(saved.get("cam_stride") or 32)  # not visible in the weights: pools have no parameters
    pooling, lse_r = saved.get("pooling") or "avg", float(saved.get("lse_r") or 1.0)  # nor is the global pool
    model = build_densenet(arch, num_outputs=n_out, cam_stride=stride, pooling=pooling, lse_r=lse_r)
    load_weights(model, state)
    return model.to(device).eval(), {"arch": arch, "size": saved.get("size"), "cam_stride": stride,
                                     "pooling": pooling, "source": str(path), "outputs": n_out}
