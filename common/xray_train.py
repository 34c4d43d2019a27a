"""Training the DenseNet normal/abnormal classifier (MURA protocol), and the cached demo model.

Used by ``00_Interpretability/train.py``, by the shortcut demo, and by ``gradcam.py`` /
``evaluate.py`` when no ``--checkpoint`` is given (they train the small demo model on first use and
keep it under ``.cache/models/``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from common import checkpoint
from common.engine import FitConfig, fit, predict
from common.errors import InputError
from common.models import build_densenet, load_weights, to_model_input
from common.runtime import is_main_process, log
from common.xray_task import (Augmented, Materialized, full_evaluation, labels_and_groups, logit_metrics,
                              study_type_weights, weighted_bce_step)

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MIADEEPSSL_CACHE", ROOT / ".cache")) / "models"

# The demo model gradcam.py / evaluate.py use without --checkpoint: a small DenseNet (same four dense
# blocks as DenseNet169, one layer each) that trains on the bone phantom in about 3 CPU minutes.
# Departures from MURA's protocol, each measured on the phantom:
# * arch "mini" at cam_stride 4 (blocks 2-4 at input/4, 43 px receptive field at block 4) instead of the
#   v3 demo's "tiny" at stride 8 (127 px): the deeper model's block-4 features learnt to carry a lesion's
#   evidence to cells 10-20 px beside it (common/evidence.py: the peak cell's input gradient sits on the
#   lesion while the peak does not), so its CAM pointing game was 0.06-0.34 at AUROC 0.85-0.94; "mini"
#   gave 0.72-0.82 over three seeds at AUROC 0.89-0.96 (benchmarks/cam_recipes.py, 00_Interpretability/README).
# * a one-cycle schedule and no rotation augmentation: the phantom already draws every limb at a random
#   angle, and a from-scratch model with rotations on top learnt little beyond the metal in 12 epochs.
# * 24 epochs (~3 min on 2 CPU cores); with 30 the AUROC rose but the pointing game fell (0.58-0.65, three seeds).
DEMO = dict(dataset="phantom", arch="mini", cam_stride=4, size=128, n_train=2400, n_val=400, epochs=24, batch_size=16,
            lr=2e-3, schedule="onecycle", augment_degrees=0.0, weights=None, confounder=0.0, val_confounder=None,
            seed=0, body_parts=None, workers=0)
DEMO_VERSION = 4


def bone_datasets(args):
    """(train, validation) datasets for --dataset phantom|mura; validation is never augmented."""
    if args.dataset == "phantom":
        from common.phantoms.bone import BODY_PARTS, BoneXrayPhantom

        parts = tuple(args.body_parts) if args.body_parts else tuple(BODY_PARTS)
        val_conf = args.confounder if args.val_confounder is None else args.val_confounder
        train = BoneXrayPhantom(n=args.n_train, size=args.size, seed=args.seed, body_parts=parts,
                                confounder=args.confounder)
        # a disjoint seed stream: validation images never appear in training
        val = BoneXrayPhantom(n=args.n_val, size=args.size, seed=args.seed + 100_000, body_parts=parts,
                              confounder=val_conf)
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


SCHEDULES = ("plateau", "onecycle")


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, epochs: int):
    """Learning-rate schedule, stepped once per epoch by the engine.

    "plateau": MURA's protocol (Rajpurkar et al. 2017), lr / 10 when the validation loss stops falling.
    "onecycle": Smith & Topin, "Super-Convergence", 2017 (https://arxiv.org/abs/1708.07120) -- warm-up
    to ``lr`` then annealing to ~0; a short from-scratch run (the demo model) needs far fewer epochs with it.
    """
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=1)
    if name == "onecycle":
        lr = optimizer.param_groups[0]["lr"]
        # one step per epoch; the engine steps `epochs` times, so the last step must still lie in the cycle
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs + 1, pct_start=0.25)
    raise InputError(f"unknown lr schedule {name!r}", hint=f"choose one of {SCHEDULES}")


def train_classifier(args, device, out: Path):
    """Train (or resume) per the MURA protocol; returns (model with the best weights, result dict)."""
    train, val = bone_datasets(args)
    labels, parts, _ = labels_and_groups(train)
    weights = study_type_weights(labels, parts)
    log(f"training set: {len(train)} images ({int(labels.sum())} abnormal); validation: {len(val)}; "
        f"BCE weights (w0, w1) per study type: " + ", ".join(f"{p}=({a:.2f}, {b:.2f})" for p, (a, b) in weights.items()))
    model = build_densenet(args.arch, num_outputs=1, weights=args.weights, cam_stride=args.cam_stride).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = make_scheduler(getattr(args, "schedule", "plateau"), optimizer, args.epochs)
    cfg = FitConfig(epochs=args.epochs, batch_size=args.batch_size, out=out, seed=args.seed, resume=args.resume,
                    workers=args.workers, monitor="val_loss", mode="min", args=vars(args))
    step = weighted_bce_step(weights, to_model_input)
    augmented = Augmented(train, degrees=getattr(args, "augment_degrees", 30.0))  # MURA: up to 30 degrees
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
    """The cached demo classifier; trained on first use (a few minutes on 2 CPU cores) and kept in .cache/."""
    path = CACHE / f"bone_demo_v{DEMO_VERSION}.pt"
    model = build_densenet(DEMO["arch"], num_outputs=1, cam_stride=DEMO["cam_stride"])
    if path.exists():
        load_weights(model, path)
        return model.to(device).eval(), path
    log(f"no --checkpoint given: training the demo DenseNet ({DEMO['arch']}) on the bone phantom once "
        f"(about 3 minutes on 2 CPU cores); it is cached at {path} for later runs")
    args = argparse.Namespace(**DEMO, resume=True, data_root=None)
    work = CACHE / f"bone_demo_v{DEMO_VERSION}_training"  # keeps last.pt, so a killed first run resumes
    model, result = train_classifier(args, device, work)
    if is_main_process():
        checkpoint.save(path, model=model.state_dict(), args=vars(args), metrics=result["evaluation"],
                        arch=DEMO["arch"])
    ev = result["evaluation"]["image"]
    log(f"demo model ready: validation AUROC {ev['auroc']:.3f}, accuracy {ev['accuracy']:.3f}")
    return model.to(device).eval(), path


def load_classifier(path, device: torch.device, arch: str | None = None):
    """A DenseNet classifier from a project checkpoint or a torchvision-style state_dict; None -> the demo model.

    Returns (model in eval mode, info) where info has the arch, the input size it was trained at (when
    the checkpoint records it) and where it came from.
    """
    from common.models import guess_arch, read_checkpoint
    from common.models.densenet import ARCHS, _state_from

    if path is None:
        model, cached = demo_model(device)
        return model, {"arch": DEMO["arch"], "size": DEMO["size"], "source": f"demo model ({cached})"}
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
    model = build_densenet(arch, num_outputs=n_out, cam_stride=stride)
    load_weights(model, state)
    return model.to(device).eval(), {"arch": arch, "size": saved.get("size"), "cam_stride": stride,
                                     "source": str(path), "outputs": n_out}
