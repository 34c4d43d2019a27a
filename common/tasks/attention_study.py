"""Recipe of the attention study (04_Miscellaneous/attention.py): with and without attention, across n.

* classifier: :class:`common.models.smallcnn.SmallCNN` with no block, squeeze-and-excitation or CBAM after each stage
  (:mod:`common.models.attention`), normal / abnormal on the bone phantom (or MURA); accuracy and AUROC on a fixed
  test set, and on its abnormal images the pointing game of CAM, Grad-CAM (:func:`common.cam.explain`) and CBAM's
  spatial maps against the lesion masks;
* segmenter: :class:`common.models.unet.UNet` with and without additive attention gates (Oktay et al. 2018), the LV of
  the cardiac phantom (or ACDC); 3D Dice on fixed test volumes, and the pointing game of each gate's coefficients
  against the LV on the test slices that show it.

A run trains a fixed number of optimiser steps whatever its n (epochs = steps / batches per epoch), so small and
large n differ only in the data. The run's seed draws its training set (nested across n: the first n of a
seed's stream) and initialises the network; the test set is the same for every run. Each localisation table also
scores a map that is brightest at the image centre: the organs of both phantoms lie near it, so a map only counts as
pointing at the target when it beats that prior.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from common.cam import explain
from common.cam.scoring import pointing_tolerance
from common.engine import FitConfig, fit, predict
from common.errors import InputError
from common.io.atomic import save_npz
from common.metrics import auroc, pointing_game
from common.models.attention import AttentionGate, attention_factory, attention_maps
from common.models.smallcnn import SmallCNN
from common.models.unet import UNet
from common.runtime import log, seed_everything
from common.tasks.lv_weak_seg import dice_by_volume, load_cardiac

CLASSIFIER_CONFIGS = ("none", "se", "cbam")      # keys of common.models.attention.ATTENTION
SEGMENTER_CONFIGS = ("unet", "attention_unet")
TRAIN_STREAM = 1000   # the training images of run seed s come from the phantom seed TRAIN_STREAM * (data_seed + 1) + s
FIGURE_ITEMS = 4

# The publication setting (a GPU): 3 seeds over the whole n grid, 64 px, every lesion type.
FULL = {"ns": (25, 50, 100, 200, 500, 1000, 2000), "volumes": (2, 4, 8, 16, 32), "seeds": 3, "steps": 1500,
        "seg_steps": 1000, "batch_size": 32, "seg_batch_size": 16, "lr": 2e-3, "size": 64, "seg_size": 64,
        "width": 16, "lesion_types": ("fracture", "lytic", "hardware"), "n_test": 1000, "test_volumes": 10}
# --quick, within 140 CPU-seconds on two cores: 48 px, two n, two seeds, a few hundred steps; fractures (a few
# pixels wide at 48 px) are left out so that a small CNN learns something in 150 steps.
QUICK = {"ns": (60, 240), "volumes": (2, 8), "seeds": 2, "steps": 150, "seg_steps": 100, "batch_size": 16,
         "seg_batch_size": 8, "size": 48, "seg_size": 48, "width": 8, "lesion_types": ("lytic", "hardware"),
         "n_test": 200, "test_volumes": 4, "threads": 1}


@dataclass(frozen=True)
class ClassifierStudy:
    """What a classifier run's result depends on besides its attention block, n and seed."""

    dataset: str = "phantom"          # phantom | mura
    data_root: str | None = None
    size: int = 64
    lesion_types: tuple[str, ...] = ("fracture", "lytic", "hardware")
    width: int = 8
    stages: int = 3
    reduction: int = 4                # SE / CBAM channel reduction (Hu et al.: 16, for 64+ channels; ours are 8-32)
    n_test: int = 400
    steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    data_seed: int = 0


@dataclass(frozen=True)
class SegmenterStudy:
    """What a segmenter run's result depends on besides its gates, n (training volumes) and seed."""

    dataset: str = "phantom"          # phantom | acdc
    data_root: str | None = None
    size: int = 64
    crop: float = 0.5                 # central fraction of the field of view kept (a heart ROI, as ACDC pipelines)
    label: int = 3                    # LV cavity
    width: int = 8
    depth: int = 3
    n_test: int = 6                   # volumes
    steps: int = 600
    batch_size: int = 16
    lr: float = 2e-3
    data_seed: int = 0


class Tensors(Dataset):
    """Items {key: tensor[i]} of equally long tensors kept in memory."""

    def __init__(self, **tensors: torch.Tensor):
        lengths = {len(t) for t in tensors.values()}
        assert len(lengths) == 1, {k: len(t) for k, t in tensors.items()}
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> dict:
        return {k: t[index] for k, t in self.tensors.items()}


def random_flips(x: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same random horizontal / vertical flip of each image of ``x`` (B, C, H, W) and of ``others`` (B, ..., H, W)
    (torch's RNG, which common.engine reseeds every epoch, so a resumed run flips alike)."""
    out = [x, *others]
    for dim in (-1, -2):
        flip = torch.rand(x.shape[0]) < 0.5
        out = [torch.where(flip.view(-1, *[1] * (t.ndim - 1)).to(t.device), t.flip(dim), t) for t in out]
    return tuple(out)


def epochs_for(steps: int, n: int, batch_size: int) -> int:
    return max(1, math.ceil(steps / math.ceil(n / batch_size)))


def centre_prior(size: int) -> np.ndarray:
    """A map brightest at the image centre (a Gaussian of a quarter side): the localisation baseline."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return np.exp(-(xx**2 + yy**2) / (2 * (size / 4) ** 2)).astype(np.float32)


def pointing_rates(maps: dict[str, np.ndarray], masks: np.ndarray, size: int) -> dict[str, float]:
    """Share of images whose map peaks within the tolerance of the mask, per map name; maps (N, H, W)."""
    tol = pointing_tolerance(size)
    prior = centre_prior(masks.shape[-1])
    out = {name: float(np.mean([pointing_game(m, t, tol) for m, t in zip(ms, masks, strict=True)]))
           for name, ms in maps.items()}
    out["centre"] = float(np.mean([pointing_game(prior, t, tol) for t in masks]))
    return out


# ------------------------------------------------------------------------------------------------ classifier


@functools.lru_cache(maxsize=4)
def _bone_phantom(size: int, n: int, seed: int, lesion_types: tuple[str, ...]) -> dict[str, torch.Tensor]:
    from common.data.phantoms.bone import BoneXrayPhantom

    ds = BoneXrayPhantom(n=n, size=size, seed=seed, lesion_types=lesion_types)
    items = [ds[i] for i in range(n)]
    return {"image": torch.stack([it["image"] for it in items]), "label": torch.stack([it["label"] for it in items]),
            "mask": torch.stack([it["mask"] for it in items]).bool()}


@functools.lru_cache(maxsize=2)
def _mura(root: str, split: str, size: int) -> dict[str, torch.Tensor]:
    from common.data.datasets import DATASETS

    ds = DATASETS["mura"](root, split=split, size=size)
    items = [ds[i] for i in range(len(ds))]
    return {"image": torch.stack([it["image"] for it in items]), "label": torch.stack([it["label"] for it in items]),
            "mask": torch.zeros(len(items), size, size, dtype=torch.bool)}  # MURA has no lesion masks


def classifier_data(cfg: ClassifierStudy, n: int, seed: int) -> tuple[Tensors, Tensors]:
    """(train: n images drawn by ``seed``, test: the fixed ``cfg.n_test`` images); items image (1, H, W), label,
    mask (H, W) bool (all False on MURA)."""
    if cfg.dataset == "phantom":
        test = _bone_phantom(cfg.size, cfg.n_test, cfg.data_seed, cfg.lesion_types)
        train = _bone_phantom(cfg.size, n, TRAIN_STREAM * (cfg.data_seed + 1) + seed, cfg.lesion_types)
        return Tensors(**train), Tensors(**test)
    if cfg.dataset != "mura" or cfg.data_root is None:
        raise InputError(f"unknown classifier dataset {cfg.dataset!r} or no --data-root",
                         hint="use --dataset phantom, or --dataset mura --data-root DIR")
    pool, test = _mura(cfg.data_root, "train", cfg.size), _mura(cfg.data_root, "valid", cfg.size)
    if n > len(pool["label"]):
        raise InputError(f"n = {n} is more than the {len(pool['label'])} MURA training images", path=cfg.data_root)
    pick = torch.from_numpy(np.random.default_rng(seed).permutation(len(pool["label"]))[:n])
    keep = torch.arange(min(cfg.n_test, len(test["label"])))
    return Tensors(**{k: v[pick] for k, v in pool.items()}), Tensors(**{k: v[keep] for k, v in test.items()})


def classifier_step(model, batch, device):
    x, y = batch["image"].to(device), batch["label"].to(device)
    if model.training:
        (x,) = random_flips(x)
    x = x.contiguous(memory_format=torch.channels_last)
    logits = model(x)  # (B, 2)
    return F.cross_entropy(logits.float(), y), logits, y


def build_classifier(cfg: ClassifierStudy, attention: str) -> SmallCNN:
    net = SmallCNN(1, 2, width=cfg.width, stages=cfg.stages, attention=attention_factory(attention, cfg.reduction))
    return net.to(memory_format=torch.channels_last)  # NHWC: oneDNN's CPU convolutions run ~25 % faster on it


def cam_keys(stages: int) -> dict[str, tuple[str, int]]:
    """Map name -> (CAM method, stage): CAM at the last stage (the map the head pools), Grad-CAM one stage earlier
    (at the last stage Grad-CAM equals CAM for a global-average-pool + linear head, Selvaraju et al. 2017)."""
    keys = {f"cam{stages}": ("cam", stages)}
    if stages > 1:
        keys[f"gradcam{stages - 1}"] = ("gradcam", stages - 1)
    return keys


def explain_abnormal(model: SmallCNN, images: torch.Tensor, device, batch_size: int = 64) -> dict[str, np.ndarray]:
    """CAM / Grad-CAM of the abnormal class (:func:`cam_keys`) and every CBAM spatial map, (N, H, W) each."""
    model.eval()
    maps: dict[str, list] = {}
    keys = cam_keys(len(model.stages))
    layers = {stage: model.cam_layers()[stage] for _, stage in keys.values()}
    methods = tuple(dict.fromkeys(method for method, _ in keys.values()))
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device)
        _, cams = explain(model, x, methods=methods, layers=layers, target=1)
        _, att = attention_maps(model, x)
        for name, (method, stage) in keys.items():
            maps.setdefault(name, []).append(cams[method][stage].cpu().numpy())
        for name, m in att.items():
            maps.setdefault(name, []).append(m.numpy())
    return {k: np.concatenate(v) for k, v in maps.items()}


def run_classifier(device: str, resume: bool, run, out: Path) -> dict:
    """common.sweep's run function: ``run.params`` = {"study": ClassifierStudy, "attention": name}; returns test
    accuracy and AUROC, the pointing game of every map on the abnormal test images that have a lesion mask, and
    writes ``figure.npz`` (a few of them with their maps)."""
    cfg, attention, out, device = run.params["study"], run.params["attention"], Path(out), torch.device(device)
    train, test = classifier_data(cfg, run.n, run.seed)
    seed_everything(run.seed)
    model = build_classifier(cfg, attention)
    epochs = epochs_for(cfg.steps, len(train), cfg.batch_size)
    log(f"--- {run.label}: {len(train)} training images ({int(train.tensors['label'].sum())} abnormal), "
        f"{epochs} epochs")
    fit_cfg = FitConfig(epochs=epochs, batch_size=cfg.batch_size, out=out, seed=run.seed, resume=resume,
                        args={"study": str(asdict(cfg)), "attention": attention, "n": str(run.n)})
    fit(model, train, None, classifier_step, torch.optim.Adam(model.parameters(), lr=cfg.lr), fit_cfg, device)
    probs = predict(model, test, lambda m, b, d: torch.softmax(m(b["image"].to(d)).float(), 1)[:, 1], device,
                    batch_size=128).numpy()
    labels = test.tensors["label"].numpy()
    metrics = {"accuracy": float(((probs > 0.5) == labels).mean()), "auroc": auroc(labels, probs),
               "n_train": len(train), "epochs": epochs}
    masks = test.tensors["mask"]
    scored = torch.nonzero((test.tensors["label"] == 1) & masks.flatten(1).any(1)).flatten()
    if len(scored):
        maps = explain_abnormal(model, test.tensors["image"][scored], device)
        metrics["pointing"] = pointing_rates(maps, masks[scored].numpy(), cfg.size)
        metrics["n_pointing"] = len(scored)
        pick = slice(0, FIGURE_ITEMS)
        save_npz(out / "figure.npz", image=test.tensors["image"][scored][pick, 0].numpy(),
                 mask=masks[scored][pick].numpy(), prob=probs[scored.numpy()][pick],
                 **{f"map_{k}": v[pick] for k, v in maps.items()})
    return metrics


# ------------------------------------------------------------------------------------------------ segmenter


def _centre_crop(volumes: list[np.ndarray], crop: float, size: int, order: int) -> list[np.ndarray]:
    """The central ``crop`` of each (D, H, W) volume resized to ``size`` (order 1 images, 0 labels)."""
    import cv2

    out = []
    for v in volumes:
        h, w = v.shape[1:]
        ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
        v = v[:, (h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
        interp = cv2.INTER_AREA if order else cv2.INTER_NEAREST
        out.append(np.stack([cv2.resize(np.ascontiguousarray(s), (size, size), interpolation=interp) for s in v]))
    return out


@functools.lru_cache(maxsize=4)
def _cardiac(dataset: str, data_root: str | None, split: str, size: int, crop: float, n: int, seed: int,
             offset: int) -> tuple[list, list]:
    """(images, labels), lists of (D, size, size) volumes: phantom volumes ``offset`` .. ``offset + n - 1`` of
    ``seed`` rendered at ``size / crop`` and cropped; ACDC's ``split`` (all volumes, every one when n = 0)."""
    render = int(round(size / crop))
    if dataset == "phantom":
        from common.data.phantoms.cardiac import CardiacPhantomVolumes

        ds = CardiacPhantomVolumes(n, render, seed=seed, offset=offset)
        vols = [ds.volume(i)[:2] for i in range(len(ds))]
        images, labels = [v for v, _ in vols], [lab for _, lab in vols]
    else:
        images, labels, _ = load_cardiac(dataset, split, render, n, seed, data_root)
    return _centre_crop(images, crop, size, 1), _centre_crop(labels, crop, size, 0)


def _slices(images: list, labels: list, label: int) -> Tensors:
    volume = torch.cat([torch.full((len(v),), k) for k, v in enumerate(images)])
    return Tensors(image=torch.from_numpy(np.concatenate(images)[:, None].astype(np.float32)),
                   mask=torch.from_numpy(np.concatenate(labels) == label).long(), volume=volume)


def segmenter_data(cfg: SegmenterStudy, n: int, seed: int) -> tuple[Tensors, Tensors]:
    """(train: the slices of n volumes drawn by ``seed``, test: those of the fixed ``cfg.n_test`` volumes); items
    image (1, H, W), mask (H, W) int64 (1 = the label), volume (index of its volume)."""
    if cfg.dataset == "phantom":
        test = _cardiac("phantom", None, "val", cfg.size, cfg.crop, cfg.n_test, cfg.data_seed, 0)
        train = _cardiac("phantom", None, "train", cfg.size, cfg.crop, n, cfg.data_seed, cfg.n_test + 10_000 * seed)
    else:
        pool = _cardiac(cfg.dataset, cfg.data_root, "train", cfg.size, cfg.crop, 0, cfg.data_seed, 0)
        if n > len(pool[0]):
            raise InputError(f"n = {n} is more than the {len(pool[0])} ACDC training volumes", path=cfg.data_root)
        pick = np.random.default_rng(seed).permutation(len(pool[0]))[:n]
        train = [pool[0][i] for i in pick], [pool[1][i] for i in pick]
        test = _cardiac(cfg.dataset, cfg.data_root, "val", cfg.size, cfg.crop, cfg.n_test, cfg.data_seed, 0)
    if not any((lab == cfg.label).any() for lab in train[1]):
        raise InputError(f"label {cfg.label} does not occur in the {cfg.dataset} training masks",
                         hint="ACDC and the phantom: 1 = RV, 2 = myocardium, 3 = LV cavity")
    return _slices(*train, cfg.label), _slices(*test, cfg.label)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus the soft Dice loss of the foreground (Milletari et al. 2016, https://arxiv.org/abs/
    1606.04797) over the batch: the LV covers a few percent of a slice, and Dice keeps it from being ignored."""
    ce = F.cross_entropy(logits, target)
    p, t = torch.softmax(logits, 1)[:, 1], (target == 1).float()
    return ce + 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)


def segmenter_step(model, batch, device):
    x, y = batch["image"].to(device), batch["mask"].to(device)
    if model.training:
        x, y = random_flips(x, y)
    x = x.contiguous(memory_format=torch.channels_last)
    logits = model(x)  # (B, 2, H, W)
    return dice_ce_loss(logits.float(), y), logits, y


def build_segmenter(cfg: SegmenterStudy, config: str) -> UNet:
    if config not in SEGMENTER_CONFIGS:
        raise ValueError(f"unknown segmenter {config!r}; choose from {', '.join(SEGMENTER_CONFIGS)}")
    gate = AttentionGate if config == "attention_unet" else None
    return UNet(1, 2, width=cfg.width, depth=cfg.depth, gate=gate).to(memory_format=torch.channels_last)


def run_segmenter(device: str, resume: bool, run, out: Path) -> dict:
    """common.sweep's run function: ``run.params`` = {"study": SegmenterStudy, "model": "unet" or
    "attention_unet"}; returns 3D Dice of the label on the test volumes, the pointing game of every gate's
    coefficients on the test slices that show the label, and writes ``figure.npz``."""
    cfg, config, out, device = run.params["study"], run.params["model"], Path(out), torch.device(device)
    train, test = segmenter_data(cfg, run.n, run.seed)
    seed_everything(run.seed)
    model = build_segmenter(cfg, config)
    epochs = epochs_for(cfg.steps, len(train), cfg.batch_size)
    log(f"--- {run.label}: {run.n} training volumes ({len(train)} slices), {epochs} epochs")
    fit_cfg = FitConfig(epochs=epochs, batch_size=cfg.batch_size, out=out, seed=run.seed, resume=resume,
                        args={"study": str(asdict(cfg)), "model": config, "n": str(run.n)})
    fit(model, train, None, segmenter_step, torch.optim.Adam(model.parameters(), lr=cfg.lr), fit_cfg, device)
    model.eval()
    images, truth = test.tensors["image"], test.tensors["mask"].numpy().astype(bool)
    prob, maps = [], {}
    for i in range(0, len(images), 64):
        logits, att = attention_maps(model, images[i:i + 64].to(device))
        prob.append(torch.softmax(logits.float(), 1)[:, 1].cpu().numpy())
        for name, m in att.items():
            maps.setdefault(name, []).append(m.numpy())
    prob, maps = np.concatenate(prob), {k: np.concatenate(v) for k, v in maps.items()}
    scores = dice_by_volume(prob > 0.5, truth, test.tensors["volume"].numpy())
    metrics = {"dice3d": scores["dice3d"], "dice2d": scores["dice2d"], "n_train_slices": len(train),
               "epochs": epochs}
    shown = np.flatnonzero(truth.any((1, 2)))
    metrics["pointing"] = pointing_rates({k: v[shown] for k, v in maps.items()}, truth[shown], cfg.size)
    metrics["n_pointing"] = len(shown)
    pick = shown[np.linspace(0, len(shown) - 1, min(FIGURE_ITEMS, len(shown))).astype(int)]
    save_npz(out / "figure.npz", image=images[pick, 0].numpy(), mask=truth[pick], prob=prob[pick],
             **{f"map_{k}": v[pick] for k, v in maps.items()})
    return metrics
