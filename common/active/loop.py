"""The pool-based active-learning loop: an initial random labelled set, then rounds of train -> score the
unlabelled pool in batches -> query k -> reveal their labels, to a label budget (Settles 2009).

Each step is saved (:mod:`common.active.state`), so a killed run resumes at its round with the same picks (every
round's training, MC dropout and random choices are seeded from (seed, round)); an oracle that cannot answer yet
(:class:`FolderOracle`, a human) stops the loop cleanly, and the next run continues from its answers.

    result = run_active(ActiveConfig(strategy="badge", initial=20, query=20, budget=200), pool, learner,
                        TruthOracle(pool_labels), out, device)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from common.active import annotator
from common.active.pool import score_pool
from common.active.state import RoundState
from common.active.strategies import STRATEGIES, select
from common.engine import checkpoint
from common.errors import InputError
from common.runtime import log, seed_everything


@dataclass(frozen=True)
class ActiveConfig:
    """One active-learning run: the strategy, the initial random set, k per round and the label budget."""

    strategy: str = "random"
    initial: int = 20
    query: int = 20
    budget: int = 200
    warm_start: bool = False   # start each round from the previous round's weights (else from scratch)
    passes: int = 20           # MC-dropout passes T (BALD, BatchBALD, PowerBALD)
    score_batch: int = 256     # pool images scored at once
    seed: int = 0


def check_config(cfg: ActiveConfig, pool_size: int) -> None:
    """Bad settings as one InputError before anything is written."""
    if cfg.strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {cfg.strategy!r}", hint=f"choose from {', '.join(STRATEGIES)}")
    if cfg.initial < 1 or cfg.query < 1:
        raise InputError(f"the initial set ({cfg.initial}) and the query size k ({cfg.query}) must be >= 1")
    if cfg.budget < cfg.initial:
        raise InputError(f"the label budget {cfg.budget} is below the initial labelled set of {cfg.initial}",
                         hint="raise --budget or lower --initial")
    if cfg.initial > pool_size:
        raise InputError(f"the initial set of {cfg.initial} is larger than the pool of {pool_size} images",
                         hint="lower --initial")
    if cfg.query > pool_size - cfg.initial:
        raise InputError(f"k = {cfg.query} per round is larger than the {pool_size - cfg.initial} unlabelled "
                         f"images left after the initial set", hint="lower --query or use a larger pool")


class Learner(Protocol):
    """What the loop trains and scores: a model trained on (indices, labels) of the pool, and its test metrics."""

    def fit(self, indices: np.ndarray, labels: np.ndarray, out: Path, seed: int, init: dict | None = None,
            resume: bool = False) -> torch.nn.Module: ...

    def evaluate(self, model: torch.nn.Module) -> dict: ...


class TruthOracle:
    """Simulated annotator: reveals the labels the pool already has."""

    def __init__(self, labels: Sequence[int]):
        self.labels = np.asarray(labels, dtype=np.int64)

    def __call__(self, out: Path, round_: int, indices: np.ndarray) -> np.ndarray | None:
        return self.labels[indices]


class FolderOracle:
    """A human annotator: writes the query to ``<out>/round_K/query/`` and returns None until its CSV is filled.
    ``image(i)`` gives pool item i as (H, W) or (H, W, 3) floats in [0, 1]; ``name(i)`` its own file name."""

    def __init__(self, classes: Sequence[str], image: Callable[[int], np.ndarray],
                 name: Callable[[int], str] | None = None):
        self.classes, self.image, self.name = list(classes), image, name

    def __call__(self, out: Path, round_: int, indices: np.ndarray) -> np.ndarray | None:
        csv_path = annotator.query_folder(out, round_) / annotator.CSV_NAME
        if csv_path.exists():
            return annotator.read_labels(out, round_, indices, self.classes)
        annotator.write_query(out, round_, indices, [self.image(int(i)) for i in indices],
                              None if self.name is None else [self.name(int(i)) for i in indices])
        return None

    def message(self, out: Path, round_: int, n: int) -> str:
        where = annotator.query_folder(out, round_) / annotator.CSV_NAME
        return (f"round {round_}: {n} images to label in {where.parent}/ -- fill the label column of {where} with "
                f"one of {', '.join(self.classes)} (or 0..{len(self.classes) - 1}), then rerun the same command")


def round_seed(seed: int, round_: int) -> int:
    return seed * 10_007 + round_


def run_active(cfg: ActiveConfig, pool: Dataset, learner: Learner, oracle: Callable, out: Path, device="cpu",
               resume: bool = True, progress: bool = True, stop_after: int | None = None,
               settings: dict | None = None) -> dict:
    """Run (or continue) the loop in ``out``; returns {"rounds", "labelled", "labels", "status"} with status
    "done", or "waiting" when the oracle has not answered round ``pending_round`` yet. ``resume`` False starts
    afresh even if ``out`` holds a state. ``stop_after``: return after that many rounds (tests: a kill).
    ``settings``: what else the result depends on (the learner's, the pool's), JSON data; a state written with
    other settings is refused."""
    out = Path(out)
    check_config(cfg, len(pool))
    identity = {**asdict(cfg), "pool_size": len(pool), **({"settings": settings} if settings else {})}
    state = RoundState.load(out, identity) if resume else None
    resumed = state is not None  # a round's training may continue from its last.pt only in a resumed run
    if state is None:
        rng = np.random.default_rng(round_seed(cfg.seed, 0))
        first = np.sort(rng.choice(len(pool), size=cfg.initial, replace=False))
        state = RoundState(identity, pending={"round": 0, "indices": first.tolist()})
        state.save(out)
    elif state.rounds:
        log(f"resuming {out} after round {state.rounds[-1]['round']} ({len(state.labelled)} labels)")
    strategy = STRATEGIES[cfg.strategy]
    done_now = 0
    while not state.done:
        if state.pending is not None:
            r, picks = state.pending["round"], np.asarray(state.pending["indices"], dtype=np.int64)
            labels = oracle(out, r, picks)
            if labels is None:
                return _result(state, "waiting", pending_round=r, n_pending=len(picks))
            state.labelled += picks.tolist()
            state.labels += [int(v) for v in labels]
            state.pending = None
            state.save(out)
        if stop_after is not None and done_now >= stop_after:
            return _result(state, "stopped")
        r = len(state.rounds)
        labelled = np.asarray(state.labelled, dtype=np.int64)
        init = None
        if cfg.warm_start and r > 0:
            init = checkpoint.load(out / f"round_{r - 1}" / "model.pt")["model"]
        seed_everything(round_seed(cfg.seed, r))
        model = learner.fit(labelled, np.asarray(state.labels), out / f"round_{r}", round_seed(cfg.seed, r), init,
                            resume=resumed)
        metrics = learner.evaluate(model)
        if cfg.warm_start:
            checkpoint.save(out / f"round_{r}" / "model.pt", model=model.state_dict(), round=r)
        room = min(cfg.query, cfg.budget - len(labelled), len(pool) - len(labelled))
        record = {"round": r, "n_labels": len(labelled), "metrics": metrics, "picked": []}
        if room > 0:
            unl = np.setdiff1d(np.arange(len(pool)), labelled)
            view = score_pool(model, pool, np.concatenate([unl, labelled]), len(unl), strategy.needs,
                              passes=cfg.passes, batch_size=cfg.score_batch, device=device,
                              seed=round_seed(cfg.seed, r), progress=progress)
            picks = select(cfg.strategy, view, room, np.random.default_rng(round_seed(cfg.seed, r) + 1))
            record["picked"] = [int(i) for i in picks]
            state.pending = {"round": r + 1, "indices": record["picked"]}
        else:
            state.done = True
        state.rounds.append(record)
        state.save(out)
        done_now += 1
        shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))
        log(f"{cfg.strategy} seed {cfg.seed} round {r}: {len(labelled)} labels{', ' + shown if shown else ''}"
            f"{f', queried {room}' if room > 0 else ''}")
    return _result(state, "done")


def _result(state: RoundState, status: str, **extra) -> dict:
    return {"status": status, "rounds": state.rounds, "labelled": state.labelled, "labels": state.labels, **extra}


class LabelledSubset(Dataset):
    """Items ``indices`` of ``pool`` with the revealed ``labels``, repeated to at least ``min_length`` items an
    epoch (so a tiny labelled set still gets enough gradient steps): {"image", "label"}."""

    def __init__(self, pool: Dataset, indices: Sequence[int], labels: Sequence[int], min_length: int = 0):
        assert len(indices) == len(labels) and len(indices) > 0
        self.pool, self.indices = pool, [int(i) for i in indices]
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.length = max(len(self.indices), int(min_length))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        j = i % len(self.indices)
        return {"image": self.pool[self.indices[j]]["image"], "label": self.labels[j]}

