"""Score explanation maps against ground-truth lesion masks, batch by batch over a dataset.

Localisation: pointing game (Zhang et al. 2016, https://arxiv.org/abs/1608.00507) with a tolerance,
energy-based pointing game (Wang et al. 2020, https://arxiv.org/abs/1910.01279), IoU of the map
thresholded at a fraction of its maximum; faithfulness: deletion / insertion AUC (Petsiuk et al. 2018,
https://arxiv.org/abs/1806.07421). Used by 00_Interpretability/evaluate.py and the shortcut demo;
:func:`explained_batches` is the batch loop under it, which 01_WeaklySupervised/localize.py scores its boxes on.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader

from common.cam.context import class_probabilities, resolve_targets
from common.cam.tta import explain_tta
from common.metrics import energy_pointing_game, iou, pointing_game
from common.metrics.faithfulness import deletion_insertion
from common.models import to_model_input
from common.models.fold import cached_folded_copy


def pointing_tolerance(size: int) -> int:
    """Default pointing-game tolerance: 1/16 of the image side (8 px at 128; Zhang et al. allowed 15 px at 224)."""
    return round(size / 16)


def region_masks(batch: dict, region: str) -> np.ndarray:
    """(B, H, W) bool masks of the region to score against: the lesion, or the L/R marker's box."""
    if region == "lesion":
        return batch["mask"].numpy().astype(bool)
    meta = batch["meta"]
    b, h, w = batch["mask"].shape
    out = np.zeros((b, h, w), bool)
    for i in range(b):
        x0, y0, x1, y1 = (int(meta[k][i]) for k in ("marker_x0", "marker_y0", "marker_x1", "marker_y1"))
        out[i, max(y0, 0):y1, max(x0, 0):x1] = True
    return out


def target_probability(model, target: int, device):
    """(N, 1, H, W) images -> (N,) probability of class ``target``, for the deletion / insertion curves' many forward
    passes: through the model's inference copy with its conv -> BatchNorm pairs folded (:mod:`common.models.fold`;
    equal up to float rounding, ~2e-7 here) on channels-last input, about 2x faster on a CPU than the model as it is
    (measured on the demo DenseNet, 34 images of 160 px)."""
    net = model
    if not model.training:  # folding needs BN's running statistics (eval mode)
        folded, n_folded = cached_folded_copy(model)
        net = folded if n_folded else model

    def score(x):
        with torch.no_grad():
            inputs = to_model_input(x.to(device)).contiguous(memory_format=torch.channels_last)
            return class_probabilities(net(inputs))[:, target]

    return score


def explained_batches(model, dataset, methods: Mapping, layers: Mapping, device, *, target: int = 1,
                      batch_size: int = 16, tta: str = "none") -> Iterator[tuple[int, dict, "torch.Tensor", dict]]:
    """The dataset in order, batch by batch, with its maps: (index of the batch's first image, the batch as the
    DataLoader collates it, logits (B, K) of the unaugmented images, {method: {layer: (B, H, W) in [0, 1]}}).

    Every map explains class ``target``; ``tta`` is a key of ``common.cam.tta.TTA`` ("none": single view)."""
    seen = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x = batch["image"].to(device)  # (B, 1, H, W)
        logits, maps = explain_tta(model, to_model_input(x), methods, layers, target=target, tta=tta)
        yield seen, batch, logits, maps
        seen += len(x)


def score_dataset(model, dataset, methods: Mapping, layers: Mapping, device, *, target: int = 1,
                  tolerance: int = 8, threshold: float = 0.5, regions=("lesion",), faithfulness: int = 0,
                  steps: int = 16, batch_size: int = 16, keep: int = 4, tta: str = "none") -> dict:
    """Per method and layer: mean scores over the dataset (and up to ``keep`` maps for figures).

    faithfulness: number of images (from the start) that also get deletion/insertion AUCs.
    tta: test-time augmentation of the maps (a key of ``common.cam.tta.TTA``; "none": single view).
    target: the class every map explains (1 = abnormal for the project's 1-output heads); ``probs`` is its
    probability per image (``common.cam.class_probabilities``), which the deletion / insertion curves follow too.
    Returns {"rows": [...], "examples": {...}, "probs": (N,), "predicted": (N,) classes, "hits": {(method, layer,
    region): (N,)}}, where
    ``hits`` holds each image's pointing-game hit (1.0 / 0.0; NaN where the image has no such region).
    """
    scores: dict = defaultdict(lambda: defaultdict(list))
    hits: dict = defaultdict(dict)  # key -> {image index: hit}
    examples = {"images": [], "masks": [], "maps": defaultdict(list)}
    probs, predicted, seen = [], [], 0

    score_fn = target_probability(model, target, device)
    curves: dict = {}  # image index -> its ImageCurves

    for start, batch, logits, maps in explained_batches(model, dataset, methods, layers, device, target=target,
                                                        batch_size=batch_size, tta=tta):
        x = batch["image"].to(device)  # (B, 1, H, W)
        probs.append(class_probabilities(logits)[:, target].cpu().numpy())
        predicted.append(resolve_targets(logits.detach()).cpu().numpy())  # the predicted class
        masks = {r: region_masks(batch, r) for r in regions}
        for m in maps:
            for k, block_maps in maps[m].items():
                bm = block_maps.cpu().numpy()  # (B, H, W)
                for i in range(len(bm)):
                    for r, rm in masks.items():
                        if not rm[i].any():
                            continue
                        key = (m, k, r)
                        hit = pointing_game(bm[i], rm[i], tolerance)
                        scores[key]["pointing_game"].append(hit)
                        hits[key][start + i] = hit
                        scores[key]["energy_pg"].append(energy_pointing_game(bm[i], rm[i]))
                        scores[key]["iou"].append(iou(bm[i] >= threshold, rm[i]))
                    if start + i < faithfulness:
                        if start + i not in curves:
                            curves[start + i] = ImageCurves(score_fn, x[i])
                        f = curves[start + i].aucs(block_maps[i], steps)
                        scores[(m, k, "faithfulness")]["deletion_auc"].append(f["deletion_auc"])
                        scores[(m, k, "faithfulness")]["insertion_auc"].append(f["insertion_auc"])
                    if start + i < keep:
                        examples["maps"][(m, k)].append(bm[i])
        for i in range(len(x)):
            if start + i < keep:
                examples["images"].append(batch["image"][i, 0].numpy())
                examples["masks"].append([masks[r][i] for r in regions])
        seen = start + len(x)  # images scored so far
    rows = []
    for (m, k, r), vals in scores.items():
        if r == "faithfulness":
            continue
        row = {"method": m, "block": k, "region": r, "n": len(vals["pointing_game"])}
        row.update({name: float(np.mean(v)) for name, v in vals.items()})
        f = scores.get((m, k, "faithfulness"))
        if f:
            row.update({name: float(np.mean(v)) for name, v in f.items()})
        rows.append(row)
    rows.sort(key=lambda r: (r["region"], list(methods).index(r["method"]), -r["block"]))
    per_image = {}
    for key, by_index in hits.items():
        per_image[key] = np.full(seen, np.nan)
        per_image[key][list(by_index)] = list(by_index.values())
    return {"rows": rows, "examples": examples, "probs": np.concatenate(probs) if probs else np.empty(0),
            "predicted": np.concatenate(predicted) if predicted else np.empty(0, np.int64), "hits": per_image}


class ImageCurves:
    """Deletion / insertion AUCs of one image's maps (Petsiuk et al. 2018), without scoring anything twice: a map
    equal to one already done (CAM and Grad-CAM coincide at the layer the head pools, to ~1e-7: the same pixel order
    up to ties) reuses its AUCs, and the inputs every curve shares -- the image itself and the all-zero baseline, the
    first and last step of each curve -- are scored once for the image."""

    def __init__(self, score_fn, image: torch.Tensor):
        self.score_fn, self.image = score_fn, image.cpu()  # (C, H, W)
        self.done: list = []  # (map, AUCs)
        self.ends: dict = {}  # "image" / "baseline" -> score

    def aucs(self, saliency: torch.Tensor, steps: int) -> dict:
        saliency = saliency.cpu()
        for other, f in self.done:
            if torch.allclose(other, saliency, rtol=0, atol=1e-6):
                return f
        f = deletion_insertion(self.score, self.image, saliency, steps=steps)
        self.done.append((saliency, f))
        return f

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """score_fn for (N, C, H, W) steps of this image's curves; rows that are the image or the baseline come from
        (or fill) the cache."""
        flat = x.flatten(1)
        which = {"image": (flat == self.image.flatten()).all(1), "baseline": (flat == 0).all(1)}
        out = torch.empty(len(x))
        rest = ~(which["image"] | which["baseline"])
        if rest.any():
            out[rest] = self.score_fn(x[rest]).float().cpu()
        for name, rows in which.items():
            if rows.any():
                if name not in self.ends:
                    self.ends[name] = self.score_fn(x[rows][:1]).float().cpu()[0]
                out[rows & ~rest] = self.ends[name]
        return out
