"""Weakly supervised LV segmentation with size constraints: variants, data, training step and 3D Dice.

Kervadec, Dolz, Tang, Granger, Boykov, Ben Ayed, "Constrained-CNN losses for weakly supervised segmentation",
Medical Image Analysis 2019, https://arxiv.org/abs/1805.04628; reference code github.com/LIVIAETS/SizeLoss_WSS
(``acdc.make`` holds the settings reproduced here). Shared by ``01_WeaklySupervised/weak_labels.py`` and
``01_WeaklySupervised/train_sizeloss.py``.

Wiring, as in the reference:
- the partial cross-entropy sees only the labelled pixels of the weak label (foreground seeds; for boxes the
  background outside the box); background is otherwise unlabelled (``CrossEntropy(idc=[3])``);
- the size penalty bounds the *soft* size (sum of softmax probabilities) of the LV in each slice, divided by H*W
  and weighted by lambda (1e-2; 5e-2 for the two "presize" variants); slices without LV get bounds [0, 0];
- the 3D variant bounds the summed soft size of all slices of a volume by its exact size (margin 0), so every
  batch holds whole volumes (the reference's ``--group_train``). All variants here train on whole-volume batches
  so that the rows of a table differ only by their loss.

    ds = WeakVolumes(images, labels, weak="erosion")     # images/labels: lists of (D, H, W) arrays
    step = make_step(VARIANTS["presize"])                # step(model, batch, device) -> (loss, logits, mask)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from common.errors import InputError
from common.losses import (
    IGNORE_INDEX,
    bounds_from_masks,
    mask_sizes,
    object_region,
    partial_cross_entropy,
    size_penalty,
    volume_size_penalty,
)
from common.metrics import dice
from common.weak.labels import BACKGROUND, make_weak_label

REFERENCE_SIDE = 256  # ACDC slices in the reference code; seed sizes are scaled from it


@dataclass(frozen=True)
class Variant:
    """One row of Kervadec et al.'s ACDC experiments: which loss terms and bounds (acdc.make targets)."""

    about: str
    full: bool = False           # cross-entropy on the full mask (the upper bound)
    bounds: str | None = None    # a kind of common.losses.bounds_from_masks, or "volume" for the 3D penalty
    lam: float = 0.0             # weight of the size penalty
    margin: float = 0.1          # relative margin of precise/upper/volume bounds


VARIANTS: dict[str, Variant] = {
    "fs": Variant("full supervision: cross-entropy on every pixel", full=True),
    "partial": Variant("partial cross-entropy on the weak label only"),
    "loose": Variant("partial CE + size penalty, loose bounds [1, H*W]", bounds="loose", lam=1e-2),
    "size": Variant("partial CE + size penalty, common bounds [60, 2000] at 256^2", bounds="common", lam=1e-2),
    "presize_upper": Variant("partial CE + size penalty, upper bound 1.1 x true size", bounds="upper", lam=5e-2),
    "presize": Variant("partial CE + size penalty, true size +- 10%", bounds="precise", lam=5e-2),
    "3d_size": Variant("partial CE + size penalty on the volume's summed size (exact)", bounds="volume",
                       lam=1e-2, margin=0.0),
}

# CLI names of the weak labels -> common.weak.labels kinds.
WEAK_KINDS = {"erosion": "erosion", "random": "point", "centroid": "centroid", "box": "box"}


def weak_options(kind: str, side: int) -> dict:
    """Seed sizes of the reference (set for 256-px slices) scaled to ``side`` so seeds cover the same fraction."""
    scale = side / REFERENCE_SIDE
    if kind == "erosion":  # reference: up to 10 erosions of a 3x3 square at 256 px
        return {"max_iterations": max(1, round(10 * scale))}
    if kind in ("random", "centroid"):  # common.weak.labels default radius 4 at 256 px
        return {"radius": max(1.0, 4.0 * scale)}
    return {}


def weak_label_stack(kind: str, masks: np.ndarray, seed: int = 0) -> np.ndarray:
    """Weak labels (D, H, W) uint8 of binary masks (D, H, W); slices without the class get no seed.

    Seeds: such slices stay unlabelled (the reference's weak label is empty there). Boxes: an annotator draws
    no box on such a slice, so the whole slice is labelled background.
    """
    assert masks.ndim == 3, f"masks must be (D, H, W), got {masks.shape}"
    if kind not in WEAK_KINDS:
        raise InputError(f"unknown weak label kind {kind!r}", hint=f"use one of {', '.join(WEAK_KINDS)}")
    out = np.full(masks.shape, IGNORE_INDEX, np.uint8)
    options = weak_options(kind, masks.shape[-1])
    for d, m in enumerate(masks):
        if m.any():
            out[d] = make_weak_label(WEAK_KINDS[kind], m, seed=[seed, d], **options)
        elif kind == "box":
            out[d] = BACKGROUND
    return out


class WeakVolumes(Dataset):
    """Volumes with binary masks of one class and their weak labels: one item = all slices of one volume.

    item: {"image": (D, 1, H, W) float32, "mask": (D, H, W) int64 in {0, 1}, "weak": (D, H, W) int64
    (0, 1 or IGNORE_INDEX), "volume": (D,) int64}. Batch with :func:`collate_volumes`.
    """

    def __init__(self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], weak: str = "erosion",
                 label: int = 3, seed: int = 0, ids: Sequence[int] | None = None):
        if len(images) != len(labels) or not images:
            raise InputError(f"got {len(images)} image volumes and {len(labels)} label volumes",
                             hint="pass one label volume per image volume, at least one")
        self.items = []
        for v, (img, lab) in enumerate(zip(images, labels, strict=True)):  # lengths checked above
            img, lab = np.asarray(img, np.float32), np.asarray(lab)
            if img.shape != lab.shape or img.ndim != 3:
                raise InputError(f"volume {v}: image {img.shape} and labels {lab.shape} must both be (D, H, W)")
            mask = (lab == label).astype(np.int64)
            vid = int(ids[v]) if ids is not None else v
            self.items.append({"image": torch.from_numpy(img[:, None].copy()),         # (D, 1, H, W)
                               "mask": torch.from_numpy(mask),                          # (D, H, W)
                               "weak": torch.from_numpy(weak_label_stack(weak, mask, seed + 7919 * vid)
                                                        .astype(np.int64)),              # (D, H, W)
                               "volume": torch.full((len(img),), vid, dtype=torch.int64)})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]

    def slice_volume_ids(self) -> np.ndarray:
        """Volume id of every slice, in the order a sequential loader yields them, (N,)."""
        return torch.cat([it["volume"] for it in self.items]).numpy()


def collate_volumes(items: list[dict]) -> dict:
    """Stack the slices of the volumes of a batch: image (N, 1, H, W), mask/weak (N, H, W), volume (N,)."""
    return {k: torch.cat([it[k] for it in items]) for k in ("image", "mask", "weak", "volume")}


def make_step(variant: Variant):
    """Training/validation step of one variant (Kervadec 2019, Eq. 2 + lambda * Eq. 5): -> (loss, logits, mask)."""

    def step(model, batch, device):
        x = batch["image"].to(device)                                  # (N, 1, H, W)
        mask = batch["mask"].to(device)                                # (N, H, W)
        logits = model(x)                                              # (N, 2, H, W)
        assert logits.shape[0] == x.shape[0] and logits.shape[-2:] == x.shape[-2:], tuple(logits.shape)
        if variant.full:
            return F.cross_entropy(logits.float(), mask), logits, mask
        weak = batch["weak"].to(device)                                # (N, H, W)
        loss = partial_cross_entropy(logits.float(), weak)
        region = object_region(weak, BACKGROUND)  # the whole image for seed labels, the box for a box label
        if variant.bounds == "volume":
            penalty = volume_size_penalty(logits.float(), batch["volume"].to(device), mask_sizes(mask),
                                          margin=variant.margin, region=region)
            loss = loss + variant.lam * penalty
        elif variant.bounds is not None:
            # The masks stand in for the annotator: tags only for common/loose bounds, sizes for precise/upper.
            bounds = bounds_from_masks(variant.bounds, mask, margin=variant.margin)
            loss = loss + variant.lam * size_penalty(logits.float(), bounds, region=region)
        return loss, logits, mask

    return step


def dice_by_volume(pred: np.ndarray, target: np.ndarray, volume_ids: np.ndarray) -> dict:
    """3D Dice per volume (the reference's grouped ``val_batch_dice``) and 2D Dice per slice (``val_dice``).

    pred, target: binary (N, H, W) slices of several volumes; volume_ids (N,). Empty vs empty counts as 1.
    """
    assert pred.shape == target.shape and pred.ndim == 3 and volume_ids.shape == (pred.shape[0],)
    per_volume = [dice(pred[volume_ids == v], target[volume_ids == v]) for v in np.unique(volume_ids)]
    per_slice = dice(pred, target, per_image=True)
    return {"dice3d": float(np.mean(per_volume)), "dice3d_std": float(np.std(per_volume)),
            "dice2d": float(np.mean(per_slice)), "n_volumes": len(per_volume)}


def volume_dice_metric(volume_ids: np.ndarray):
    """metric_fn for common.engine: logits (N, 2, H, W) of the validation set in order -> 3D and 2D Dice."""

    def metric_fn(outputs: torch.Tensor, targets: torch.Tensor) -> dict:
        assert outputs.shape[0] == len(volume_ids), "validation outputs must come in dataset order"
        pred = outputs.argmax(1).numpy().astype(bool)
        truth = targets.numpy().astype(bool)
        out = dice_by_volume(pred, truth, volume_ids)
        out.pop("n_volumes")
        # Diagnostics of under-segmentation: soft size (sum of probabilities) vs hard size vs true size.
        hit, n_true = float((pred & truth).sum()), max(float(truth.sum()), 1.0)
        out.update(precision=hit / max(float(pred.sum()), 1.0), recall=hit / n_true,
                   soft_size_ratio=float(torch.softmax(outputs.float(), 1)[:, 1].sum()) / n_true,
                   hard_size_ratio=float(pred.sum()) / n_true)
        return out

    return metric_fn


def load_cardiac(dataset: str, split: str, size: int, n_volumes: int, seed: int = 0, data_root=None,
                 n_train: int = 0) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Image and label volumes (D, H, W) of the cardiac phantom or ACDC for ``split`` "train"/"val".

    Phantom: validation patients follow the ``n_train`` training patients (disjoint volumes). ACDC: the
    loader's patient-level split (both phases of a patient on the same side); ``n_volumes`` caps the count.
    """
    if dataset == "phantom":
        from common.data.phantoms.cardiac import CardiacPhantomVolumes

        ds = CardiacPhantomVolumes(n_volumes, size, seed=seed, offset=0 if split == "train" else n_train)
        vols = [ds.volume(i)[:2] for i in range(len(ds))]
        return [v for v, _ in vols], [lab for _, lab in vols], list(ds.ids)
    if dataset == "acdc":
        from common.data.datasets.acdc import ACDC

        if data_root is None:
            raise InputError("--dataset acdc needs --data-root", hint="pass the ACDC folder that holds training/")
        ds = ACDC(data_root, split=split, mode="volume", size=size, seed=seed)
        count = min(len(ds), n_volumes) if n_volumes else len(ds)
        vols = [ds.volume(i) for i in range(count)]
        return [v for v, _ in vols], [lab for _, lab in vols], list(range(count))
    raise InputError(f"unknown dataset {dataset!r}", hint="use phantom or acdc")
