"""The interpretability demo's classifier: its recipe (``DEMO``), its training gate and the cached model.

``gradcam.py``, ``evaluate.py``, ``shortcut.py`` and ``localize.py`` explain this model when no ``--checkpoint`` is
given; ``00_Interpretability/train.py --quick`` is its training run (and caches it), otherwise the first of them to
need it trains it (:func:`demo_model`). It is kept under ``.cache/models/`` (``MIADEEPSSL_CACHE`` moves it).
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path

import torch

from common.engine import checkpoint
from common.models import build_densenet, load_weights, read_checkpoint
from common.models.weights import load_densenet_classifier
from common.runtime import is_main_process, log
from common.tasks.bone_classifier import ClassifierConfig, train_classifier

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MIADEEPSSL_CACHE", ROOT / ".cache")) / "models"

# A small DenseNet (DenseNet169's four dense blocks, one layer each) trained from scratch on the bone phantom.
# Each departure from MURA's protocol was measured on the phantom (docs/demo_model_history.md):
# * arch "mini" at cam_stride 4 (43 px receptive field at block 4): a deeper model's block-4 features carried a
#   lesion's evidence to cells beside it (common/cam/evidence.py), and its CAM missed the lesion;
# * 160 px (at 128 px the block-4 CAM rings metal implants outside the pointing-game tolerance);
# * log-sum-exp pooling of the class map, its sharpness ramped from 0.25 to 3 (SharpnessRamp);
# * a one-cycle learning rate stepped per batch, no rotations (the phantom draws every limb at a random angle);
# * trained on random 128-px crops of the 160-px images (0.64x the pixels), validated on whole images.
DEMO = ClassifierConfig(dataset="phantom", arch="mini", cam_stride=4, size=160, n_train=4800, n_val=400, epochs=10,
                        batch_size=16, lr=2e-3, schedule="onecycle-batch", augment_degrees=0.0, channels_last=True,
                        pooling="lse", lse_r=3.0, lse_r_start=0.25, train_crop=0.8, seed=0)
DEMO_VERSION = 8
# below this validation AUROC the model has learnt the metal but not the fractures and lytic lesions (runs that
# learnt them end at 0.89-0.97, runs that did not at 0.67-0.78)
DEMO_MIN_AUROC = 0.85
# such a run is continued, not replaced: a warm restart (Loshchilov & Hutter, SGDR, ICLR 2017,
# https://arxiv.org/abs/1608.03983) from its weights, on the next seed's images, a new one-cycle of 6 epochs and the
# sharpness ramped from 1 (from 0.25 the restart did not leave the plateau); 0.6x a training
DEMO_RESTART = dict(epochs=6, lse_r_start=1.0)
# how a run is carried out, not what it trains: a config that differs from DEMO only here is the demo recipe
RUN_ONLY = ("data_root", "workers", "resume")


def demo_path() -> Path:
    return CACHE / f"bone_demo_v{DEMO_VERSION}.pt"


def is_demo_recipe(cfg: ClassifierConfig) -> bool:
    """Whether ``cfg`` trains the demo model (``train.py --quick`` with no other setting changed)."""
    return replace(cfg, **{k: getattr(DEMO, k) for k in RUN_ONLY}) == DEMO


def restart_config(first_run: Path, seed: int) -> ClassifierConfig:
    """The demo recipe's warm restart (DEMO_RESTART) of the run of ``seed`` kept in ``first_run`` (its best.pt), on the
    images of seed + 1."""
    return replace(DEMO, **DEMO_RESTART, seed=seed + 1, weights=str(Path(first_run) / "best.pt"), restart_of_seed=seed)


def train_demo(device: torch.device, first: Path, restart: Path, resume: bool = True):
    """The demo recipe's run in ``first``, continued by a warm restart in ``restart`` when it ends below the gate.

    Returns (model, result of the run kept, its config)."""
    cfg = replace(DEMO, resume=resume)
    model, result = train_classifier(cfg, device, first)
    auroc = result["evaluation"]["image"]["auroc"]
    log(f"demo model (seed {cfg.seed}): validation AUROC {auroc:.3f}, "
        f"accuracy {result['evaluation']['image']['accuracy']:.3f}")
    if auroc >= DEMO_MIN_AUROC:
        return model, result, cfg
    log(f"it learnt little beyond the metal implants (validation AUROC below {DEMO_MIN_AUROC}), as a short "
        f"from-scratch training sometimes does; continuing it for {DEMO_RESTART['epochs']} epochs on new images "
        "(a warm restart)")
    cfg = replace(restart_config(first, DEMO.seed), resume=resume)
    model, result = train_classifier(cfg, device, restart)
    auroc = result["evaluation"]["image"]["auroc"]
    log(f"demo model (seed {DEMO.seed}, restarted on seed {cfg.seed}'s images): validation AUROC "
        f"{auroc:.3f}, accuracy {result['evaluation']['image']['accuracy']:.3f}")
    if auroc < DEMO_MIN_AUROC:
        log("warning: the demo model found little beyond the metal implants even after a warm restart, so its "
            "CAMs of fractures and lytic lesions are weak. Train another: python 00_Interpretability/train.py "
            f"--seed {DEMO.seed + 2} ... with the settings of common/tasks/bone_demo.py, and pass --checkpoint")
    return model, result, cfg


def save_demo(model: torch.nn.Module, cfg: ClassifierConfig, result: dict) -> Path:
    """Cache a trained demo model for every later demo (main process only); returns the cache path."""
    path = demo_path()
    if is_main_process():
        checkpoint.save(path, model=model.state_dict(), args=asdict(cfg), metrics=result["evaluation"],
                        arch=DEMO.arch)
    return path


def demo_model(device: torch.device):
    """The cached demo classifier; trained on first use and kept in .cache/.

    Returns (model in eval mode, info): the cached file's path, the seed of the run that made it and that run's
    validation AUROC, which reports print (the training gate may have continued the first run with a warm restart)."""
    path = demo_path()
    if path.exists():
        model = build_densenet(DEMO.arch, num_outputs=1, cam_stride=DEMO.cam_stride, pooling=DEMO.pooling,
                               lse_r=DEMO.lse_r)
        saved = read_checkpoint(path)
        load_weights(model, saved)
        return model.to(device).eval(), _demo_info(path, saved.get("args", {}), saved.get("metrics", {}))
    log(f"no --checkpoint given: training the demo DenseNet ({DEMO.arch}) on the bone phantom once (4.1 min on this "
        f"project's 2-core CPU, 2026-12-02; 0.6x more if the run must be continued); it is cached at {path} for later "
        "runs (00_Interpretability/train.py --quick trains and caches the same model)")
    work = CACHE / f"bone_demo_v{DEMO_VERSION}_training"  # keeps last.pt, so a killed first use resumes
    model, result, cfg = train_demo(device, work / f"seed{DEMO.seed}", work / "restart")
    save_demo(model, cfg, result)
    return model.to(device).eval(), _demo_info(path, asdict(cfg), result["evaluation"])


def _demo_info(path: Path, args: dict, metrics: dict) -> dict:
    auroc = metrics.get("image", {}).get("auroc")
    about = f"seed {args.get('seed')}"
    if args.get("restart_of_seed") is not None:
        about = f"seed {args['restart_of_seed']}, restarted on seed {args.get('seed')}'s images"
    about += f", validation AUROC {auroc:.3f}" if auroc is not None else ""
    return {"path": path, "seed": args.get("seed"), "val_auroc": auroc, "about": about}


def load_classifier(path, device: torch.device, arch: str | None = None):
    """A DenseNet classifier from a checkpoint file (:func:`common.models.weights.load_densenet_classifier`);
    None -> the demo model. Returns (model in eval mode, info: arch, input size, source, ...)."""
    if path is None:
        model, demo = demo_model(device)
        shown = demo["path"].relative_to(ROOT) if demo["path"].is_relative_to(ROOT) else demo["path"]  # reports
        return model, {"arch": DEMO.arch, "size": DEMO.size, "demo": True,
                       "source": f"demo model ({shown}; {demo['about']})"}
    model, info = load_densenet_classifier(path, arch)
    return model.to(device).eval(), {**info, "demo": False}
