"""The shallow-vs-CNN study's recipe: the bone images and their features cached once, one sweep run per
(method, n, seed), the crossover of the learning curves, and the classic segmentation baselines' Dice table.

    data = prepare_data(cfg, out / "cache")                         # images, labels and features, one .npz
    runs = grid({"svm": {...}, "rf": {...}, "cnn": {...}}, seeds, ns, params={"data": str(data), "cfg": cfg})
    results = sweep(runs, run_method, out / "runs")                  # {"auroc": ..., "chosen": ...} each
    crossover(aggregate(results, "auroc"), "cnn", ("svm", "rf"))     # where the CNN overtakes the best shallow one
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from common.classic.registry import SEGMENTERS, segment
from common.classic.threshold import otsu_mask
from common.engine import FitConfig, fit, predict, supervised_step
from common.engine.schedules import BatchStepped
from common.errors import InputError
from common.features.bank import feature_matrix
from common.features.pipeline import CLASSIFIERS, ShallowParams, chosen, decision_scores, fit_shallow
from common.io.atomic import save_npz
from common.metrics.classification import accuracy, auroc
from common.metrics.segmentation import dice
from common.models.smallcnn import SmallCNN
from common.runtime import log, seed_everything

METHODS = (*CLASSIFIERS, "cnn")
FEATURE_SETS = ("hog", "lbp", "glcm", "histogram", "firstorder")
NAMES = {"svm": "SVM (RBF) on hand-crafted features", "rf": "random forest on hand-crafted features",
         "cnn": "SmallCNN from scratch"}


@dataclass(frozen=True)
class CNNParams:
    width: int = 8
    epochs: int = 30            # passes over the n training images (at least min_steps optimizer steps in all)
    min_steps: int = 150        # so that n = 10 still trains: the images repeat within an epoch
    batch_size: int = 32
    lr: float = 3e-3            # peak of a one-cycle schedule (Smith & Topin 2019), AdamW
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class StudyConfig:
    dataset: str = "phantom"
    data_root: str | None = None
    size: int = 64
    pool: int = 2000            # training images to draw each n from (>= the largest n)
    n_test: int = 1000          # held-out images every run is scored on
    data_seed: int = 0
    features: tuple[str, ...] = FEATURE_SETS
    shallow: ShallowParams = field(default_factory=ShallowParams)
    cnn: CNNParams = field(default_factory=CNNParams)


# ------------------------------------------------------------------------------------------------ data


def _bone_arrays(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    from tqdm import tqdm

    images, labels = [], []
    for i in tqdm(range(len(dataset)), desc="images", leave=False):
        item = dataset[i]
        images.append(item["image"][0].numpy().astype(np.float32))  # (H, W)
        labels.append(int(item["label"]))
    return np.stack(images), np.array(labels, np.int64)


def load_bone(cfg: StudyConfig) -> dict[str, np.ndarray]:
    """train_images (pool, H, W), train_labels (pool,), test_images, test_labels: phantom (disjoint seeds) or MURA
    (its train split, a random pool of it, and its valid split as the test set)."""
    if cfg.dataset == "phantom":
        from common.data.phantoms.bone import BoneXrayPhantom

        train = BoneXrayPhantom(n=cfg.pool, size=cfg.size, seed=cfg.data_seed)
        test = BoneXrayPhantom(n=cfg.n_test, size=cfg.size, seed=cfg.data_seed + 100_000)  # never in training
    elif cfg.dataset == "mura":
        from torch.utils.data import Subset

        from common.data.datasets.mura import MURA

        if cfg.data_root is None:
            raise InputError("--dataset mura needs --data-root", hint="pass the folder holding MURA-v1.1/")
        train, test = MURA(cfg.data_root, "train", cfg.size), MURA(cfg.data_root, "valid", cfg.size)
        rng = np.random.default_rng(cfg.data_seed)
        train = Subset(train, rng.permutation(len(train))[: cfg.pool].tolist())
        test = Subset(test, rng.permutation(len(test))[: cfg.n_test].tolist())
    else:
        raise InputError(f"unknown dataset {cfg.dataset!r}", hint="use phantom or mura")
    xs, ys = _bone_arrays(train)
    xt, yt = _bone_arrays(test)
    return {"train_images": xs, "train_labels": ys, "test_images": xt, "test_labels": yt}


def data_key(cfg: StudyConfig) -> str:
    """What the cached images and features depend on, as a short hash."""
    keys = ("dataset", "data_root", "size", "pool", "n_test", "data_seed", "features")
    text = json.dumps({k: asdict(cfg)[k] for k in keys}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def prepare_data(cfg: StudyConfig, cache: Path) -> Path:
    """``<cache>/bone-<key>.npz``: the images, labels and hand-crafted features of the pool and the test set,
    made once (atomically) and shared by every run."""
    path = Path(cache) / f"bone-{data_key(cfg)}.npz"
    if path.exists():
        return path
    t0 = time.process_time()
    arrays = load_bone(cfg)
    for split in ("train", "test"):
        if len(np.unique(arrays[f"{split}_labels"])) < 2:
            raise InputError(f"the {split} images hold one class only", hint="use more images (--pool / --n-test)")
        arrays[f"{split}_features"], _ = feature_matrix(arrays[f"{split}_images"], cfg.features)
    log(f"images and features of {len(arrays['train_labels'])} + {len(arrays['test_labels'])} images at "
        f"{cfg.size} px: {time.process_time() - t0:.1f} CPU-s")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, **arrays)
    return path


def training_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` pool indices drawn with ``seed``, stratified: both classes in proportion, at least 2 of each."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, n])
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in (0, 1)]
    if n > len(labels) or min(len(b) for b in by_class) < 2 or n < 4:
        raise InputError(f"cannot draw n = {n} training images with both classes from a pool of {len(labels)}",
                         hint="use 4 <= n <= --pool")
    k1 = int(np.clip(round(n * len(by_class[1]) / len(labels)), 2, min(n - 2, len(by_class[1]))))
    k0 = n - k1
    if k0 > len(by_class[0]):
        k0, k1 = len(by_class[0]), n - len(by_class[0])
    return np.sort(np.concatenate([by_class[0][:k0], by_class[1][:k1]]))


# ------------------------------------------------------------------------------------------------ the CNN


class FlippedImages(Dataset):
    """Items {"image": (1, H, W), "label"} of ``images[index]``, each flipped left-right and up-down at random;
    repeated to at least ``length`` items so an epoch of a tiny n still holds whole batches."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, length: int = 0, augment: bool = True):
        self.images, self.labels = torch.from_numpy(np.asarray(images, np.float32)), torch.from_numpy(labels)
        self.length, self.augment = max(len(images), length), augment

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        image = self.images[i % len(self.images)][None]  # (1, H, W)
        if self.augment:
            if torch.rand(()) < 0.5:
                image = image.flip(-1)
            if torch.rand(()) < 0.5:
                image = image.flip(-2)
        return {"image": image, "label": self.labels[i % len(self.images)]}


def train_cnn(images: np.ndarray, labels: np.ndarray, test_images: np.ndarray, params: CNNParams, seed: int,
              out: Path, device: torch.device, resume: bool = False) -> tuple[np.ndarray, dict]:
    """SmallCNN from scratch through common.engine: fixed one-cycle schedule, no validation set (nothing is chosen
    on held-out images). Returns P(abnormal) of the test images and the training summary."""
    seed_everything(seed)
    # an over-fitted tiny n drives activations and gradients into denormal floats, which made CPU runs ~20x slower
    torch.set_flush_denormal(True)
    per_epoch = max(len(images), math.ceil(params.min_steps / params.epochs) * params.batch_size)
    train = FlippedImages(images, labels, per_epoch)
    model = SmallCNN(in_channels=1, num_outputs=2, width=params.width)
    steps = math.ceil(len(train) / params.batch_size) * params.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    scheduler = BatchStepped(torch.optim.lr_scheduler.OneCycleLR(optimizer, params.lr, total_steps=steps))
    fit_cfg = FitConfig(epochs=params.epochs, batch_size=params.batch_size, out=out, seed=seed, resume=resume,
                        monitor="train_loss", args={"cnn": str(asdict(params)), "n": str(len(images))})
    result = fit(model, train, None, supervised_step(torch.nn.functional.cross_entropy), optimizer, fit_cfg,
                 device, scheduler=scheduler)
    test = FlippedImages(test_images, np.zeros(len(test_images), np.int64), augment=False)
    probs = predict(model, test, lambda m, b, d: torch.softmax(m(b["image"].to(d)).float(), 1)[:, 1], device,
                    batch_size=128).numpy()
    return probs, {"steps": steps, "final_train_loss": result["last"]["train_loss"]}


# ------------------------------------------------------------------------------------------------ one run


def run_method(device: str, resume: bool, run, out: Path) -> dict:
    """common.sweep's run function: ``run.params`` = {"method", "data" (prepare_data's file), "cfg"}; trains
    ``method`` on ``run.n`` pool images drawn with ``run.seed`` and scores it on the test images (AUROC)."""
    t0 = time.perf_counter()
    method, cfg = run.params["method"], run.params["cfg"]
    with np.load(run.params["data"]) as f:
        data = {k: f[k] for k in f.files}
    idx = training_subset(data["train_labels"], run.n, run.seed)
    y, y_test = data["train_labels"][idx], data["test_labels"]
    summary = {"method": method, "n": run.n, "seed": run.seed, "n_abnormal": int(y.sum())}
    if method in CLASSIFIERS:
        model = fit_shallow(data["train_features"][idx], y, method, cfg.shallow, run.seed)
        scores = decision_scores(model, data["test_features"])
        summary["chosen"] = chosen(model)
        threshold = 0.0 if method == "svm" else 0.5
    elif method == "cnn":
        scores, summary["cnn"] = train_cnn(data["train_images"][idx], y, data["test_images"], cfg.cnn, run.seed,
                                           Path(out), torch.device(device), resume)
        threshold = 0.5
    else:
        raise InputError(f"unknown method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    summary.update(auroc=auroc(y_test, scores), accuracy=accuracy(y_test, (scores > threshold).astype(int)),
                   n_test=int(len(y_test)), seconds=round(time.perf_counter() - t0, 2))
    return summary


# ------------------------------------------------------------------------------------------------ crossover


def crossover(rows: list[dict], challenger: str = "cnn", baselines: tuple[str, ...] = CLASSIFIERS) -> dict:
    """Where ``challenger``'s mean overtakes the best of ``baselines`` at each n, for good.

    ``rows``: common.sweep.aggregate rows. Returns ``n_at`` (the first grid n from which the challenger is ahead at
    every larger n), ``n_before`` (the grid n before it, where it was not), ``n_cross`` (the crossing of the two
    mean curves by linear interpolation in log n between them), ``status``: "crosses", "always ahead",
    "never ahead" or "no common n"; and ``gaps``: the challenger minus the best baseline at each n."""
    def means(config):
        return {r["n"]: r["mean"] for r in rows if r["config"] == config and r["mean"] is not None}

    mine = means(challenger)
    others = [means(b) for b in baselines]
    ns = sorted(n for n in mine if all(n in o for o in others))
    out = {"challenger": challenger, "baselines": list(baselines), "n_before": None, "n_at": None, "n_cross": None}
    if not ns:
        return {**out, "status": "no common n", "gaps": {}}
    gaps = {n: mine[n] - max(o[n] for o in others) for n in ns}
    ahead = [gaps[n] > 0 for n in ns]
    if not ahead[-1]:
        return {**out, "status": "never ahead" if not any(ahead) else "not ahead at the largest n", "gaps": gaps}
    k = len(ns) - 1
    while k > 0 and ahead[k - 1]:
        k -= 1
    if k == 0:
        return {**out, "status": "always ahead", "n_at": ns[0], "gaps": gaps}
    a, b = ns[k - 1], ns[k]
    t = -gaps[a] / (gaps[b] - gaps[a])  # gaps[a] <= 0 < gaps[b]
    n_cross = float(np.exp(np.log(a) + t * (np.log(b) - np.log(a))))
    return {**out, "status": "crosses", "n_before": a, "n_at": b, "n_cross": n_cross, "gaps": gaps}


# ------------------------------------------------------------------------------------------------ segmentation


@dataclass(frozen=True)
class SegConfig:
    size: int = 96
    n_cardiac: int = 10         # phantom volumes (3D Dice of the LV each)
    n_fundus: int = 40          # camera A photographs (Dice of the disc each)
    seed: int = 0
    methods: tuple[str, ...] = tuple(SEGMENTERS)


def cardiac_input(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The slice and its ROI: the body (Otsu's threshold, holes filled), so each method splits the body's bright
    tissue (blood, fat) from the rest rather than the body from the air."""
    return image, ndimage.binary_fill_holes(otsu_mask(image))


def fundus_input(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image (3, H, W) -> the green channel (the disc's best contrast) with the vessels closed (grey closing) and
    the illumination removed (minus a Gaussian of a side / 8), and the camera's field of view as the ROI."""
    green, side = np.asarray(image[1], np.float64), image.shape[-1]
    roi = ndimage.binary_erosion(np.asarray(image).sum(0) > 0.05, iterations=2)
    green = ndimage.grey_closing(green, size=(3, 3))
    background = ndimage.gaussian_filter(np.where(roi, green, green[roi].mean()), side / 8)
    return green - background, roi


def segmentation_study(cfg: SegConfig) -> tuple[list[dict], dict]:
    """Dice of every classic method on the cardiac LV (3D, per volume) and the fundus disc (2D, per image), with no
    training labels; and a few examples {dataset: (image, truth, {method: mask})} for the figure."""
    from tqdm import tqdm

    from common.data.phantoms.cardiac import CardiacPhantomVolumes
    from common.data.phantoms.fundus import REFUGE_BACKGROUND, FundusPhantom

    scores = {(d, m): [] for d in ("cardiac LV", "fundus disc") for m in cfg.methods}
    examples = {}
    volumes = CardiacPhantomVolumes(cfg.n_cardiac, cfg.size, seed=cfg.seed + 500, cache=False)
    for v in tqdm(range(len(volumes)), desc="cardiac volumes", leave=False):
        image, labels, _ = volumes.volume(v)
        truth = labels == 3
        inputs = [cardiac_input(s) for s in image]
        masks = {m: np.stack([segment(gray, m, "central", roi) for gray, roi in inputs]) for m in cfg.methods}
        for m in cfg.methods:
            scores[("cardiac LV", m)].append(dice(masks[m], truth))
        if v == 0:
            mid = int(np.argmax(truth.sum((1, 2))))
            examples["cardiac LV"] = (image[mid], truth[mid], {m: masks[m][mid] for m in cfg.methods})
    fundus = FundusPhantom(n=cfg.n_fundus, size=cfg.size, domain="A", seed=cfg.seed + 500)
    for i in tqdm(range(len(fundus)), desc="fundus images", leave=False):
        item = fundus[i]
        image, truth = item["image"].numpy(), item["mask"].numpy() != REFUGE_BACKGROUND
        gray, roi = fundus_input(image)
        masks = {m: segment(gray, m, "brightest", roi) for m in cfg.methods}
        for m in cfg.methods:
            scores[("fundus disc", m)].append(dice(masks[m], truth))
        if i == 0:
            examples["fundus disc"] = (image.transpose(1, 2, 0), truth, masks)
    rows = []
    for (data, method), values in scores.items():
        v = np.array(values, np.float64)
        rows.append({"structure": data, "method": method, "mean": float(v.mean()),
                     "std": float(v.std(ddof=1)) if len(v) > 1 else None, "n_images": len(v),
                     "unit": "volume (3D Dice)" if data == "cardiac LV" else "image (2D Dice)"})
    return rows, examples
