"""The segmentation-explanation demo's recipe: the LV ENet it explains (cached), the layers, and how maps are scored.

``00_Interpretability/explain_segmentation.py`` asks where an ENet (Paszke et al. 2016, the segmenter of
``01_WeaklySupervised``) looks when it calls a pixel LV. The ENet is trained here with full supervision (cross-entropy
on the true LV masks, ``common.tasks.lv_weak_seg``'s "fs" variant) on the cardiac phantom, through the one training
loop, and cached under ``.cache/models/`` (``MIADEEPSSL_CACHE`` moves it) so later runs only explain.

Score of a map (SEG-Grad-CAM's question, Vinogradova et al. 2020, https://arxiv.org/abs/2002.11434): the share of its
energy (sum of the [0, 1] map) inside the LV + myocardium, per slice; beside it the share a uniform map would have
(the region's area fraction), so a share above that means the map concentrates on the heart.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from common.data.phantoms.cardiac import LABELS
from common.engine import FitConfig, checkpoint, fit
from common.models.enet import ENet
from common.runtime import log, seed_everything
from common.tasks.lv_weak_seg import VARIANTS, WeakVolumes, collate_volumes, load_cardiac, make_step, volume_dice_metric

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MIADEEPSSL_CACHE", ROOT / ".cache")) / "models"

# ENet's stages whose output is one tensor (the downsampling bottlenecks return their pooling indices too)
LAYERS = ("stage1", "stage2", "stage3", "stage4", "stage5")
LV, MYO = LABELS["lv"], LABELS["myo"]


@dataclass(frozen=True)
class SegmenterConfig:
    """The LV ENet the demo explains (phantom or ACDC volumes, full supervision)."""

    dataset: str = "phantom"
    data_root: str | None = None
    size: int = 64
    n_train: int = 8
    n_val: int = 2
    epochs: int = 30
    lr: float = 5e-3
    seed: int = 0


DEMO = SegmenterConfig()
DEMO_VERSION = 1


def demo_path(cfg: SegmenterConfig = DEMO) -> Path:
    tag = "" if cfg == DEMO else "_" + "_".join(f"{k}{v}" for k, v in asdict(cfg).items() if k != "data_root")
    return CACHE / f"lv_explain_v{DEMO_VERSION}{tag}.pt"


def load_split(cfg: SegmenterConfig, split: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Image and label volumes (D, H, W) of the training or validation patients (disjoint)."""
    n = cfg.n_train if split == "train" else cfg.n_val
    images, labels, _ = load_cardiac(cfg.dataset, split, cfg.size, n, seed=cfg.seed, data_root=cfg.data_root,
                                     n_train=cfg.n_train)
    return images, labels


def train_segmenter(cfg: SegmenterConfig, device: torch.device, work: Path) -> tuple[ENet, dict]:
    """ENet (2 classes: LV vs the rest) trained on the true masks; returns (model, {"val_dice3d": ...})."""
    seed_everything(cfg.seed)
    train = WeakVolumes(*load_split(cfg, "train"), label=LV)
    val = WeakVolumes(*load_split(cfg, "val"), label=LV)
    model = ENet(in_channels=1, num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    fit_cfg = FitConfig(epochs=cfg.epochs, batch_size=1, out=work, seed=cfg.seed, resume=True, monitor="val_dice3d",
                        mode="max", collate_fn=collate_volumes, args=asdict(cfg))
    result = fit(model, train, val, make_step(VARIANTS["fs"]), optimizer, fit_cfg, device,
                 metric_fn=volume_dice_metric(val.slice_volume_ids()))
    model.load_state_dict(checkpoint.load(work / "best.pt", map_location=device)["model"])
    best = max(result["history"], key=lambda h: h["val_dice3d"])
    return model, {"val_dice3d": best["val_dice3d"], "best_epoch": best["epoch"]}


def demo_segmenter(device: torch.device, cfg: SegmenterConfig = DEMO) -> tuple[ENet, dict]:
    """The cached LV ENet of ``cfg`` (trained on first use), in eval mode, and its validation 3D Dice."""
    path = demo_path(cfg)
    if not path.exists():
        log(f"training the LV ENet the demo explains once ({cfg.epochs} epochs on {cfg.n_train} phantom volumes at "
            f"{cfg.size} px); it is cached at {path}")
        work = path.with_suffix("")  # keeps last.pt: a killed first run resumes
        model, info = train_segmenter(cfg, device, work)
        checkpoint.save(path, model=model.state_dict(), args=asdict(cfg), metrics=info)
    saved = checkpoint.load(path, map_location=device)
    model = ENet(in_channels=1, num_classes=2)
    model.load_state_dict(saved["model"])
    return model.to(device).eval(), saved["metrics"]


def enet_layers(model: ENet, names=LAYERS) -> dict[str, torch.nn.Module]:
    return {name: getattr(model, name) for name in names}


def heart_region(labels: np.ndarray) -> np.ndarray:
    """LV cavity + myocardium, bool, same shape as the label map."""
    return (labels == LV) | (labels == MYO)


def energy_share(maps: torch.Tensor | np.ndarray, region: np.ndarray) -> np.ndarray:
    """(N, H, W) maps in [0, 1], (N, H, W) bool region -> (N,) share of each map's sum inside the region (NaN for an
    all-zero map: it points nowhere)."""
    maps = np.asarray(maps, np.float64)
    assert maps.shape == region.shape, f"maps {maps.shape} vs region {region.shape}"
    total = maps.sum((1, 2))
    inside = (maps * region).sum((1, 2))
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
