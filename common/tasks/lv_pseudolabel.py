"""Pseudo-label LV segmentation: weak label -> pseudo mask -> ENet -> DenseCRF / graph search, and its run function.

The survey's "representative framework" of weakly supervised segmentation (Zhang et al. 2019,
https://arxiv.org/abs/1908.00473; their ACDC demo: region growing -> ENet 0.6850 3D Dice, + DenseCRF 0.7146):

1. each training volume's weak label becomes a pseudo mask (:mod:`common.weak.pseudo`: region growing, k-means);
2. an ENet (Paszke et al. 2016) learns the pseudo masks with the cross-entropy of the common engine, optionally with
   the pixels within ``ignore_band`` pixels of a pseudo mask's border left out (they are the least certain);
3. its softmax is post-processed by DenseCRF (:mod:`common.weak.crf`) and graph methods (:mod:`common.weak.graph`).

Three disjoint sets of volumes: ``train`` (weak labels only), ``tune`` (true masks: ENet's epoch and the CRF / graph
parameters are chosen there) and ``val`` (true masks: every stage is scored there, nothing is chosen on them). On
the phantom, ``val`` is the validation set of the size-loss demo (``common.tasks.lv_weak_seg``) for the same
``n_train`` and ``n_val``, so the two demos' tables score the same volumes; ``tune`` follows it.

    results = sweep(grid(...), functools.partial(run_pipeline, "cpu", False), out)   # run.params: cfg, weak, target
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from common.engine import FitConfig, checkpoint, fit, predict
from common.errors import InputError
from common.losses import IGNORE_INDEX, partial_cross_entropy
from common.models.enet import ENet
from common.runtime import log, seed_everything
from common.tasks.lv_weak_seg import WeakVolumes, dice_by_volume, load_cardiac, volume_dice_metric
from common.weak.crf import CRFParams, crf_masks, densecrf_available
from common.weak.graph import GRAPH_METHODS, GrabCutParams, PolarParams, graph_masks
from common.weak.pseudo import PseudoConfig, pseudo_masks

# The survey authors' ACDC numbers (3D Dice of the LV; region growing with mean ± 3 std, ENet, DenseCRF sxy 3 schan 10).
SURVEY = {"enet": 0.6850, "crf_survey": 0.7146}
STAGES = ("pseudo", "enet", "crf", "graph")
TARGETS = ("pseudo", "mask")  # what ENet learns: the pseudo masks, or the true masks (full supervision)
# Quick: ~30 CPU-seconds a run, one thread each (the quick table runs them all at once); full: the size-loss demo's.
# The higher quick lr makes up for ~160 steps, as in train_sizeloss.py's quick preset.
QUICK = {"size": 64, "n_tune": 2, "epochs": 20, "lr": 5e-3, "threads": 1}
FULL = {"size": 128, "n_tune": 4, "epochs": 100, "lr": 5e-4, "threads": 0}
VOLUMES = {"quick": {"n_train": 8, "n_val": 4}, "full": {"n_train": 40, "n_val": 10}}  # phantom; ACDC: 0 = all
# Candidates chosen among on the tune volumes (Dice of the volumes there).
CRF_GRID = {"sxy": (1.0, 3.0, 5.0, 10.0), "schan": (5.0, 10.0, 20.0, 40.0), "compat": (3.0, 10.0),
            "gauss_compat": (0.0, 3.0)}
POLAR_GRID = {"edge_weight": (0.0, 0.5, 1.0, 2.0), "max_jump": (1, 2)}


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a run's result depends on besides its weak label, target and seed."""

    dataset: str = "phantom"
    data_root: str | None = None
    size: int = 128
    n_train: int = 40
    n_val: int = 10
    n_tune: int = 4
    label: int = 3                     # ACDC / phantom: 3 = LV cavity
    data_seed: int = 0                 # the phantom's patients (the run's seed draws weak labels and ENet's init)
    epochs: int = 100
    lr: float = 5e-4
    batch_size: int = 1                # whole volumes
    ignore_band: int = 0               # pixels either side of a pseudo mask's border left out of the loss
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    crf: CRFParams = field(default_factory=CRFParams)
    polar: PolarParams = field(default_factory=PolarParams)
    grabcut: GrabCutParams = field(default_factory=GrabCutParams)
    graph: tuple[str, ...] = ("polar", "grabcut")
    stages: tuple[str, ...] = STAGES
    choose: bool = True                # choose CRF / polar parameters on the tune volumes (else: the ones above)
    workers: int = 0


class TargetVolumes(torch.utils.data.Dataset):
    """WeakVolumes items with a training target: item keys image (D, 1, H, W), mask, weak, target (D, H, W) int64
    (0, 1 or IGNORE_INDEX), pseudo (D, H, W) bool (the pseudo mask; the true mask for full supervision), volume
    (D,). Batch with :func:`collate_targets`."""

    def __init__(self, volumes: WeakVolumes, targets: list[np.ndarray], pseudo: list[np.ndarray]):
        assert len(volumes) == len(targets) == len(pseudo)
        self.items = []
        for item, target, mask in zip(volumes.items, targets, pseudo, strict=True):
            assert target.shape == mask.shape == tuple(item["mask"].shape), (target.shape, tuple(item["mask"].shape))
            self.items.append({**item, "target": torch.from_numpy(np.asarray(target, np.int64)),
                               "pseudo": torch.from_numpy(np.asarray(mask, bool))})
        self.volume_ids = volumes.slice_volume_ids()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]

    def stack(self, key: str) -> np.ndarray:
        """``key`` of every slice in order as numpy: image (N, H, W), mask/weak/target/pseudo (N, H, W)."""
        arr = torch.cat([it[key] for it in self.items]).numpy()
        return arr[:, 0] if key == "image" else arr


def collate_targets(items: list[dict]) -> dict:
    return {k: torch.cat([it[k] for it in items]) for k in ("image", "mask", "weak", "target", "pseudo", "volume")}


def with_ignore_band(masks: np.ndarray, band: int, labelled: np.ndarray | None = None) -> np.ndarray:
    """Pseudo masks bool (D, H, W) as int64 targets, pixels within ``band`` of a mask border set to IGNORE_INDEX.

    ``labelled`` (D,) bool: slices whose mask came from a seed; other slices stay all background, without a band.
    """
    target = masks.astype(np.int64)
    if band <= 0:
        return target
    square = np.ones((3, 3), bool)
    for d, m in enumerate(masks):
        if m.any() and (labelled is None or labelled[d]):
            ring = ndimage.binary_dilation(m, square, band) & ~ndimage.binary_erosion(m, square, band)
            target[d][ring] = IGNORE_INDEX
    return target


def target_step(model, batch, device):
    """Cross-entropy on the target's labelled pixels (all of them without an ignore band) -> (loss, logits, mask)."""
    x = batch["image"].to(device)                                                # (N, 1, H, W)
    logits = model(x)                                                            # (N, 2, H, W)
    assert logits.shape[0] == x.shape[0] and logits.shape[-2:] == x.shape[-2:], tuple(logits.shape)
    return partial_cross_entropy(logits.float(), batch["target"].to(device)), logits, batch["mask"].to(device)


def load_volumes(cfg: PipelineConfig) -> dict[str, tuple[list, list, list]]:
    """(images, labels, ids) of the train / val / tune volumes (D, H, W) each; val and tune split the validation set."""
    images, labels, ids = load_cardiac(cfg.dataset, "train", cfg.size, cfg.n_train, cfg.data_seed, cfg.data_root)
    if not any((np.asarray(lab) == cfg.label).any() for lab in labels):
        raise InputError(f"label {cfg.label} does not occur in the {cfg.dataset} training masks",
                         hint="check the dataset's label map (ACDC: 1 = RV, 2 = myocardium, 3 = LV cavity)")
    out = {"train": (images, labels, ids)}
    want = cfg.n_val + cfg.n_tune if cfg.n_val else 0
    images, labels, ids = load_cardiac(cfg.dataset, "val", cfg.size, want, cfg.data_seed, cfg.data_root,
                                       n_train=cfg.n_train)
    if len(images) <= cfg.n_tune:
        raise InputError(f"{len(images)} validation volumes cannot hold {cfg.n_tune} tuning volumes and scored ones",
                         hint="lower --n-tune or use more validation volumes")
    cut = len(images) - cfg.n_tune
    out["val"] = images[:cut], labels[:cut], ids[:cut]
    out["tune"] = images[cut:], labels[cut:], ids[cut:]
    return out


def load_splits(cfg: PipelineConfig, weak: str, seed: int, volumes: dict | None = None) -> dict[str, WeakVolumes]:
    """train / val / tune volumes, weak labels of kind ``weak`` drawn with ``seed`` (val and tune: true masks too).
    ``volumes``: :func:`load_volumes`'s result, when already loaded."""
    volumes = volumes or load_volumes(cfg)
    return {name: WeakVolumes(images, labels, weak, cfg.label, seed, ids)
            for name, (images, labels, ids) in volumes.items()}


def make_targets(volumes: WeakVolumes, cfg: PipelineConfig, target: str) -> TargetVolumes:
    """The training targets of every volume: its pseudo masks (with the ignore band) or its true masks."""
    targets, pseudo = [], []
    for item in volumes.items:
        if target == "mask":
            pseudo.append(item["mask"].numpy().astype(bool))
            targets.append(item["mask"].numpy())
            continue
        weak = item["weak"].numpy()
        try:
            pseudo.append(pseudo_masks(item["image"][:, 0].numpy(), weak, cfg.pseudo))
        except InputError as exc:
            raise InputError(f"volume {int(item['volume'][0])}: {exc.message}", hint=exc.hint) from None
        targets.append(with_ignore_band(pseudo[-1], cfg.ignore_band, (weak != IGNORE_INDEX).any((1, 2))))
    return TargetVolumes(volumes, targets, pseudo)


def train_enet(train: TargetVolumes, tune: TargetVolumes, cfg: PipelineConfig, seed: int, out: Path, device,
               args: dict, resume: bool = False) -> tuple[torch.nn.Module, dict]:
    """ENet on the targets through common.engine, its epoch chosen by 3D Dice on the tune volumes (best.pt)."""
    seed_everything(seed)
    model = ENet(in_channels=1, num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))  # as the size-loss demo
    fit_cfg = FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, out=out, seed=seed, resume=resume,
                        workers=cfg.workers, monitor="val_dice3d", mode="max", collate_fn=collate_targets, args=args)
    result = fit(model, train, tune, target_step, optimizer, fit_cfg, device,
                 metric_fn=volume_dice_metric(tune.volume_ids))
    model.load_state_dict(checkpoint.load(out / "best.pt", map_location=device)["model"])
    best = max(result["history"], key=lambda h: h["val_dice3d"])
    return model, {"best_epoch": best["epoch"], "tune_dice3d": best["val_dice3d"], "history": result["history"]}


def foreground_probs(model, volumes: TargetVolumes, device) -> np.ndarray:
    """ENet's softmax probability of the class, (N, H, W) float32, slices in dataset order."""
    return predict(model, volumes, lambda m, b, d: torch.softmax(m(b["image"].to(d)).float(), 1)[:, 1], device,
                   batch_size=1, collate_fn=collate_targets).numpy()


def choose(candidates: list, score) -> tuple[object, list[dict]]:
    """The candidate with the highest ``score(candidate)`` (the first among equals) and every score."""
    scores = [score(c) for c in candidates]
    table = [{**asdict(c), "dice3d": s} for c, s in zip(candidates, scores, strict=True)]
    return candidates[int(np.argmax(scores))], table


def _grid(base, grid: dict) -> list:
    return [replace(base, **dict(zip(grid, values, strict=True))) for values in itertools.product(*grid.values())]


def postprocess(cfg: PipelineConfig, tune: TargetVolumes, val: TargetVolumes, p_tune: np.ndarray,
                p_val: np.ndarray) -> tuple[dict, dict]:
    """Masks of the post-processing stages on the val volumes, and what was chosen on the tune volumes."""
    img_t, img_v = tune.stack("image"), val.stack("image")
    truth_t = tune.stack("mask").astype(bool)

    def tune_dice(masks):
        return dice_by_volume(masks, truth_t, tune.volume_ids)["dice3d"]

    masks, chosen = {}, {}
    if "crf" in cfg.stages and densecrf_available():
        masks["crf_survey"] = crf_masks(img_v, p_val, CRFParams())
        params = cfg.crf
        if cfg.choose:
            params, chosen["crf_grid"] = choose(_grid(cfg.crf, CRF_GRID),
                                                lambda c: tune_dice(crf_masks(img_t, p_tune, c)))
        chosen["crf"] = asdict(params)
        masks["crf"] = crf_masks(img_v, p_val, params)
    elif "crf" in cfg.stages:
        log("DenseCRF skipped: pydensecrf cannot be imported (pip install pydensecrf2)")
    if "graph" in cfg.stages:
        for method in cfg.graph:
            params = cfg.polar if method == "polar" else cfg.grabcut
            if method == "polar" and cfg.choose:
                params, chosen["polar_grid"] = choose(_grid(params, POLAR_GRID),
                                                      lambda c: tune_dice(graph_masks(img_t, p_tune, "polar", c)))
            chosen[method] = asdict(params)
            masks[method] = graph_masks(img_v, p_val, method, params)
    return masks, chosen


def stage_name(stage: str, pseudo: PseudoConfig) -> str:
    """How a stage key of a run's ``dice3d`` reads in a table."""
    grown = (f"region growing, k = {pseudo.k:g}" if pseudo.method == "region" else
             f"k-means, {pseudo.n_clusters} clusters")
    names = {"pseudo": f"pseudo mask ({grown})", "enet": "ENet",
             "crf_survey": "ENet + DenseCRF (survey: sxy 3, schan 10)",
             "crf": "ENet + DenseCRF (chosen on tune volumes)", "polar": "ENet + graph search (polar DP)",
             "grabcut": "ENet + GrabCut"}
    return names[stage]


def check_inputs(cfg: PipelineConfig, weaks, seed: int) -> None:
    """Load every split and grow its pseudo masks once for each weak label: bad data (a volume without seeds, image
    and mask sizes that differ, an unknown stage) is an InputError before anything trains or is written."""
    unknown = [s for s in cfg.stages if s not in STAGES] + [g for g in cfg.graph if g not in GRAPH_METHODS]
    if unknown:
        raise InputError(f"unknown stage or graph method {unknown[0]!r}",
                         hint=f"stages: {', '.join(STAGES)}; graph methods: {', '.join(GRAPH_METHODS)}")
    loaded = load_volumes(cfg)
    for weak in weaks:
        for volumes in load_splits(cfg, weak, seed, loaded).values():
            make_targets(volumes, cfg, "pseudo")


def run_pipeline(device: str, resume: bool, run, out: Path) -> dict:
    """common.sweep's run function: ``run.params`` = {"cfg": PipelineConfig, "weak": kind, "target": "pseudo" or
    "mask"}; returns 3D (and 2D) Dice of every stage on the val volumes, what was chosen on the tune volumes, and
    ``figure.npz`` in ``out`` (a few val slices through every stage). ``resume``: continue ENet from ``out``'s
    last.pt (as common.engine.fit does), else train afresh."""
    t0 = time.perf_counter()
    cfg, weak, target = run.params["cfg"], run.params["weak"], run.params["target"]
    if target not in TARGETS:
        raise InputError(f"unknown training target {target!r}", hint=f"use one of {', '.join(TARGETS)}")
    out, device = Path(out), torch.device(device)
    splits = load_splits(cfg, weak, run.seed)
    sets = {name: make_targets(vols, cfg, target) for name, vols in splits.items()}
    train, val, tune = sets["train"], sets["val"], sets["tune"]
    truth = val.stack("mask").astype(bool)
    log(f"--- {run.config} / seed {run.seed}: {target} targets from {weak} labels; {len(train)} train, "
        f"{len(tune)} tune, {len(val)} val volumes at {cfg.size} px")
    masks = {}
    if target == "pseudo" and "pseudo" in cfg.stages:
        masks["pseudo"] = val.stack("pseudo")
    if target == "pseudo":
        train_pseudo = dice_by_volume(train.stack("pseudo"), train.stack("mask").astype(bool), train.volume_ids)
    summary = {"config": run.config, "weak": weak, "target": target, "seed": run.seed}
    if "enet" in cfg.stages or {"crf", "graph"} & set(cfg.stages):
        args = {"cfg": str(asdict(cfg)), "weak": weak, "target": target, "seed": str(run.seed)}
        model, fitted = train_enet(train, tune, cfg, run.seed, out, device, args, resume)
        p_val, p_tune = foreground_probs(model, val, device), foreground_probs(model, tune, device)
        masks["enet"] = p_val > 0.5
        post, chosen = postprocess(cfg, tune, val, p_tune, p_val)
        masks.update(post)
        summary.update(chosen=chosen, best_epoch=fitted["best_epoch"], tune_dice3d=fitted["tune_dice3d"],
                       history=fitted["history"])
    scores = {name: dice_by_volume(m, truth, val.volume_ids) for name, m in masks.items()}
    summary.update(dice3d={k: s["dice3d"] for k, s in scores.items()},
                   dice2d={k: s["dice2d"] for k, s in scores.items()}, n_val_volumes=len(val),
                   seconds=round(time.perf_counter() - t0, 1))
    if target == "pseudo":
        summary["train_pseudo_dice3d"] = train_pseudo["dice3d"]
    save_figure_data(out / "figure.npz", val, masks, p_val if "enet" in masks else None)
    return summary


def save_figure_data(path: Path, val: TargetVolumes, masks: dict, prob: np.ndarray | None, n: int = 4) -> None:
    """A few val slices with the LV (spread base to apex) through every stage, for the demo's figure."""
    truth = val.stack("mask").astype(bool)
    with_lv = np.flatnonzero(truth.any((1, 2)))
    pick = with_lv[np.linspace(0, len(with_lv) - 1, min(n, len(with_lv))).astype(int)]
    arrays = {"slices": pick, "image": val.stack("image")[pick], "truth": truth[pick], "weak": val.stack("weak")[pick],
              **{f"mask_{k}": m[pick] for k, m in masks.items()}}
    if prob is not None:
        arrays["prob"] = prob[pick]
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
