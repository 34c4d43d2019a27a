"""Domain-knowledge priors at small n: the recipe (data, priors registry, one run of the sweep).

Two segmentation tasks, each trained on n labelled volumes / images drawn (by seed) from a pool and scored on
separate validation volumes / images, with a small U-Net (``common.models.unet``) through ``common.engine.fit``:

- cardiac (LV cavity, ACDC-like phantom or ACDC): classes background / myocardium / LV. Priors: ``one-lv`` (one
  connected component, filled, inside the myocardium ring) and ``convex`` (convex hull) as post-processing; ``size``
  (area in a known range) and ``compact`` (compactness) as loss terms, applied on the unlabelled rest of the pool too;
- fundus (optic disc and cup, REFUGE-like phantom camera A or REFUGE): two overlapping sigmoid channels (M-Net's
  multi-label output). Priors: ``cup-in-disc`` as post-processing; ``polar``: the U-Net sees the image in polar
  coordinates around the disc centre found as the brightest spot (Fu et al., M-Net), its output mapped back.

Training runs a fixed number of samples per epoch whatever n is (small n repeats its images), so every n trains as
many steps. Metrics: 3D Dice of the LV per validation volume, Dice of the cup and of the disc per validation image.

    results = sweep(grid(train_configs(("one-lv", "size")), range(3), ns=(2, 8), params={"cfg": StudyConfig()}),
                    functools.partial(run_prior, "cpu", False), out)
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.engine import FitConfig, checkpoint, fit, predict
from common.errors import InputError
from common.io.atomic import save_npz
from common.metrics import dice
from common.models.unet import UNet
from common.priors.fundus import cup_inside_disc, disc_centre
from common.priors.polar import from_polar, to_polar
from common.priors.shape import compactness_loss, convex_hull
from common.priors.size import size_prior_loss, size_range
from common.priors.topology import lv_prior
from common.runtime import log, seed_everything

TASKS = ("cardiac", "fundus")
BG, MYO, LV = 0, 1, 2          # the cardiac classes the U-Net predicts (ACDC labels 2 -> MYO, 3 -> LV, others -> BG)


@dataclass(frozen=True)
class Prior:
    task: str
    kind: str                  # "post" (post-processing), "loss" (a training term) or "input" (what the net sees)
    description: str


PRIORS = {
    "one-lv": Prior("cardiac", "post", "LV cavity as one connected component, holes filled, inside the myocardium"),
    "convex": Prior("cardiac", "post", "LV cavity replaced by its convex hull, slice by slice"),
    "size": Prior("cardiac", "loss", "LV area in the known range (size penalty, Kervadec 2019), unlabelled too"),
    "compact": Prior("cardiac", "loss", "compactness P^2 / (4 pi A) of the LV penalised, unlabelled slices too"),
    "cup-in-disc": Prior("fundus", "post", "cup cut back to the disc, each one filled connected component"),
    "polar": Prior("fundus", "input", "U-Net in polar coordinates around the detected disc centre (M-Net)"),
}


@dataclass(frozen=True)
class StudyConfig:
    """Everything a run's result depends on besides its task, training prior, n and seed."""

    cardiac_data: str = "phantom"      # phantom | acdc
    fundus_data: str = "phantom"       # phantom | refuge
    data_root: str | None = None
    size: int = 96                     # image side the U-Net sees (cardiac: after the centre crop)
    fov: float = 0.5                   # cardiac: centre crop, fraction of the field of view kept (the heart)
    pool: int = 40                     # training volumes / images n is drawn from (phantom); the rest is unlabelled
    n_unlabelled: int = 8              # unlabelled volumes / images the loss priors also see
    n_val: int = 10
    data_seed: int = 0
    epochs: int = 30
    samples_per_epoch: int = 64
    batch_size: int = 8
    lr: float = 3e-3
    width: int = 16
    depth: int = 3
    size_weight: float = 1e-3          # Kervadec's lambda
    size_margin: float = 0.2
    compact_weight: float = 0.01
    polar_radius: float = 0.2          # polar transform out to this fraction of the image side
    disc_fraction: float = 0.16        # disc diameter / image side, the scale of the brightness detector
    workers: int = 0


def train_configs(priors) -> dict[str, dict]:
    """The sweep's configurations: per task with a selected prior, "plain" and one per training prior."""
    out = {}
    for task in TASKS:
        mine = [p for p in priors if PRIORS[p].task == task]
        if not mine:
            continue
        out[f"{task}-plain"] = {"task": task, "train": "plain"}
        out.update({f"{task}-{p}": {"task": task, "train": p} for p in mine if PRIORS[p].kind != "post"})
    return out


# ------------------------------------------------------------------------------------------------ data


def _crop(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return arr[..., top:top + size, left:left + size]


@functools.lru_cache(maxsize=4)
def cardiac_data(cfg: StudyConfig) -> dict:
    """Training pool and validation slices: image (N, 1, S, S) float32, classes (N, S, S) int64, volume (N,) ids."""
    from common.tasks.lv_weak_seg import load_cardiac

    full = int(round(cfg.size / cfg.fov))
    out = {}
    for split, count in (("train", cfg.pool), ("val", cfg.n_val)):
        images, labels, _ = load_cardiac(cfg.cardiac_data, split, full, count, cfg.data_seed, cfg.data_root,
                                         n_train=cfg.pool)
        cls = [np.select([lab == 2, lab == 3], [MYO, LV], BG) for lab in labels]
        out[split] = {"image": np.concatenate([_crop(v, cfg.size) for v in images])[:, None].astype(np.float32),
                      "target": np.concatenate([_crop(c, cfg.size) for c in cls]).astype(np.int64),
                      "volume": np.concatenate([np.full(len(v), i) for i, v in enumerate(images)])}
    if not (out["train"]["target"] == LV).any():
        raise InputError("no LV cavity (label 3) in the cardiac training volumes", hint="check the ACDC label map")
    return out


@functools.lru_cache(maxsize=4)
def fundus_data(cfg: StudyConfig) -> dict:
    """Pool and validation images: image (N, 3, S, S) float32, masks (N, 2, S, S) float32 (disc, cup), volume
    (N,) = item index, centre (N, 2) the detected disc centre (x, y), truth_centre (N, 2) where known."""
    from common.data.phantoms.fundus import FundusPhantom

    if cfg.fundus_data == "phantom":
        sets = {"train": FundusPhantom(cfg.pool, cfg.size, "A", cfg.data_seed),
                "val": FundusPhantom(cfg.n_val, cfg.size, "A", cfg.data_seed + 1000)}
        split = {k: list(range(len(v))) for k, v in sets.items()}
    elif cfg.fundus_data == "refuge":
        from common.data.datasets.refuge import REFUGE

        if cfg.data_root is None:
            raise InputError("--dataset refuge needs --data-root", hint="pass the folder of the REFUGE subsets")
        ds = REFUGE(cfg.data_root, "train", cfg.size)  # one camera: the question is n, not the camera
        if len(ds) <= cfg.n_val:
            raise InputError(f"REFUGE's training split has {len(ds)} images, too few for {cfg.n_val} validation ones",
                             hint="lower --n-val")
        sets, cut = {"train": ds, "val": ds}, len(ds) - cfg.n_val
        split = {"train": list(range(min(cut, cfg.pool) if cfg.pool else cut)), "val": list(range(cut, len(ds)))}
    else:
        raise InputError(f"unknown fundus dataset {cfg.fundus_data!r}", hint="use phantom or refuge")
    out = {}
    for name, ds in sets.items():
        items = [ds[i] for i in split[name]]
        seg = np.stack([it["seg"].numpy() for it in items])                       # (N, S, S) 0 bg / 1 rim / 2 cup
        image = np.stack([it["image"].numpy() for it in items]).astype(np.float32)  # (N, 3, S, S)
        out[name] = {"image": image, "target": np.stack([seg >= 1, seg == 2], 1).astype(np.float32),
                     "volume": np.arange(len(items)),
                     "centre": np.array([disc_centre(im.transpose(1, 2, 0), cfg.disc_fraction) for im in image]),
                     "truth_centre": np.array([[it["meta"].get("disc_x", np.nan), it["meta"].get("disc_y", np.nan)]
                                               for it in items], np.float64)}
    return out


def polar_inputs(data: dict, cfg: StudyConfig) -> dict:
    """The fundus images and masks resampled in polar coordinates (n_angles = n_radii = size) around each centre."""
    radius, shape = cfg.polar_radius * cfg.size, (cfg.size, cfg.size)
    image = np.stack([to_polar(im.transpose(1, 2, 0), c, radius, shape).transpose(2, 0, 1)
                      for im, c in zip(data["image"], data["centre"], strict=True)])
    target = np.stack([to_polar(t.transpose(1, 2, 0), c, radius, shape, "nearest").transpose(2, 0, 1)
                       for t, c in zip(data["target"], data["centre"], strict=True)])
    return {**data, "image": image.astype(np.float32), "target": target.astype(np.float32)}


def pick(n: int, pool: int, seed: int, n_unlabelled: int) -> tuple[np.ndarray, np.ndarray]:
    """The labelled items (n of the pool, drawn by seed) and the unlabelled ones (the next of the same draw)."""
    if n > pool:
        raise InputError(f"n={n} exceeds the pool of {pool} training volumes / images",
                         hint="lower --ns or raise --pool")
    order = np.random.default_rng([seed, 7]).permutation(pool)
    return order[:n], order[n:n + n_unlabelled]


class Repeated(torch.utils.data.Dataset):
    """``length`` samples a epoch cycling through the labelled items, each paired with an unlabelled one."""

    def __init__(self, data: dict, labelled: np.ndarray, unlabelled: np.ndarray, length: int):
        self.image, self.target = torch.from_numpy(data["image"]), torch.from_numpy(data["target"])
        self.labelled, self.unlabelled, self.length = labelled, unlabelled, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> dict:
        i = int(self.labelled[k % len(self.labelled)])
        item = {"image": self.image[i], "target": self.target[i]}
        if len(self.unlabelled):
            item["unlabelled"] = self.image[int(self.unlabelled[(k * 7 + 3) % len(self.unlabelled)])]
        return item


# ------------------------------------------------------------------------------------------------ training


class Ramp:
    """A prior's weight over training: 0 for the first ``start`` of the steps, then rising linearly to 1 at ``full``
    (the network first learns the labels; a shape or size term on a near-uniform softmax only pushes the class down
    everywhere). ``step`` counts training steps; :func:`train_unet` sets it when resuming."""

    def __init__(self, total: int, start: float = 0.3, full: float = 0.6):
        self.total, self.start, self.full, self.step = max(total, 1), start, full, 0

    def __call__(self) -> float:
        t = self.step / self.total
        self.step += 1
        return float(np.clip((t - self.start) / max(self.full - self.start, 1e-9), 0.0, 1.0))


def cardiac_step(train: str, cfg: StudyConfig, bounds: tuple[float, float], ramp: Ramp):
    """Cross-entropy on the labelled slices, plus the training prior (weighted by ``ramp``) on labelled and
    unlabelled ones."""

    def step(model, batch, device):
        x, y = batch["image"].to(device), batch["target"].to(device)           # (B, 1, S, S), (B, S, S)
        u = batch.get("unlabelled")
        logits = model(x)                                                       # (B, 3, S, S)
        loss = F.cross_entropy(logits.float(), y)
        weight = ramp() if train != "plain" else 0.0
        # The unlabelled slices go through on their own only while the prior is on: in one batch with the labelled
        # ones, batch norm's statistics mix the two and the LV was lost at small n.
        extra = model(u.to(device)) if u is not None and weight else logits[:0]  # (B', 3, S, S)
        if train == "size" and weight:
            prior = size_prior_loss(logits, LV, *bounds, present=(y == LV).flatten(1).any(1))
            if len(extra):
                prior = prior + size_prior_loss(extra, LV, *bounds)
            loss = loss + weight * cfg.size_weight * prior
        elif train == "compact" and weight:
            loss = loss + weight * cfg.compact_weight * compactness_loss(torch.cat([logits, extra]), LV)
        return loss, logits, y

    return step


def fundus_step(model, batch, device):
    """Binary cross-entropy of the disc and cup channels (M-Net's multi-label loss)."""
    x, y = batch["image"].to(device), batch["target"].to(device)               # (B, 3, S, S), (B, 2, S, S)
    logits = model(x)
    return F.binary_cross_entropy_with_logits(logits.float(), y), logits, y


def steps_per_epoch(cfg: StudyConfig, n_items: int) -> int:
    return -(-max(cfg.samples_per_epoch, n_items) // cfg.batch_size)


def train_unet(data: dict, labelled, unlabelled, step, in_channels: int, classes: int, cfg: StudyConfig, seed: int,
               out: Path, device, resume: bool, args: dict, ramp: Ramp | None = None) -> torch.nn.Module:
    seed_everything(seed)
    if ramp is not None and resume and (out / "last.pt").exists():  # the ramp goes on where the run stopped
        ramp.step = (int(checkpoint.load(out / "last.pt")["epoch"]) + 1) * steps_per_epoch(cfg, len(labelled))
    model = UNet(in_channels, classes, width=cfg.width, depth=cfg.depth)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    fit_cfg = FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, out=out, seed=seed, resume=resume,
                        workers=cfg.workers, monitor="train_loss", args=args)
    fit(model, Repeated(data, labelled, unlabelled, max(cfg.samples_per_epoch, len(labelled))), None, step,
        optimizer, fit_cfg, device)
    return model


def outputs(model, images: np.ndarray, device, sigmoid: bool) -> np.ndarray:
    """Probabilities (N, K, S, S) of the model on images (N, C, S, S)."""
    ds = [{"image": torch.from_numpy(im)} for im in images]
    act = torch.sigmoid if sigmoid else functools.partial(torch.softmax, dim=1)
    return predict(model, ds, lambda m, b, d: act(m(b["image"].to(d)).float()), device, batch_size=16).numpy()


# ------------------------------------------------------------------------------------------------ scoring

CARDIAC_POST = {"raw": lambda lv, myo: lv, "one-lv": lambda lv, myo: lv_prior(lv, myo),
                "convex": lambda lv, myo: convex_hull(lv),
                "one-lv+convex": lambda lv, myo: convex_hull(lv_prior(lv, myo))}


def score_cardiac(pred: np.ndarray, val: dict, posts) -> tuple[dict, dict]:
    """3D Dice of the LV per validation volume for the raw argmax (N, S, S) and after each post-processing prior."""
    truth = val["target"] == LV
    masks = {name: np.zeros_like(truth) for name in posts}
    for v in np.unique(val["volume"]):
        at = val["volume"] == v
        for name in posts:
            masks[name][at] = CARDIAC_POST[name](pred[at] == LV, pred[at] == MYO)
    scores = {name: float(np.mean([dice(m[val["volume"] == v], truth[val["volume"] == v])
                                   for v in np.unique(val["volume"])])) for name, m in masks.items()}
    return scores, masks


def score_fundus(prob: np.ndarray, val: dict, posts) -> tuple[dict, dict]:
    """Dice of the cup and of the disc per validation image, raw (p > 0.5) and after ``cup-in-disc``."""
    raw = prob > 0.5                                                             # (N, 2, S, S)
    masks = {"raw": raw}
    if "cup-in-disc" in posts:
        masks["cup-in-disc"] = np.stack([np.stack(cup_inside_disc(d, c)) for d, c in raw])
    truth = val["target"] > 0.5
    scores = {part: {name: float(np.mean(dice(m[:, k], truth[:, k], per_image=True))) for name, m in masks.items()}
              for k, part in enumerate(("disc", "cup"))}
    return scores, masks


def run_prior(device: str, resume: bool, run, out: Path) -> dict:
    """common.sweep's run function: ``run.params`` = {"cfg": StudyConfig, "task", "train", "posts"}; trains one U-Net
    on ``run.n`` labelled items and returns the Dice of every post-processing variant; ``masks.npz`` in ``out``."""
    cfg, task, train, posts = run.params["cfg"], run.params["task"], run.params["train"], run.params["posts"]
    out, device = Path(out), torch.device(device)
    args = {"cfg": str(asdict(cfg)), "task": task, "train": train, "n": str(run.n), "seed": str(run.seed)}
    data = cardiac_data(cfg) if task == "cardiac" else fundus_data(cfg)
    train_set, val = data["train"], data["val"]
    n_pool = int(train_set["volume"].max()) + 1
    uses_unlabelled = train in PRIORS and PRIORS[train].kind == "loss"
    labelled, unlabelled = pick(run.n, n_pool, run.seed, cfg.n_unlabelled if uses_unlabelled else 0)
    to_items = lambda ids: np.flatnonzero(np.isin(train_set["volume"], ids))  # volumes -> their slices
    summary = {"task": task, "train": train, "n": run.n, "seed": run.seed, "n_train_items": len(to_items(labelled))}
    log(f"--- {task} / {train} / n={run.n} / seed {run.seed}: {summary['n_train_items']} labelled slices/images, "
        f"{len(to_items(unlabelled))} unlabelled")
    if task == "cardiac":
        bounds = size_range(train_set["target"][to_items(labelled)] == LV, cfg.size_margin)
        items = to_items(labelled)
        ramp = Ramp(cfg.epochs * steps_per_epoch(cfg, len(items)))
        model = train_unet(train_set, items, to_items(unlabelled), cardiac_step(train, cfg, bounds, ramp), 1, 3,
                           cfg, run.seed, out, device, resume, args, ramp)
        pred = outputs(model, val["image"], device, sigmoid=False).argmax(1)
        scores, masks = score_cardiac(pred, val, posts)
        summary.update(dice=scores, size_bounds=list(bounds))
        save_npz(out / "masks.npz", **masks, myo=pred == MYO)
    else:
        polar = train == "polar"
        seen = polar_inputs(train_set, cfg) if polar else train_set
        model = train_unet(seen, labelled, unlabelled, fundus_step, 3, 2, cfg, run.seed, out, device, resume, args)
        if polar:
            radius, shape = cfg.polar_radius * cfg.size, (cfg.size, cfg.size)
            p_polar = outputs(model, polar_inputs(val, cfg)["image"], device, sigmoid=True)
            prob = np.stack([from_polar(p.transpose(1, 2, 0), c, radius, shape).transpose(2, 0, 1)
                             for p, c in zip(p_polar, val["centre"], strict=True)])
        else:
            prob = outputs(model, val["image"], device, sigmoid=True)
        scores, masks = score_fundus(prob, val, posts)
        err = np.hypot(*(val["centre"] - val["truth_centre"]).T)
        summary.update(dice=scores["cup"], disc=scores["disc"], centre_error_px=float(np.nanmean(err)))
        save_npz(out / "masks.npz", **masks)
    return summary
