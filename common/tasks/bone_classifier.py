"""The MURA-protocol normal/abnormal radiograph task: its datasets, weighted loss, evaluation and training run.

Rajpurkar et al., "MURA: Large Dataset for Musculoskeletal Radiographs", 2017,
https://arxiv.org/abs/1712.06957: DenseNet169, 320x320 inputs with ImageNet normalisation, lateral flips
and rotations up to 30 degrees, binary cross-entropy weighted per study type (w1 = N/(A+N) for abnormal,
w0 = A/(A+N) for normal), Adam lr 1e-4 divided by 10 on a validation plateau, batch 8; evaluation of
the study-level probability (mean of the study's image probabilities) by Cohen's kappa.

The same code runs on the built-in bone phantom (each image its own study) and on MURA-v1.1. A run is described by a
:class:`ClassifierConfig` (MURA's protocol by default; the interpretability demo's model is
:data:`common.tasks.bone_demo.DEMO`); ``train_classifier(cfg, device, out)`` trains, resumes and evaluates it.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from common.data.cache import Materialized
from common.data.transforms import Augmented
from common.engine import FitConfig, checkpoint, fit, predict
from common.engine.schedules import SharpnessRamp, make_scheduler
from common.errors import InputError
from common.metrics import binary_metrics
from common.models import build_densenet, to_model_input
from common.runtime import get_world_size, log


@dataclass
class ClassifierConfig:
    """One training run of the normal/abnormal classifier. Defaults: MURA's protocol (Rajpurkar et al. 2017)."""

    dataset: str = "phantom"  # "phantom" or a key of common.data.datasets.DATASETS ("mura")
    data_root: str | None = None
    arch: str = "densenet169"
    weights: str | None = None  # None (random init), "imagenet" or a .pth file
    cam_stride: int = 32
    pooling: str = "avg"  # "avg" or "lse" (log-sum-exp of the class map)
    lse_r: float = 1.0
    lse_r_start: float | None = None  # ramp the LSE sharpness from this value to lse_r (SharpnessRamp)
    schedule: str = "plateau"  # common.engine.schedules.SCHEDULES
    augment_degrees: float = 30.0
    size: int = 320
    train_crop: float | None = None  # random crops of this fraction of the side (no resizing); None: whole images
    channels_last: bool = False
    n_train: int = 4000  # phantom only
    n_val: int = 800
    body_parts: tuple[str, ...] | None = None
    lesion_types: tuple[str, ...] | None = None  # phantom only; None: all
    confounder: float = 0.0  # phantom only: probability that the L/R marker's corner encodes the label
    val_confounder: float | None = None  # None: the training set's
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-4
    seed: int = 0
    workers: int = 0
    resume: bool = False
    restart_of_seed: int | None = None  # a warm restart of that seed's run (common.tasks.bone_demo.restart_config)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides) -> "ClassifierConfig":
        """The config from a script's parsed flags (those it has), then ``overrides``."""
        given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**{**given, **overrides})


def labels_and_groups(dataset: Dataset) -> tuple[np.ndarray, list[str], list[str]]:
    """(labels, body parts, study ids) of every item, without decoding images where the dataset allows it."""
    base = getattr(dataset, "base", getattr(dataset, "dataset", dataset))
    if hasattr(base, "item_spec"):  # the bone phantom: every image is its own study
        specs = [base.item_spec(i) for i in range(len(base))]
        return (np.array([int(s["lesion_type"] != "none") for s in specs]), [s["body_part"] for s in specs],
                [f"phantom/{i}" for i in range(len(base))])
    if hasattr(base, "records"):  # MURA: (path, label, body part, study) per image
        recs = base.records
        return np.array([r["label"] for r in recs]), [r["body_part"] for r in recs], [r["study"] for r in recs]
    items = [dataset[i] for i in range(len(dataset))]
    return (np.array([int(it["label"]) for it in items]), [str(it["meta"].get("body_part", "all")) for it in items],
            [str(it["meta"].get("study", i)) for i, it in enumerate(items)])


def study_type_weights(labels: Sequence[int], parts: Sequence[str]) -> dict[str, tuple[float, float]]:
    """MURA's per-study-type BCE weights: {part: (w0, w1)} with w1 = N/(A+N), w0 = A/(A+N)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # part -> [normal, abnormal]
    for y, p in zip(labels, parts):
        counts[p][int(y)] += 1
    weights = {}
    for part, (n, a) in counts.items():
        if n == 0 or a == 0:  # a one-class study type: plain BCE rather than a zero weight
            weights[part] = (0.5, 0.5)
        else:
            weights[part] = (a / (a + n), n / (a + n))
    return weights


def weighted_bce_step(weights: dict[str, tuple[float, float]], model_input):
    """Engine step for the 1-logit head with MURA's per-study-type weights (batch meta carries body_part)."""

    def step(model, batch, device):
        x = model_input(batch["image"].to(device))  # (B, 3, H, W)
        y = batch["label"].to(device).float()  # (B,)
        logits = model(x)[:, 0]  # (B,)
        w = torch.tensor([weights.get(p, (0.5, 0.5)) for p in batch["meta"]["body_part"]], device=device)
        per_item = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none")
        loss = (per_item * torch.where(y > 0.5, w[:, 1], w[:, 0])).mean()
        return loss, logits, batch["label"]

    return step


def logit_metrics(outputs: torch.Tensor, targets: torch.Tensor) -> dict:
    """Engine metric_fn: image-level metrics from the logits gathered over the validation set."""
    return binary_metrics(torch.sigmoid(outputs.float()).numpy(), targets.numpy())


def study_level(probs: np.ndarray, labels: np.ndarray, studies: Sequence[str]):
    """Mean of each study's image probabilities -> (study probs, study labels), as MURA evaluates."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(studies):
        groups[s].append(i)
    keys = list(groups)
    return (np.array([probs[groups[k]].mean() for k in keys]), np.array([labels[groups[k][0]] for k in keys]),
            keys)


def full_evaluation(probs: np.ndarray, labels: np.ndarray, parts: Sequence[str], studies: Sequence[str]) -> dict:
    """Image- and study-level metrics, overall and per body part."""
    result = {"image": binary_metrics(probs, labels)}
    sp, sl, keys = study_level(probs, labels, studies)
    result["study"] = binary_metrics(sp, sl)
    part_of_study = {s: p for s, p in zip(studies, parts)}
    result["per_body_part"] = {}
    for part in sorted(set(parts)):
        idx = [k for k, s in enumerate(keys) if part_of_study[s] == part]
        m = binary_metrics(sp[idx], sl[idx])
        result["per_body_part"][part] = {k: (v if not (isinstance(v, float) and math.isnan(v)) else None)
                                         for k, v in m.items()}
    return result


def bone_datasets(cfg: ClassifierConfig):
    """(train, validation) datasets for --dataset phantom|mura; validation is never augmented."""
    if cfg.dataset == "phantom":
        from common.data.phantoms.bone import BODY_PARTS, LESION_TYPES, BoneXrayPhantom

        parts = tuple(cfg.body_parts) if cfg.body_parts else tuple(BODY_PARTS)
        lesions = tuple(cfg.lesion_types or LESION_TYPES)
        val_conf = cfg.confounder if cfg.val_confounder is None else cfg.val_confounder
        train = BoneXrayPhantom(n=cfg.n_train, size=cfg.size, seed=cfg.seed, body_parts=parts,
                                lesion_types=lesions, confounder=cfg.confounder)
        # a disjoint seed stream: validation images never appear in training
        val = BoneXrayPhantom(n=cfg.n_val, size=cfg.size, seed=cfg.seed + 100_000, body_parts=parts,
                              lesion_types=lesions, confounder=val_conf)
        return Materialized(train), Materialized(val)
    from common.data.datasets import DATASETS

    if cfg.data_root is None:
        raise InputError(f"--dataset {cfg.dataset} needs --data-root", hint="pass the folder holding MURA-v1.1/")
    make = DATASETS[cfg.dataset]
    parts = cfg.body_parts or None
    return (make(cfg.data_root, split="train", size=cfg.size, body_parts=parts),
            make(cfg.data_root, split="valid", size=cfg.size, body_parts=parts))


def probabilities(model, dataset, device, batch_size: int = 16) -> np.ndarray:
    """p(abnormal) of every item, (N,), from a 1-logit head."""

    def fn(m, batch, dev):
        return torch.sigmoid(m(to_model_input(batch["image"].to(dev)))[:, 0].float())

    return predict(model, dataset, fn, device, batch_size).numpy()


def train_crop_side(cfg: ClassifierConfig) -> int | None:
    """Side in pixels of the random training crop (``cfg.train_crop``, a fraction of ``cfg.size``); None: whole
    images."""
    return round(cfg.train_crop * cfg.size) if cfg.train_crop and cfg.train_crop < 1 else None


def train_classifier(cfg: ClassifierConfig, device, out: Path):
    """Train (or resume) per the MURA protocol; returns (model with the best weights, result dict)."""
    train, val = bone_datasets(cfg)
    labels, parts, _ = labels_and_groups(train)
    weights = study_type_weights(labels, parts)
    log(f"training set: {len(train)} images ({int(labels.sum())} abnormal); validation: {len(val)}; "
        "BCE weights (w0, w1) per study type: " + ", ".join(f"{p}=({a:.2f}, {b:.2f})" for p, (a, b) in weights.items()))
    torch.manual_seed(cfg.seed)  # the weight initialisation follows --seed, whoever calls (train.py, the demo)
    model = build_densenet(cfg.arch, num_outputs=1, weights=cfg.weights, cam_stride=cfg.cam_stride,
                           pooling=cfg.pooling, lse_r=cfg.lse_r).to(device)
    model_input = to_model_input
    if cfg.channels_last:  # NHWC: oneDNN's CPU convolutions and CUDA AMP run faster on it
        model = model.to(memory_format=torch.channels_last)

        def model_input(images):  # (B, 3, H, W) stored NHWC
            return to_model_input(images).contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # batches per epoch on each rank (DistributedSampler pads the set to a multiple of the world size)
    steps_per_epoch = math.ceil(math.ceil(len(train) / get_world_size()) / cfg.batch_size)
    scheduler = make_scheduler(cfg.schedule, optimizer, cfg.epochs, steps_per_epoch)
    if cfg.pooling == "lse" and cfg.lse_r_start:
        scheduler = SharpnessRamp(model, scheduler, cfg.lse_r_start, cfg.lse_r, cfg.epochs)
    fit_cfg = FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, out=out, seed=cfg.seed, resume=cfg.resume,
                        workers=cfg.workers, monitor="val_loss", mode="min", args=asdict(cfg))
    step = weighted_bce_step(weights, model_input)
    augmented = Augmented(train, degrees=cfg.augment_degrees, crop=train_crop_side(cfg))  # MURA: up to 30 degrees
    fit_result = fit(model, augmented, val, step, optimizer, fit_cfg, device, scheduler=scheduler,
                     metric_fn=logit_metrics)
    best = checkpoint.load(out / "best.pt", map_location=device) if (out / "best.pt").exists() else None
    if best is not None:
        model.load_state_dict(best["model"])
    vlabels, vparts, vstudies = labels_and_groups(val)
    probs = probabilities(model, val, device, cfg.batch_size)
    evaluation = full_evaluation(probs, vlabels, vparts, vstudies)
    return model, {"fit": fit_result, "evaluation": evaluation, "best_epoch": best["epoch"] + 1 if best else None}

