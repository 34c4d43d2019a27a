"""Score a pool in batches: one pass of the trunk per batch gives everything the strategies need, and only those
per-item summaries (probabilities, MC-dropout samples, embeddings) are kept, never the images.

The pool is any map-style dataset whose items hold an ``"image"`` (C, H, W) tensor (a phantom, files read from a
folder, a memory-mapped array), so it need not fit in memory (modAL issue #145).

    view = score_pool(model, pool, unlabelled + labelled, n_candidates=len(unlabelled), needs={"probs", "embed"})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from common.active.mc import has_dropout_head, head_passes, loop_passes

NEEDS = frozenset({"probs", "mc", "embed", "grad"})


@dataclass
class PoolView:
    """What the model says about items ``index`` (dataset indices): the first ``n_candidates`` are the unlabelled
    candidates, the rest the labelled set. Arrays have one row per item, None where no strategy asked for them:
    probs (N, C) softmax with dropout off, mc (N, C, T) MC-dropout softmax, embed (N, D) the head's input,
    grad (N, C * D) BADGE's last-layer gradient embedding at the predicted label."""

    index: np.ndarray
    n_candidates: int
    probs: np.ndarray | None = None
    mc: np.ndarray | None = None
    embed: np.ndarray | None = None
    grad: np.ndarray | None = None

    def candidates(self, name: str) -> np.ndarray:
        return getattr(self, name)[: self.n_candidates]

    def labelled(self, name: str) -> np.ndarray:
        return getattr(self, name)[self.n_candidates:]


def stack_images(items: Sequence[dict]) -> torch.Tensor:
    """Collate only the images (metadata of a pool may not batch): items -> (B, C, H, W)."""
    return torch.stack([it["image"] for it in items])


def gradient_embedding(probs: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """BADGE (Ash et al. 2020, https://arxiv.org/abs/1906.03671): d CE(softmax(W h), argmax p) / d W, flattened:
    (p - onehot(argmax p)) outer h, probs (B, C) and embed (B, D) -> (B, C * D)."""
    assert probs.ndim == 2 and embed.ndim == 2 and len(probs) == len(embed), (probs.shape, embed.shape)
    residual = probs - torch.nn.functional.one_hot(probs.argmax(1), probs.shape[1]).to(probs.dtype)
    return (residual[:, :, None] * embed[:, None, :]).flatten(1)


@torch.no_grad()
def score_batch(model, x: torch.Tensor, needs: Iterable[str], passes: int) -> dict[str, torch.Tensor]:
    """One batch (B, C, H, W) -> the summaries in ``needs`` (float32, on the CPU)."""
    needs = set(needs)
    out = {}
    head = has_dropout_head(model)
    emb = model.embed(x).float() if (head or needs & {"embed", "grad"}) else None     # (B, D)
    if needs & {"probs", "grad"}:
        logits = model.classifier(emb) if head else model(x)                       # eval: dropout is identity
        out["probs"] = torch.softmax(logits.float(), 1)                            # (B, C)
    if "mc" in needs:
        out["mc"] = head_passes(model, emb, passes) if head else loop_passes(model, x, passes)  # (B, C, T)
    if "embed" in needs:
        out["embed"] = emb
    if "grad" in needs:
        out["grad"] = gradient_embedding(out["probs"], emb)
    return {k: v.cpu() for k, v in out.items() if k in needs}


def score_pool(model, dataset: Dataset, index: Sequence[int], n_candidates: int, needs: Iterable[str], *,
               passes: int = 20, batch_size: int = 256, device="cpu", seed: int = 0, workers: int = 0,
               progress: bool = True) -> PoolView:
    """Run ``model`` (eval mode; dropout only for the MC passes) over ``dataset[index]`` in batches of
    ``batch_size`` and keep the summaries in ``needs`` (a subset of :data:`NEEDS`). ``seed`` fixes the MC-dropout
    masks without touching the caller's random state."""
    from tqdm import tqdm

    needs = set(needs)
    unknown = needs - NEEDS
    if unknown:
        raise ValueError(f"unknown pool summaries {sorted(unknown)}; choose from {sorted(NEEDS)}")
    index = np.asarray(index, dtype=np.int64)
    view = PoolView(index=index, n_candidates=int(n_candidates))
    if not needs or not len(index):
        return view
    device = torch.device(device)
    loader = DataLoader(Subset(dataset, index.tolist()), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=stack_images)
    parts: dict[str, list] = {k: [] for k in needs}
    was = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for x in tqdm(loader, desc="score pool", leave=False, disable=not progress):
                for k, v in score_batch(model, x.to(device), needs, passes).items():
                    parts[k].append(v.numpy())
    finally:
        model.train(was)
    for k, v in parts.items():
        setattr(view, k, np.concatenate(v))
    assert all(len(getattr(view, k)) == len(index) for k in needs)
    return view
