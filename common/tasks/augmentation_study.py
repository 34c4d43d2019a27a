"""The augmentation study's recipe: a classifier (bone phantom / MURA) and a segmenter (cardiac phantom / ACDC LV)
trained on n labelled samples with each augmentation family, scored on a fixed held-out set.

A run (``common.sweep``) is (family, n, seed): the seed draws the n training samples (nested: a run's n samples
hold those of every smaller n), the initialisation and the augmentation. Every run takes the same number of
optimizer steps whatever n (the n items cycled), so a small n is not under-trained and a family's gain is not a
longer training in disguise. The classifier is scored by AUROC on held-out images, the segmenter by the mean 3D
Dice of the LV over held-out volumes.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from common.data.augment import (
    MIXING,
    AugmentConfig,
    AugmentedDataset,
    BatchMixer,
    JointAugment,
    MixingCollate,
    resolve,
)
from common.errors import InputError

TASKS = ("classifier", "segmenter")
DATASETS = {"phantom": TASKS, "mura": ("classifier",), "acdc": ("segmenter",)}
METRICS = {"classifier": "auroc", "segmenter": "dice"}
LV = 3  # ACDC / phantom label of the LV cavity


@dataclass(frozen=True)
class StudyConfig:
    """Everything a run's result depends on besides its family, n and seed."""

    task: str = "classifier"
    dataset: str = "phantom"
    data_root: str | None = None
    size: int = 64
    pool: int = 1000                 # phantom: images (classifier) or volumes (segmenter) n is drawn from
    roi: float = 0.5                 # segmenter: the central fraction of the field of view kept (around the heart)
    lesion_types: tuple[str, ...] = ("fracture", "lytic", "hardware")  # bone phantom: the abnormal items' lesions
    n_test: int = 400                # held-out images / volumes (real data: a cap, 0 = the whole split)
    epochs: int = 10
    epoch_samples: int = 256         # items an epoch shows (the n training items cycled), whatever n
    batch_size: int = 16
    lr: float = 2e-3
    width: int = 16                  # SmallCNN / UNet channels at the first level
    depth: int = 4                   # SmallCNN stages / UNet levels
    data_seed: int = 0               # the phantom's items (the run's seed draws the n of them)
    workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if self.task not in TASKS or self.dataset not in DATASETS or self.task not in DATASETS[self.dataset]:
            raise InputError(f"no {self.task!r} study on dataset {self.dataset!r}",
                             hint="; ".join(f"{d}: {', '.join(t)}" for d, t in DATASETS.items()))


class Items(Dataset):
    """In-memory items {"image": (1, H, W) float32, "label": () int64} or {"image", "mask": (H, W) int64}."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class Cycled(Dataset):
    """``dataset`` repeated to ``length`` items (index i is item i mod len), so an epoch is a fixed number of steps."""

    def __init__(self, dataset: Dataset, length: int):
        self.dataset, self.length = dataset, max(length, len(dataset))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        return self.dataset[i % len(self.dataset)]


# ------------------------------------------------------------------------------------------------ data


def _classifier_item(item: dict) -> dict:
    return {"image": item["image"].float(), "label": torch.as_tensor(item["label"], dtype=torch.int64)}


def render_side(cfg: StudyConfig) -> int:
    """The side the cardiac volumes are loaded at, so that their central ``roi`` is ``cfg.size`` pixels."""
    return int(round(cfg.size / cfg.roi))


def _lv_items(volumes: list[np.ndarray], labels: list[np.ndarray], size: int) -> list[list[dict]]:
    """The central size x size window of every slice (the region of interest around the heart, as cardiac pipelines
    crop before segmenting) as items with the LV mask, grouped by volume."""
    out = []
    for v, lab in zip(volumes, labels, strict=True):
        y0, x0 = (v.shape[1] - size) // 2, (v.shape[2] - size) // 2
        win = (slice(None), slice(y0, y0 + size), slice(x0, x0 + size))
        v, lab = np.ascontiguousarray(v[win], np.float32), lab[win]
        out.append([{"image": torch.from_numpy(v[s])[None],  # (1, H, W)
                     "mask": torch.from_numpy((lab[s] == LV).astype(np.int64))} for s in range(len(v))])  # (H, W)
    return out


@functools.lru_cache(maxsize=4)
def pool_and_test(cfg: StudyConfig) -> tuple[object, list, np.ndarray]:
    """(pool, test, pool labels or None): the classifier's pool is a Dataset, its test a list of items; the
    segmenter's pool and test are lists of volumes (each a list of slice items). Cached per process."""
    if cfg.task == "classifier":
        if cfg.dataset == "phantom":
            from common.data.phantoms.bone import BoneXrayPhantom

            ds = BoneXrayPhantom(n=cfg.pool + cfg.n_test, size=cfg.size, seed=cfg.data_seed,
                                 lesion_types=cfg.lesion_types)
            labels = np.array([ds.item_spec(i)["lesion_type"] != "none" for i in range(cfg.pool)], np.int64)
            test = [_classifier_item(ds[i]) for i in range(cfg.pool, cfg.pool + cfg.n_test)]
            return torch.utils.data.Subset(ds, range(cfg.pool)), test, labels
        from common.data.datasets.mura import MURA

        pool, valid = MURA(cfg.data_root, "train", size=cfg.size), MURA(cfg.data_root, "valid", size=cfg.size)
        count = min(len(valid), cfg.n_test) if cfg.n_test else len(valid)
        keep = np.random.default_rng(cfg.data_seed).permutation(len(valid))[:count]
        return pool, [_classifier_item(valid[int(i)]) for i in sorted(keep)], pool.labels
    from common.tasks.lv_weak_seg import load_cardiac

    n_train = cfg.pool if cfg.dataset == "phantom" else 0
    side = render_side(cfg)
    images, labels, _ = load_cardiac(cfg.dataset, "train", side, n_train, cfg.data_seed, cfg.data_root)
    t_images, t_labels, _ = load_cardiac(cfg.dataset, "val", side, cfg.n_test, cfg.data_seed, cfg.data_root,
                                         n_train=n_train)
    return _lv_items(images, labels, cfg.size), _lv_items(t_images, t_labels, cfg.size), None


def pool_size(cfg: StudyConfig) -> int:
    """How many samples n can be drawn from (classifier: images; segmenter: volumes)."""
    return len(pool_and_test(cfg)[0])


def draw(cfg: StudyConfig, n: int, seed: int) -> list[int]:
    """The pool indices of a run's n training samples: a seed's permutation, cut at n, so smaller n are nested in
    larger ones. Classifier: half of each class (both classes from n = 2 on)."""
    size = pool_size(cfg)
    if n > size:
        raise InputError(f"n = {n} is more than the {size} samples of the pool", hint="lower the largest --ns value")
    rng = np.random.default_rng([cfg.data_seed, seed, 7])
    labels = pool_and_test(cfg)[2]
    if labels is None:
        return [int(i) for i in rng.permutation(size)[:n]]
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in (0, 1)]
    order = [int(i) for pair in zip(*by_class, strict=False) for i in pair]  # alternate the classes
    if n > len(order):
        raise InputError(f"n = {n} needs {n - n // 2} images of each class; the pool has {len(by_class[0])} normal "
                         f"and {len(by_class[1])} abnormal", hint="lower the largest --ns value")
    return order[:n]


def training_items(cfg: StudyConfig, n: int, seed: int) -> Items:
    pool = pool_and_test(cfg)[0]
    picked = draw(cfg, n, seed)
    if cfg.task == "classifier":
        return Items([_classifier_item(pool[i]) for i in picked])
    return Items([item for i in picked for item in pool[i]])


# ------------------------------------------------------------------------------------------------ training


def make_model(cfg: StudyConfig) -> torch.nn.Module:
    if cfg.task == "classifier":
        from common.models.smallcnn import SmallCNN

        return SmallCNN(in_channels=1, num_outputs=2, width=cfg.width, stages=cfg.depth)
    from common.models.unet import UNet

    return UNet(in_channels=1, num_classes=2, width=cfg.width, depth=cfg.depth)


def target_key(cfg: StudyConfig) -> str:
    return "label" if cfg.task == "classifier" else "mask"


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice of the foreground over the batch (Milletari et al. 2016, https://arxiv.org/abs/1606.04797);
    ``target`` class indices (B, H, W) or class probabilities (B, K, H, W)."""
    prob = torch.softmax(logits, 1)[:, 1]                                    # (B, H, W)
    fg = target[:, 1] if target.ndim == 4 else (target == 1).to(prob.dtype)  # (B, H, W)
    return 1 - (2 * (prob * fg).sum() + 1) / (prob.sum() + fg.sum() + 1)


def soft_step(key: str, dense: bool):
    """Cross-entropy against hard targets (class indices) or mixed soft ones (class probabilities, dim 1); the
    segmenter adds the soft Dice loss (the LV is a few percent of the pixels)."""

    def step(model, batch, device):
        x, y = batch["image"].to(device), batch[key].to(device)  # (B, 1, H, W); (B,) / (B, H, W) or (B, K[, H, W])
        logits = model(x).float()                                 # (B, 2) or (B, 2, H, W)
        loss = F.cross_entropy(logits, y)
        return (loss + soft_dice_loss(logits, y) if dense else loss), logits, y

    return step


class KeepKeys:
    """default_collate of the keys a step reads (phantom meta dicts are not needed)."""

    def __init__(self, keys):
        self.keys = tuple(keys)

    def __call__(self, items):
        return default_collate([{k: it[k] for k in self.keys} for it in items])


def train_loader_parts(cfg: StudyConfig, train: Dataset, names) -> tuple[Dataset, object]:
    """The training set with its per-item augmentation, and the collate function (with mixing, if asked for)."""
    key = target_key(cfg)
    data = Cycled(AugmentedDataset(train, JointAugment(names, cfg.augment)), cfg.epoch_samples)
    if any(n in MIXING for n in names):
        mixer = BatchMixer(names, 2, cfg.augment.mix_alpha, dense=cfg.task == "segmenter")
        return data, MixingCollate(mixer, key, keys=("image", key))
    return data, KeepKeys(("image", key))


@torch.no_grad()
def score(cfg: StudyConfig, model: torch.nn.Module, device: torch.device) -> dict:
    """AUROC (and accuracy) on the held-out images, or the LV's 3D Dice per held-out volume (mean)."""
    from common.metrics.classification import accuracy, auroc
    from common.metrics.segmentation import dice

    test = pool_and_test(cfg)[1]
    model.eval()
    if cfg.task == "classifier":
        x = torch.stack([it["image"] for it in test])
        y = np.array([int(it["label"]) for it in test])
        probs = torch.cat([torch.softmax(model(b.to(device)).float(), 1)[:, 1].cpu() for b in x.split(64)]).numpy()
        return {"auroc": auroc(y, probs), "accuracy": accuracy(y, (probs > 0.5).astype(int)), "n_test": len(y)}
    dices = []
    for volume in test:
        x = torch.stack([it["image"] for it in volume]).to(device)  # (D, 1, H, W)
        pred = model(x).argmax(1).cpu().numpy()                     # (D, H, W)
        dices.append(dice(pred, torch.stack([it["mask"] for it in volume]).numpy()))
    return {"dice": float(np.mean(dices)), "dice_sd_volumes": float(np.std(dices)), "n_test": len(dices)}


def run_study(device: str, resume: bool, run, out: Path) -> dict:
    """common.sweep's run function: ``run.params`` = {"cfg": StudyConfig, "names": augmentations}; trains on
    ``run.n`` samples drawn with ``run.seed`` and returns the held-out metric (``METRICS[cfg.task]``)."""
    from common.engine import FitConfig, fit
    from common.engine.schedules import make_scheduler
    from common.runtime import seed_everything

    t0 = time.perf_counter()
    cfg, names = run.params["cfg"], resolve(run.params["names"])
    device = torch.device(device)
    train = training_items(cfg, run.n, run.seed)
    seed_everything(run.seed)
    model = make_model(cfg).to(device)
    data, collate = train_loader_parts(cfg, train, names)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = -(-len(data) // cfg.batch_size)
    scheduler = make_scheduler("onecycle-batch", optimizer, cfg.epochs, steps)
    fit_cfg = FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, out=Path(out), seed=run.seed, resume=resume,
                        workers=cfg.workers, collate_fn=collate, args={"cfg": str(asdict(cfg)), "names": str(names)})
    step = soft_step(target_key(cfg), cfg.task == "segmenter")
    result = fit(model, data, None, step, optimizer, fit_cfg, device, scheduler=scheduler)
    metrics = score(cfg, model, device)
    return {**metrics, "n": run.n, "names": list(names), "n_train_items": len(train),
            "train_loss": result["last"]["train_loss"], "seconds": round(time.perf_counter() - t0, 1)}
