"""The model the loop retrains each round, through the one training loop (common.engine.fit), and its test score.

    learner = EngineLearner(lambda: SmallCNN(1, 2, width=8, stages=3, dropout=0.3), pool, TrainConfig(), test_set)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from common.active.loop import LabelledSubset
from common.active.pool import stack_images
from common.engine import FitConfig, fit, predict, supervised_step
from common.metrics.classification import auroc


@dataclass(frozen=True)
class TrainConfig:
    """One round's training: ``epochs`` over the labelled set repeated to at least ``min_samples`` images."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    min_samples: int = 512
    workers: int = 0


def collate_labelled(items) -> dict:
    return {"image": stack_images(items), "label": torch.stack([it["label"] for it in items])}


def class_auroc(probs: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of class 1 for two classes, else the mean one-vs-rest AUROC over the classes present."""
    if probs.shape[1] == 2:
        return float(auroc(labels, probs[:, 1]))
    present = [c for c in range(probs.shape[1]) if 0 < (labels == c).sum() < len(labels)]
    return float(np.mean([auroc(labels == c, probs[:, c]) for c in present])) if present else float("nan")


class EngineLearner:
    """Trains ``make_model()`` on labelled pool items with cross-entropy (Adam) and scores it on ``test``
    ({"image", "label"} items): AUROC and accuracy. No test set: evaluate returns {}."""

    def __init__(self, make_model: Callable[[], torch.nn.Module], pool: Dataset, cfg: TrainConfig,
                 test: Dataset | None = None, test_labels: np.ndarray | None = None, device="cpu"):
        self.make_model, self.pool, self.cfg, self.device = make_model, pool, cfg, torch.device(device)
        self.test, self.test_labels = test, test_labels

    def fit(self, indices: np.ndarray, labels: np.ndarray, out: Path, seed: int, init: dict | None = None,
            resume: bool = False) -> torch.nn.Module:
        model = self.make_model()
        if init is not None:
            model.load_state_dict(init)
        train = LabelledSubset(self.pool, indices, labels, self.cfg.min_samples)
        opt = torch.optim.AdamW(model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        fit_cfg = FitConfig(epochs=self.cfg.epochs, batch_size=self.cfg.batch_size, out=Path(out), seed=seed,
                            resume=resume, workers=self.cfg.workers, collate_fn=collate_labelled,
                            args={**{k: str(v) for k, v in asdict(self.cfg).items()}, "n_labels": str(len(indices)),
                                  "warm": str(init is not None)})
        fit(model, train, None, supervised_step(F.cross_entropy), opt, fit_cfg, self.device)
        return model.eval()

    def probs(self, model: torch.nn.Module, dataset: Dataset) -> np.ndarray:
        """Softmax (N, C) over ``dataset`` in order (dropout off)."""
        return predict(model, dataset, lambda m, x, d: torch.softmax(m(x.to(d)).float(), 1), self.device,
                       batch_size=256, collate_fn=stack_images).numpy()

    def evaluate(self, model: torch.nn.Module) -> dict:
        if self.test is None:
            return {}
        p = self.probs(model, self.test)
        y = np.asarray(self.test_labels)
        return {"auroc": class_auroc(p, y), "accuracy": float((p.argmax(1) == y).mean())}
