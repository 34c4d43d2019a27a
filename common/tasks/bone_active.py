"""The active-learning demo's recipe: the pool (the bone phantom's normal / abnormal radiographs, or your own
class-per-folder / CSV images, or unlabelled images for an annotator), the small network retrained each round,
and the sweep's run functions (one active-learning run per strategy and seed; the model trained on the full pool).

The phantom's pool and test set are rendered once into memory-mapped arrays under ``<out>/cache/`` (float16), so
every worker process shares them and none holds a copy: the pool is a Dataset, never one in-memory array.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from common.active.learner import EngineLearner, TrainConfig
from common.active.loop import TruthOracle, run_active
from common.errors import InputError
from common.io.atomic import atomic_path, save_json
from common.models.smallcnn import SmallCNN

DATASETS = ("phantom", "folder", "csv", "images")  # images: unlabelled files for --oracle folder
PHANTOM_CLASSES = ("normal", "abnormal")


@dataclass(frozen=True)
class PoolConfig:
    """Where the pool comes from and how its images are sized."""

    dataset: str = "phantom"
    data_root: str | None = None
    size: int = 48
    n_pool: int = 2000            # phantom only
    n_test: int = 1000            # phantom: rendered; folder / csv: held out of the labelled collection
    abnormal_fraction: float = 0.5
    lesion_types: tuple[str, ...] = ("fracture", "lytic", "hardware")
    data_seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    width: int = 8
    stages: int = 3
    dropout: float = 0.3


QUICK = {"size": 32, "n_pool": 600, "n_test": 400, "initial": 20, "query": 20, "budget": 120, "epochs": 6,
         "min_samples": 320, "strategies": "random,bald,coreset,badge", "seeds": 2}
FULL = {"size": 48, "n_pool": 2000, "n_test": 1000, "initial": 20, "query": 20, "budget": 400, "epochs": 10,
        "min_samples": 512, "seeds": 3}


class ArrayImages(Dataset):
    """Images (N, C, H, W) of a .npy file read through a memory map, with labels: {"image", "label", "index"}."""

    def __init__(self, images: str | Path, labels: np.ndarray | None):
        self.path = str(images)
        self.images = np.load(self.path, mmap_mode="r")
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        item = {"image": torch.from_numpy(np.array(self.images[i], dtype=np.float32)), "index": int(i)}
        if self.labels is not None:
            item["label"] = torch.tensor(self.labels[i])
        return item

    def __getstate__(self) -> dict:  # pickled to workers: reopen the memory map there
        return {"path": self.path, "labels": self.labels}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["labels"])


class UnlabelledImages(Dataset):
    """Every image file under a folder (any format common.io reads), padded to a square and resized, gray."""

    def __init__(self, root: str | Path, size: int):
        from common.io.listing import list_images

        self.root, self.size = Path(root), size
        if not self.root.is_dir():
            raise InputError("not a folder", path=self.root, hint="pass the folder of images to label")
        self.files = list_images(self.root)
        if not self.files:
            raise InputError("holds no images", path=self.root, hint="put the images to label in this folder")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        from common.data.geometry import to_square
        from common.io import read_image

        try:
            img, _ = read_image(self.files[i], gray=True)
        except Exception as exc:  # a corrupt or unreadable file: say which
            raise InputError(f"cannot read this image ({type(exc).__name__})", path=self.files[i],
                             hint="remove or replace the file") from None
        square, _ = to_square(np.asarray(img, np.float32), self.size)
        return {"image": torch.from_numpy(square)[None], "index": int(i)}


def _key(cfg: PoolConfig) -> str:
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]


def _render(cfg: PoolConfig, n: int, seed: int, path: Path) -> np.ndarray:
    """Render n phantom images into ``path`` (float16 .npy, atomically); returns their labels."""
    from common.data.cache import Materialized
    from common.data.phantoms.bone import BoneXrayPhantom

    ds = Materialized(BoneXrayPhantom(n=n, size=cfg.size, seed=seed, abnormal_fraction=cfg.abnormal_fraction,
                                      lesion_types=cfg.lesion_types))
    images = np.stack([it["image"].numpy().astype(np.float16) for it in ds.items])  # (N, 1, H, W)
    labels = np.array([int(it["label"]) for it in ds.items], dtype=np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, images)
    return labels


def phantom_arrays(cfg: PoolConfig, cache: Path) -> Path:
    """Render the phantom pool and test set once into ``cache/<hash>/``; returns that folder."""
    folder = Path(cache) / f"bone_{_key(cfg)}"
    if (folder / "labels.json").exists():
        return folder
    labels = {"pool": _render(cfg, cfg.n_pool, cfg.data_seed, folder / "pool.npy").tolist(),
              "test": _render(cfg, cfg.n_test, cfg.data_seed + 1_000, folder / "test.npy").tolist()}
    save_json(folder / "labels.json", {**labels, "config": asdict(cfg)})  # last: the folder is complete
    return folder


@dataclass
class Pool:
    pool: Dataset
    labels: np.ndarray | None       # None: unlabelled (the annotator labels it)
    test: Dataset | None
    test_labels: np.ndarray | None
    classes: tuple[str, ...]


def load_pool(cfg: PoolConfig, cache: Path, classes: tuple[str, ...] | None = None) -> Pool:
    """The pool, its labels and a test set for ``cfg.dataset``: the phantom, a labelled folder / CSV (a seeded
    ``n_test`` of it held out for testing) or unlabelled images (no labels, no test set)."""
    if cfg.dataset == "phantom":
        folder = phantom_arrays(cfg, cache)
        labels = json.loads((folder / "labels.json").read_text())
        return Pool(ArrayImages(folder / "pool.npy", labels["pool"]), np.array(labels["pool"]),
                    ArrayImages(folder / "test.npy", labels["test"]), np.array(labels["test"]), PHANTOM_CLASSES)
    if cfg.data_root is None:
        raise InputError(f"--dataset {cfg.dataset} needs --data-root", hint="pass the folder (or CSV) of images")
    if cfg.dataset == "images":
        if not classes or len(classes) < 2:
            raise InputError("unlabelled images need the class names", hint="pass --classes normal,abnormal")
        return Pool(UnlabelledImages(cfg.data_root, cfg.size), None, None, None, tuple(classes))
    from common.data.datasets.generic import CSVImages, ImageFolder

    kind = ImageFolder if cfg.dataset == "folder" else CSVImages
    full = kind(cfg.data_root, size=cfg.size, channels=1)
    labels = full.labels
    if cfg.n_test >= len(full):
        raise InputError(f"--n-test {cfg.n_test} leaves no pool of the {len(full)} images", path=cfg.data_root,
                         hint="lower --n-test")
    order = np.random.default_rng(cfg.data_seed).permutation(len(full))
    test_idx, pool_idx = np.sort(order[: cfg.n_test]), np.sort(order[cfg.n_test:])
    sub = torch.utils.data.Subset
    return Pool(sub(full, pool_idx.tolist()), labels[pool_idx], sub(full, test_idx.tolist()) if len(test_idx) else None,
                labels[test_idx] if len(test_idx) else None, tuple(full.classes))


def make_model(model: ModelConfig, n_classes: int) -> SmallCNN:
    return SmallCNN(in_channels=1, num_outputs=n_classes, width=model.width, stages=model.stages,
                    dropout=model.dropout)


def learner_for(data: Pool, model: ModelConfig, train: TrainConfig, device) -> EngineLearner:
    n_classes = len(data.classes)
    return EngineLearner(lambda: make_model(model, n_classes), data.pool, train, data.test, data.test_labels,
                         device)


def settings(p: dict) -> dict:
    """The pool's, the model's and the training's settings as JSON data (a saved round state must match them)."""
    out = json.loads(json.dumps({k: asdict(p[k]) for k in ("pool", "model", "train")}))
    out["train"].pop("workers")  # how, not what: may change between a run and its resumption
    return out


def run_strategy(device: str, resume: bool, run, out: Path) -> dict:
    """common.sweep's run function for one active-learning run: ``run.config`` is the strategy, ``run.params``
    {"pool": PoolConfig, "model": ModelConfig, "train": TrainConfig, "active": ActiveConfig, "cache": str}.
    Returns the curve: n_labels and test AUROC / accuracy per round, and each round's picks."""
    p = run.params
    data = load_pool(p["pool"], Path(p["cache"]))
    cfg = replace(p["active"], strategy=run.config, seed=run.seed)
    result = run_active(cfg, data.pool, learner_for(data, p["model"], p["train"], device), TruthOracle(data.labels),
                        Path(out), device, resume=resume, progress=False, settings=settings(p))
    rounds = result["rounds"]
    return {"strategy": run.config, "seed": run.seed, "n_labels": [r["n_labels"] for r in rounds],
            "auroc": [r["metrics"]["auroc"] for r in rounds], "accuracy": [r["metrics"]["accuracy"] for r in rounds],
            "picked": [r["picked"] for r in rounds],
            "abnormal_picked": [float(np.mean(data.labels[r["picked"]])) if r["picked"] else None for r in rounds]}


def run_full_pool(device: str, resume: bool, run, out: Path) -> dict:
    """common.sweep's run function for the reference: the same network trained on every pool label."""
    p = run.params
    data = load_pool(p["pool"], Path(p["cache"]))
    learner = learner_for(data, p["model"], p["train"], device)
    from common.runtime import seed_everything

    seed_everything(run.seed)
    model = learner.fit(np.arange(len(data.pool)), data.labels, Path(out), run.seed, resume=resume)
    return {"n_labels": len(data.pool), **learner.evaluate(model)}
