"""The fundus domain-adaptation demo's recipe: two cameras' disc-centred crops, the rows (``METHODS``), one training
run per (row, seed) through common.engine, and the cached adapted model that segments a user's photographs.

Source = camera A with masks, target = camera B whose masks only score (and train the oracle row). Every row trains
the same small U-Net (common.models.unet) on disc-centred crops; only what it sees and its extra loss differ:

    source_only    cross-entropy on A
    adabn          source_only's weights with batch-norm statistics recomputed on B (AdaBN)
    histmatch      A restyled to a random B image by histogram matching (input space)
    fda            A given a random B image's low-frequency amplitude (Fourier domain adaptation, input space)
    target_bn      B batches forwarded too (their BN statistics), no adversary: the adversarial rows' control
    output_adv     + a patch discriminator on the softmax maps (pOSAL / AdaptSegNet)
    entropy_adv    + a patch discriminator on entropy maps (BEAL / ADVENT)
    dann           + a domain classifier on the bottleneck behind gradient reversal (DANN)
    oracle         cross-entropy on B's own masks (the upper bound)

No row chooses anything on B's masks: every row keeps its last epoch. The discs are found by :func:`locate_disc`
(a band-pass brightness peak, as classic disc detectors do), never from the masks, so user photographs are
cropped the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.domain.adabn import adapt_batchnorm
from common.domain.dann import domain_accuracy, domain_adversarial_loss
from common.domain.discriminators import DomainClassifier, PatchDiscriminator
from common.domain.fda import fda_source_to_target
from common.domain.grl import dann_lambda
from common.domain.histogram import match_batch
from common.domain.output_space import discriminator_loss, fooling_loss, output_maps
from common.engine import checkpoint
from common.engine.loop import FitConfig, fit, predict
from common.errors import InputError
from common.io.atomic import save_npz
from common.metrics.fundus import check_refuge, fundus_scores
from common.models.unet import UNet
from common.runtime import log, seed_everything

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MIADEEPSSL_CACHE", ROOT / ".cache")) / "models"
SEG_TO_REFUGE = np.array([255, 128, 0], np.uint8)  # class map (0 bg, 1 rim, 2 cup) -> REFUGE levels


@dataclass(frozen=True)
class Method:
    title: str
    short: str                      # a figure column's name
    train_on: str = "source"        # "source" (camera A's masks) or "target" (the oracle: camera B's masks)
    align: str | None = None        # input-space restyling of the source: "histmatch" or "fda"
    adversary: str | None = None    # "prob" / "entropy" (output space), "features" (DANN), "none" (B forwarded only)
    adabn: bool = False             # after training, batch-norm statistics recomputed on camera B (AdaBN)


METHODS = {
    "source_only": Method("source only", "source only"),
    "histmatch": Method("histogram matching (input space)", "histogram matching", align="histmatch"),
    "fda": Method("Fourier domain adaptation (input space)", "FDA", align="fda"),
    "adabn": Method("AdaBN: source weights, camera B's batch-norm statistics", "AdaBN", adabn=True),
    "target_bn": Method("camera B forwarded too, no adversary (control)", "B forwarded\n(control)", adversary="none"),
    "output_adv": Method("output-space adversarial, softmax maps (pOSAL)", "output adv.\n(pOSAL)", adversary="prob"),
    "entropy_adv": Method("output-space adversarial, entropy maps (BEAL / ADVENT)", "entropy adv.\n(BEAL)",
                          adversary="entropy"),
    "dann": Method("feature-level adversarial (DANN, gradient reversal)", "DANN", adversary="features"),
    "oracle": Method("target oracle (trained on camera B's masks)", "oracle", train_on="target"),
}
ADVERSARIAL = tuple(k for k, m in METHODS.items() if m.adversary in ("prob", "entropy", "features"))
INPUT_SPACE = tuple(k for k, m in METHODS.items() if m.align)
# The survey authors' REFUGE demo (U-Net + domain discriminator after CFEA, Liu et al. MICCAI 2019): target numbers.
SURVEY = {"cup_dice": 0.8246, "disc_dice": 0.8975, "vcdr_mae": 0.048}


@dataclass(frozen=True)
class DAConfig:
    """Everything a run's result depends on besides its row and seed."""

    dataset: str = "phantom"
    data_root: str | None = None
    size: int = 320                 # images are padded square and resized to this side before the disc is found
    crop: int = 96                  # side of the disc-centred crop the network sees (a multiple of 2**depth)
    n_source: int = 400             # camera A images with masks (REFUGE: 400 Zeiss training images)
    n_target: int = 400             # camera B images without masks (their masks train only the oracle)
    n_val: int = 200                # camera B images scored
    data_seed: int = 0
    epochs: int = 40
    batch_size: int = 16
    lr: float = 2e-3
    width: int = 16
    depth: int = 3
    lr_disc: float = 1e-3           # discriminators' Adam lr
    lam_adv: float = 0.01           # weight of the fooling loss (pOSAL / BEAL use 0.01 with their seg losses)
    lam_dann: float = 0.1           # largest gradient-reversal strength, ramped by Ganin et al.'s schedule
    fda_beta: float = 0.05          # FDA's low-frequency half-side, fraction of the crop (Yang & Soatto: 0.01-0.09)
    workers: int = 0


# ------------------------------------------------------------------------------------------------ discs and crops


def locate_disc(image: np.ndarray) -> tuple[float, float]:
    """(x, y) of the optic disc in an (S, S, 3) fundus image in [0, 1]: the peak of the red + green brightness
    band-passed at the disc's scale (a disc-sized blur minus the slowly varying illumination), inside the field of
    view. Uses no label, so training, scoring and user photographs are cropped alike."""
    s = image.shape[0]
    grey = image[..., :2].mean(-1).astype(np.float32)
    fov = cv2.erode((image.max(-1) > 0.04).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, s // 40))
    fov = fov.astype(bool)
    fill = float(grey[fov].mean()) if fov.any() else float(grey.mean())
    grey = np.where(fov, grey, fill).astype(np.float32)  # the black surround must not look like a dark background
    band = cv2.GaussianBlur(grey, (0, 0), 0.035 * s) - cv2.GaussianBlur(grey, (0, 0), 0.15 * s)
    band[~fov] = -np.inf
    y, x = np.unravel_index(int(np.argmax(band)), band.shape)
    return float(x), float(y)


def crop_box(centre: tuple[float, float], crop: int, size: int) -> tuple[int, int]:
    """Top-left (x0, y0) of the crop x crop window centred on ``centre``, kept inside the size x size image."""
    x0 = int(round(centre[0] - crop / 2))
    y0 = int(round(centre[1] - crop / 2))
    return int(np.clip(x0, 0, size - crop)), int(np.clip(y0, 0, size - crop))


def disc_crops(images: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S, 3) images -> (N, crop, crop, 3) disc-centred crops and their (N, 2) top-left corners."""
    corners = np.array([crop_box(locate_disc(im), crop, im.shape[0]) for im in images], np.int64).reshape(-1, 2)
    out = np.stack([im[y:y + crop, x:x + crop] for im, (x, y) in zip(images, corners, strict=True)])
    return out, corners


# ------------------------------------------------------------------------------------------------ data


def _phantom(domain: str, n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from common.data.phantoms.fundus import FundusPhantom

    ds = FundusPhantom(n=n, size=size, domain=domain, seed=seed)
    items = [ds[i] for i in range(n)]
    return (np.stack([it["image"].numpy().transpose(1, 2, 0) for it in items]),
            np.stack([it["mask"].numpy() for it in items]))


def _refuge(root: str, split: str, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    from common.data.datasets.refuge import REFUGE

    ds = REFUGE(root, split=split, size=size)
    keep = range(len(ds)) if not n else range(min(n, len(ds)))
    items = [ds[i] for i in keep]
    return (np.stack([it["image"].numpy().transpose(1, 2, 0) for it in items]),
            np.stack([it["mask"].numpy() for it in items]))


def domain_images(cfg: DAConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(images (N, S, S, 3), REFUGE masks (N, S, S)) of source (camera A), target (camera B, training) and val
    (camera B, scored). Phantom: each set its own eyes; REFUGE: train / val / test splits."""
    if cfg.dataset == "phantom":
        sets = {"source": _phantom("A", cfg.n_source, cfg.size, cfg.data_seed),
                "target": _phantom("B", cfg.n_target, cfg.size, cfg.data_seed),
                "val": _phantom("B", cfg.n_val, cfg.size, cfg.data_seed + 1_000)}
    elif cfg.dataset == "refuge":
        if cfg.data_root is None:
            raise InputError("--dataset refuge needs --data-root", hint="pass the folder holding the REFUGE subsets")
        sets = {"source": _refuge(cfg.data_root, "train", cfg.n_source, cfg.size),
                "target": _refuge(cfg.data_root, "val", cfg.n_target, cfg.size),
                "val": _refuge(cfg.data_root, "test", cfg.n_val, cfg.size)}
    else:
        raise InputError(f"unknown dataset {cfg.dataset!r}", hint="use phantom or refuge")
    for name, (_, masks) in sets.items():
        check_refuge(masks, f"a {name} mask")
        if not (masks == 255).any((1, 2)).all():  # e.g. a 0/1 map, which REFUGE's decoder reads as all cup
            bad = int(np.flatnonzero(~(masks == 255).any((1, 2)))[0])
            raise InputError(f"{name} mask {bad} holds no background (255): not in REFUGE's 0 cup / 128 rim / 255 "
                             "background encoding", hint="convert the masks to REFUGE's grey levels")
        if not (masks != 255).any((1, 2)).all():
            bad = int(np.flatnonzero(~(masks != 255).any((1, 2)))[0])
            raise InputError(f"{name} image {bad} has no optic disc in its mask", hint="every image needs a disc")
    return sets


def check_config(cfg: DAConfig) -> None:
    step = 2 ** cfg.depth
    if cfg.crop % step or cfg.crop < 2 * step or cfg.crop > cfg.size:
        raise InputError(f"crop {cfg.crop} px is not usable with depth {cfg.depth} and images of {cfg.size} px",
                         hint=f"use a multiple of {step} between {2 * step} and the image side")


def data_key(cfg: DAConfig) -> str:
    keys = ("dataset", "data_root", "size", "crop", "n_source", "n_target", "n_val", "data_seed")
    text = json.dumps({k: getattr(cfg, k) for k in keys}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def prepare_data(cfg: DAConfig, out: Path) -> Path:
    """Render / read every set once and keep its disc crops in ``<out>/data_<key>.npz`` (the runs load it)."""
    check_config(cfg)
    path = Path(out) / f"data_{data_key(cfg)}.npz"
    if path.exists():
        return path
    t0 = time.perf_counter()
    arrays = {}
    for name, (images, masks) in domain_images(cfg).items():
        crops, corners = disc_crops(images, cfg.crop)
        arrays[f"{name}_image"] = crops.astype(np.float16)
        arrays[f"{name}_mask"] = np.stack([m[y:y + cfg.crop, x:x + cfg.crop] for m, (x, y) in zip(masks, corners,
                                                                                                   strict=True)])
        arrays[f"{name}_disc_found"] = np.array([(m[y:y + cfg.crop, x:x + cfg.crop] != 255).sum() / max(
            (m != 255).sum(), 1) for m, (x, y) in zip(masks, corners, strict=True)])  # share of the disc in the crop
    save_npz(path, **arrays)
    log(f"disc crops of {cfg.crop} px from {cfg.size}-px images: {len(arrays['source_image'])} source, "
        f"{len(arrays['target_image'])} target, {len(arrays['val_image'])} val ({time.perf_counter() - t0:.1f} s)")
    return path


def load_data(path: str | Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{set: (images (N, 3, c, c) float32, class maps (N, c, c) int64)} from :func:`prepare_data`'s file."""
    from common.data.phantoms.fundus import refuge_to_seg

    data = np.load(path)
    return {name: (torch.from_numpy(data[f"{name}_image"].astype(np.float32).transpose(0, 3, 1, 2)).contiguous(),
                   torch.from_numpy(refuge_to_seg(data[f"{name}_mask"]))) for name in ("source", "target", "val")}


class PairedDomains(torch.utils.data.Dataset):
    """Labelled images, each paired with a random unlabelled one: {"image", "seg", "target"}. The pairing draws
    from torch's RNG, which the engine reseeds from (seed, epoch), so epochs differ and a resumed run repeats them."""

    def __init__(self, images: torch.Tensor, seg: torch.Tensor, targets: torch.Tensor, random_pairs: bool = True):
        assert images.ndim == 4 and seg.shape == (images.shape[0], *images.shape[2:]), (images.shape, seg.shape)
        self.images, self.seg, self.targets, self.random_pairs = images, seg, targets, random_pairs

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        j = int(torch.randint(len(self.targets), ())) if self.random_pairs else i % len(self.targets)
        return {"image": self.images[i], "seg": self.seg[i], "target": self.targets[j]}


# ------------------------------------------------------------------------------------------------ model and step


class DomainModel(nn.Module):
    """The segmenter and, for adversarial rows, its discriminator; ``forward`` is the segmenter's."""

    def __init__(self, seg: UNet, disc: nn.Module | None = None):
        super().__init__()
        self.seg, self.disc = seg, disc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seg(x)


def build_model(cfg: DAConfig, method: Method) -> DomainModel:
    seg = UNet(in_channels=3, num_classes=3, width=cfg.width, depth=cfg.depth)
    disc = None
    if method.adversary in ("prob", "entropy"):
        disc = PatchDiscriminator(in_channels=3, width=cfg.width, depth=cfg.depth)
    elif method.adversary == "features":
        disc = DomainClassifier(seg.bottleneck_channels, hidden=4 * cfg.width)
    return DomainModel(seg, disc)


class EpochMeans:
    """Per-epoch means of the step's loss terms; the validation metric function reads (and resets) them at the
    epoch's end, so they land in the engine's history beside the target Dice."""

    def __init__(self):
        self.sums: dict[str, list[float]] = {}

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums.setdefault(k, []).append(float(v))

    def pop(self) -> dict[str, float]:
        out = {k: float(np.mean(v)) for k, v in self.sums.items()}
        self.sums = {}
        return out


def _progress(optimizer: torch.optim.Optimizer, total_steps: int) -> float:
    """Training progress in [0, 1] from the optimizer's own step count (restored with it on resume)."""
    state = optimizer.state.get(optimizer.param_groups[0]["params"][0], {})
    return float(state.get("step", 0)) / max(total_steps, 1)


def make_step(method: Method, cfg: DAConfig, optimizer, total_steps: int, meter: EpochMeans):
    """The engine's step for a row: (loss, logits of the labelled images, their class maps)."""

    def step(model, batch, device):
        xs, ys = batch["image"].to(device), batch["seg"].to(device)          # (B, 3, c, c), (B, c, c)
        if not model.training:  # validation: camera B images, scored only
            logits = model(xs)
            return F.cross_entropy(logits.float(), ys), logits, ys
        xt = batch["target"].to(device)
        if method.align == "histmatch":
            xs = match_batch(xs, xt)
        elif method.align == "fda":
            xs = fda_source_to_target(xs, xt, cfg.fda_beta)
        if method.adversary is None:
            logits = model.seg(xs)
            loss = F.cross_entropy(logits.float(), ys)
            meter.add(seg_loss=loss.detach())
            return loss, logits, ys
        # Two passes, as pOSAL / BEAL do: each batch is normalised by its own domain's statistics in training
        logits, fs = model.seg(xs, features=True)                              # (B, 3, c, c), (B, C, h, w)
        logits_t, ft = model.seg(xt, features=True)
        seg_loss = F.cross_entropy(logits.float(), ys)
        loss = seg_loss
        if method.adversary in ("prob", "entropy"):
            maps_s, maps_t = output_maps(logits, method.adversary), output_maps(logits_t, method.adversary)
            adv, d_loss = fooling_loss(model.disc, maps_t), discriminator_loss(model.disc, maps_s, maps_t)
            loss = seg_loss + cfg.lam_adv * adv + d_loss
            meter.add(seg_loss=seg_loss.detach(), adv_loss=adv.detach(), d_loss=d_loss.detach())
        elif method.adversary == "features":
            lam = cfg.lam_dann * dann_lambda(_progress(optimizer, total_steps))
            d_loss = domain_adversarial_loss(model.disc, fs, ft, lam)
            loss = seg_loss + d_loss
            meter.add(seg_loss=seg_loss.detach(), d_loss=d_loss.detach(), d_acc=domain_accuracy(model.disc, fs, ft))
        else:
            meter.add(seg_loss=seg_loss.detach())
        return loss, logits, ys

    return step


def to_refuge(logits: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) logits -> (N, H, W) uint8 REFUGE masks."""
    return SEG_TO_REFUGE[logits.argmax(1).cpu().numpy()]


def metric_fn(meter: EpochMeans):
    def metrics(logits, seg):
        scores = fundus_scores(to_refuge(logits), SEG_TO_REFUGE[seg.numpy()])
        return {"disc_dice": scores["disc_dice"], "cup_dice": scores["cup_dice"], "vcdr_mae": scores["vcdr_mae"],
                **{f"train_{k}": v for k, v in meter.pop().items()}}

    return metrics


# ------------------------------------------------------------------------------------------------ one run


def run_method(device: str, resume: bool, run, out: Path) -> dict:
    """common.sweep's run function: ``run.params`` = {"cfg": DAConfig, "method": key, "data": npz path}. Trains the
    row, scores camera B's val crops with the last epoch and writes ``model.pt`` (the segmenter) and
    ``figure.npz`` (a few val crops) in ``out``."""
    t0 = time.perf_counter()
    cfg, key = run.params["cfg"], run.params["method"]
    method, out, device = METHODS[key], Path(out), torch.device(device)
    data = load_data(run.params["data"])
    (xs, ys), (xt, yt), (xv, yv) = data["source"], data["target"], data["val"]
    train = PairedDomains(xt, yt, xt) if method.train_on == "target" else PairedDomains(xs, ys, xt)
    val = PairedDomains(xv, yv, xv, random_pairs=False)
    seed_everything(run.seed)
    model = build_model(cfg, method)
    groups = [{"params": model.seg.parameters(), "lr": cfg.lr}]
    if model.disc is not None:
        groups.append({"params": model.disc.parameters(), "lr": cfg.lr_disc})
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs)
    steps = cfg.epochs * -(-len(train) // cfg.batch_size)
    meter = EpochMeans()
    log(f"--- {key} / seed {run.seed}: {len(train)} labelled crops ({method.train_on}), {len(xt)} target, "
        f"{len(xv)} scored, {cfg.crop} px, {cfg.epochs} epochs")
    fit_cfg = FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, out=out, seed=run.seed, resume=resume,
                        workers=cfg.workers, monitor="val_cup_dice", mode="max",
                        args={"cfg": str(asdict(cfg)), "method": key, "seed": str(run.seed)})
    result = fit(model.to(device), train, val, make_step(method, cfg, optimizer, steps, meter), optimizer, fit_cfg,
                 device, scheduler=scheduler, metric_fn=metric_fn(meter))
    # the last epoch, not best.pt: choosing an epoch on camera B's masks would leak the target labels
    if method.adabn:
        adapt_batchnorm(model.seg, xt, cfg.batch_size)
    logits = predict(model, val, lambda m, b, d: m(b["image"].to(d)), device, batch_size=cfg.batch_size)
    pred = to_refuge(logits)
    scores = fundus_scores(pred, SEG_TO_REFUGE[yv.numpy()])
    save_model(out / "model.pt", model.seg, cfg, key, scores)
    pick = np.arange(min(6, len(xv)))
    save_npz(out / "figure.npz", image=xv[pick].numpy().transpose(0, 2, 3, 1), truth=SEG_TO_REFUGE[yv[pick].numpy()],
             pred=pred[pick])
    history = [{k: v for k, v in row.items()} for row in result["history"]]
    return {"method": key, "seed": run.seed, "disc_dice": scores["disc_dice"], "cup_dice": scores["cup_dice"],
            "vcdr_mae": scores["vcdr_mae"], "n_val": scores["n_images"], "history": history,
            "seconds": round(time.perf_counter() - t0, 1)}


# ------------------------------------------------------------------------------------------------ saved models


def save_model(path: Path, seg: UNet, cfg: DAConfig, method: str, scores: dict) -> Path:
    recipe = {"task": "fundus_da", "method": method, "width": cfg.width, "depth": cfg.depth, "size": cfg.size,
              "crop": cfg.crop, "dataset": cfg.dataset}
    return checkpoint.save(path, model=seg.state_dict(), recipe=recipe,
                           metrics={k: scores[k] for k in ("disc_dice", "cup_dice", "vcdr_mae")})


def load_model(path: str | Path, device="cpu") -> tuple[UNet, dict]:
    """A segmenter saved by :func:`save_model` (a run's ``model.pt`` or the cached demo model) and its recipe."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such checkpoint", path=path, hint="pass a model.pt written by domain_adaptation.py")
    try:
        ck = checkpoint.load(path, map_location=device)
    except Exception as exc:  # a corrupt or foreign file: one line, not a traceback
        raise InputError(f"cannot be read as a checkpoint ({type(exc).__name__})", path=path,
                         hint="pass a model.pt written by domain_adaptation.py") from None
    recipe = ck.get("recipe") if isinstance(ck, dict) else None
    if not isinstance(recipe, dict) or recipe.get("task") != "fundus_da":
        raise InputError("is not a disc / cup segmenter of this demo (no fundus_da recipe in it)", path=path,
                         hint="pass a model.pt from a domain_adaptation.py run folder")
    seg = UNet(in_channels=3, num_classes=3, width=recipe["width"], depth=recipe["depth"])
    seg.load_state_dict(ck["model"])
    return seg.to(device).eval(), recipe


# --quick: the demo's CPU recipe (and the cached model's); full mode is DAConfig's defaults
QUICK = {"size": 160, "crop": 48, "n_source": 160, "n_target": 160, "n_val": 60, "epochs": 15, "width": 8,
         "batch_size": 16, "lr": 3e-3}
DEMO = DAConfig(**QUICK)
DEMO_METHOD = "histmatch"  # the adapted row that also segments a real photograph (README: skimage retina)
DEMO_VERSION = 1


def is_demo_recipe(cfg: DAConfig) -> bool:
    """Whether ``cfg`` is the quick recipe on the phantom (how a run is carried out aside)."""
    return cfg.__class__(**{**asdict(cfg), "workers": 0, "data_root": None}) == DEMO


def demo_path() -> Path:
    return CACHE / f"fundus_da_{DEMO_METHOD}_v{DEMO_VERSION}.pt"


def cache_demo(model_pt: Path) -> Path:
    """Keep a run's ``model.pt`` as the demo model that ``--img`` uses without ``--checkpoint``."""
    target = demo_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    ck = checkpoint.load(model_pt)
    checkpoint.save(target, **ck)
    return target


# ------------------------------------------------------------------------------------------------ photographs


@torch.no_grad()
def segment_photograph(seg: UNet, recipe: dict, image: np.ndarray, device="cpu") -> dict:
    """One fundus photograph (H, W, 3) in [0, 1], any size -> REFUGE mask (H, W) uint8 on the original pixels,
    the disc crop's box in the original image, and the vCDR. The image is padded square and resized to the
    recipe's side (as in training), cropped around the located disc, segmented, and mapped back."""
    from common.data.datasets.files import pad_to_square, resize_image
    from common.data.geometry import square_box
    from common.metrics.fundus import vcdr

    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = np.clip(image[..., :3].astype(np.float32), 0, 1)
    h, w = image.shape[:2]
    size, crop = recipe["size"], recipe["crop"]
    square = resize_image(pad_to_square(image, 0.0), size)                  # (size, size, 3)
    x0, y0 = crop_box(locate_disc(square), crop, size)
    x = torch.from_numpy(np.ascontiguousarray(square[y0:y0 + crop, x0:x0 + crop].transpose(2, 0, 1)))[None]
    pred = to_refuge(seg(x.to(device)))[0]                                  # (crop, crop)
    full = np.full((size, size), 255, np.uint8)
    full[y0:y0 + crop, x0:x0 + crop] = pred
    n = max(h, w)
    full = cv2.resize(full, (n, n), interpolation=cv2.INTER_NEAREST)
    bx0, by0, bx1, by1 = square_box((h, w))
    mask = np.ascontiguousarray(full[by0:by1, bx0:bx1])
    scale = n / size
    box = (x0 * scale - bx0, y0 * scale - by0, (x0 + crop) * scale - bx0, (y0 + crop) * scale - by0)
    return {"mask": mask, "vcdr": float(vcdr(mask)), "box": box, "disc_found": bool((mask != 255).any())}
