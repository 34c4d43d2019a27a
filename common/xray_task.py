"""The MURA-protocol normal/abnormal radiograph task shared by the interpretability scripts.

Rajpurkar et al., "MURA: Large Dataset for Musculoskeletal Radiographs", 2017,
https://arxiv.org/abs/1712.06957: DenseNet169, 320x320 inputs with ImageNet normalisation, lateral flips
and rotations up to 30 degrees, binary cross-entropy weighted per study type (w1 = N/(A+N) for abnormal,
w0 = A/(A+N) for normal), Adam lr 1e-4 divided by 10 on a validation plateau, batch 8; evaluation of
the study-level probability (mean of the study's image probabilities) by Cohen's kappa.

The same code runs on the built-in bone phantom (each image its own study) and on MURA-v1.1.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from common.metrics import accuracy, auroc, cohen_kappa, sensitivity_specificity


def _as_stored(batch: list[dict]) -> list[tuple[dict, dict]]:
    """Items as Materialized keeps them, floating-point images in float16, with their tensors as numpy arrays:
    from a worker, arrays travel pickled in the batch, where tensors would each take a shared-memory file
    (a file descriptor each while kept, and slower to set up than rendering an image)."""
    out = []
    for item in batch:
        arrays = {k: (v.half() if k == "image" and v.is_floating_point() else v).numpy()
                  for k, v in item.items() if torch.is_tensor(v)}
        out.append(({k: v for k, v in item.items() if k not in arrays}, arrays))
    return out


class Materialized(Dataset):
    """Render a procedural dataset once and keep it in memory, so epochs don't re-render it.

    Images are kept in float16 (half the memory: 4,800 images at 160 px take 250 MB instead of 490 MB; the
    step of 5e-4 near 1.0 is far below the phantoms' film grain) and handed out as float32.

    ``workers`` > 0 renders in that many DataLoader worker processes, in chunks, in order: the items are the
    same as rendered in this process (each phantom item depends only on its seed and index). The bone phantom's
    4,800 demo images at 160 px took 23.6 s in one process on this project's 2-core CPU and 11.9 s in two
    (benchmarks/materialize_speed.py). The default uses
    every CPU core (at most 8) for sets of ``PARALLEL_FROM`` items or more, one process for smaller sets and in
    a daemonic process (which may not start workers)."""

    PARALLEL_FROM = 512
    CHUNK = 32

    @classmethod
    def default_workers(cls, n: int) -> int:
        """Worker processes for ``n`` items: from PARALLEL_FROM items, every CPU core (at most 8) shared among the
        processes that torchrun started on this machine (each renders its own copy), else none."""
        import multiprocessing
        import os

        if n < cls.PARALLEL_FROM or multiprocessing.current_process().daemon:
            return 0
        cores = min((os.cpu_count() or 1) // max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1), 8)
        return cores if cores > 1 else 0

    def __init__(self, dataset: Dataset, workers: int | None = None):
        from torch.utils.data import DataLoader
        from tqdm import tqdm

        workers = self.default_workers(len(dataset)) if workers is None else workers
        self.base = dataset
        self.items = []
        loader = DataLoader(dataset, batch_size=self.CHUNK, shuffle=False, num_workers=workers,
                            collate_fn=_as_stored)
        with tqdm(total=len(dataset), desc="rendering", leave=False) as bar:
            for chunk in loader:
                for rest, arrays in chunk:
                    self.items.append({**rest, **{k: torch.from_numpy(a) for k, a in arrays.items()}})
                bar.update(len(chunk))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        item = self.items[i]
        return {**item, "image": item["image"].float()}


class Augmented(Dataset):
    """MURA augmentation: random lateral flip and rotation up to ``degrees`` (image and mask alike); ``crop``: then a
    random crop x crop window at the image's own scale (no resizing), as in Krizhevsky et al. 2012."""

    def __init__(self, dataset: Dataset, degrees: float = 30.0, crop: int | None = None):
        self.dataset, self.degrees, self.crop = dataset, degrees, crop

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        from torchvision.transforms.v2 import functional as TF
        from torchvision.transforms.v2 import InterpolationMode

        item = dict(self.dataset[i])
        image, mask = item["image"], item["mask"][None]  # (1, H, W) each
        if torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        angle = float(torch.empty(()).uniform_(-self.degrees, self.degrees))
        image = TF.rotate(image, angle, interpolation=InterpolationMode.BILINEAR)
        mask = TF.rotate(mask, angle, interpolation=InterpolationMode.NEAREST)
        if self.crop:
            h, w = image.shape[-2:]
            if self.crop > min(h, w):
                raise ValueError(f"crop {self.crop} is larger than the {h}x{w} image")
            y0, x0 = (int(torch.randint(0, n - self.crop + 1, ())) for n in (h, w))
            image = image[..., y0:y0 + self.crop, x0:x0 + self.crop]
            mask = mask[..., y0:y0 + self.crop, x0:x0 + self.crop]
        item["image"], item["mask"] = image, mask[0]
        return item


def labels_and_groups(dataset: Dataset) -> tuple[np.ndarray, list[str], list[str]]:
    """(labels, body parts, study ids) of every item, without decoding images where the dataset allows it."""
    base = getattr(dataset, "base", getattr(dataset, "dataset", dataset))
    if hasattr(base, "item_spec"):  # the bone phantom: every image is its own study
        specs = [base.item_spec(i) for i in range(len(base))]
        return (np.array([int(s["lesion_type"] != "none") for s in specs]), [s["body_part"] for s in specs],
                [f"phantom/{i}" for i in range(len(base))])
    if hasattr(base, "records"):  # MURA: (path, label, body part, study) per image
        recs = base.records
        return np.array([r["label"] for r in recs]), [r["body_part"] for r in recs], [r["study"] for r in recs]
    items = [dataset[i] for i in range(len(dataset))]
    return (np.array([int(it["label"]) for it in items]), [str(it["meta"].get("body_part", "all")) for it in items],
            [str(it["meta"].get("study", i)) for i, it in enumerate(items)])


def study_type_weights(labels: Sequence[int], parts: Sequence[str]) -> dict[str, tuple[float, float]]:
    """MURA's per-study-type BCE weights: {part: (w0, w1)} with w1 = N/(A+N), w0 = A/(A+N)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # part -> [normal, abnormal]
    for y, p in zip(labels, parts):
        counts[p][int(y)] += 1
    weights = {}
    for part, (n, a) in counts.items():
        if n == 0 or a == 0:  # a one-class study type: plain BCE rather than a zero weight
            weights[part] = (0.5, 0.5)
        else:
            weights[part] = (a / (a + n), n / (a + n))
    return weights


def weighted_bce_step(weights: dict[str, tuple[float, float]], model_input, logit_penalty: float = 0.0):
    """Engine step for the 1-logit head with MURA's per-study-type weights (batch meta carries body_part).

    ``logit_penalty`` lambda adds lambda / 2 * mean(logit^2): spectral decoupling (Pezeshki et al., "Gradient
    Starvation", NeurIPS 2021, https://arxiv.org/abs/2011.09468), which keeps a feature learnt early (the metal)
    from starving the gradient of those learnt later (the fractures).
    """

    def step(model, batch, device):
        x = model_input(batch["image"].to(device))  # (B, 3, H, W)
        y = batch["label"].to(device).float()  # (B,)
        logits = model(x)[:, 0]  # (B,)
        w = torch.tensor([weights.get(p, (0.5, 0.5)) for p in batch["meta"]["body_part"]], device=device)
        per_item = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none")
        loss = (per_item * torch.where(y > 0.5, w[:, 1], w[:, 0])).mean()
        if logit_penalty:
            loss = loss + 0.5 * logit_penalty * logits.float().pow(2).mean()
        return loss, logits, batch["label"]

    return step


def binary_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Kappa, AUROC, accuracy, sensitivity, specificity at threshold 0.5."""
    pred = (probs > 0.5).astype(int)
    sens, spec = sensitivity_specificity(labels, pred)
    return {"kappa": cohen_kappa(labels, pred), "auroc": auroc(labels, probs), "accuracy": accuracy(labels, pred),
            "sensitivity": sens, "specificity": spec, "n": int(len(labels))}


def logit_metrics(outputs: torch.Tensor, targets: torch.Tensor) -> dict:
    """Engine metric_fn: image-level metrics from the logits gathered over the validation set."""
    return binary_metrics(torch.sigmoid(outputs.float()).numpy(), targets.numpy())


def study_level(probs: np.ndarray, labels: np.ndarray, studies: Sequence[str]):
    """Mean of each study's image probabilities -> (study probs, study labels), as MURA evaluates."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(studies):
        groups[s].append(i)
    keys = list(groups)
    return (np.array([probs[groups[k]].mean() for k in keys]), np.array([labels[groups[k][0]] for k in keys]),
            keys)


def full_evaluation(probs: np.ndarray, labels: np.ndarray, parts: Sequence[str], studies: Sequence[str]) -> dict:
    """Image- and study-level metrics, overall and per body part."""
    result = {"image": binary_metrics(probs, labels)}
    sp, sl, keys = study_level(probs, labels, studies)
    result["study"] = binary_metrics(sp, sl)
    part_of_study = {s: p for s, p in zip(studies, parts)}
    result["per_body_part"] = {}
    for part in sorted(set(parts)):
        idx = [k for k, s in enumerate(keys) if part_of_study[s] == part]
        m = binary_metrics(sp[idx], sl[idx])
        result["per_body_part"][part] = {k: (v if not (isinstance(v, float) and math.isnan(v)) else None)
                                         for k, v in m.items()}
    return result
