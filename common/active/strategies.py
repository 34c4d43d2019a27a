"""The query strategies, one small function each, and their registry.

A strategy is ``select(view, k, rng) -> k positions among view's candidates`` (a :class:`PoolView`, see
common/active/pool.py), with ``needs``: which pool summaries it reads, so the pool is scored once for what it needs.

    strategy = STRATEGIES["badge"]
    view = score_pool(model, pool, index, n_candidates, strategy.needs)
    picked = view.index[strategy.select(view, k, np.random.default_rng(seed))]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from common.active import scores
from common.active.batchbald import batch_bald, power_bald
from common.active.diversity import ball_radius, k_center_greedy, kmeans_pp, prob_cover, typiclust
from common.active.pool import PoolView


@dataclass(frozen=True)
class Strategy:
    select: Callable[[PoolView, int, np.random.Generator], np.ndarray]
    needs: frozenset
    about: str
    bayesian: bool = False  # reads MC-dropout samples (needs dropout in the model)


def random_pick(view: PoolView, k: int, rng: np.random.Generator) -> np.ndarray:
    """k candidates uniformly at random: the baseline every strategy must beat."""
    return rng.choice(view.n_candidates, size=k, replace=False).astype(np.int64)


def uncertainty(score: Callable) -> Callable:
    def select(view: PoolView, k: int, rng: np.random.Generator) -> np.ndarray:
        return scores.top_k(score(view.candidates("probs")), k)

    select.__name__ = f"top_{score.__name__}"
    return select


def bald_pick(view: PoolView, k: int, rng: np.random.Generator) -> np.ndarray:
    """The k highest BALD scores (Gal et al. 2017)."""
    return scores.top_k(scores.bald(view.candidates("mc")), k)


def batchbald_pick(view: PoolView, k: int, rng: np.random.Generator) -> np.ndarray:
    return batch_bald(view.candidates("mc"), k, rng)


def powerbald_pick(view: PoolView, k: int, rng: np.random.Generator) -> np.ndarray:
    return power_bald(view.candidates("mc"), k, rng)


def coreset_pick(view: PoolView, k: int, rng: np.random.Generator) -> np.ndarray:
    return k_center_greedy(view.candidates("embed"), view.labelled("embed"), k)


def badge_pick(view: PoolView, k: int, rng: np.random.Generator) -> np.ndarray:
    """BADGE (Ash et al. 2020): k-means++ seeding on the gradient embeddings, uncertain and diverse at once."""
    return kmeans_pp(view.candidates("grad"), k, rng)


def typiclust_pick(view: PoolView, k: int, rng: np.random.Generator) -> np.ndarray:
    return typiclust(view.candidates("embed"), view.labelled("embed"), k, seed=int(rng.integers(2**31)))


def probcover_pick(view: PoolView, k: int, rng: np.random.Generator) -> np.ndarray:
    x = np.concatenate([view.candidates("embed"), view.labelled("embed")])
    n_classes = view.probs.shape[1] if view.probs is not None else 2
    delta = ball_radius(x, n_classes, seed=int(rng.integers(2**31)))
    return prob_cover(view.candidates("embed"), view.labelled("embed"), k, delta)


P, MC, E, G = "probs", "mc", "embed", "grad"
STRATEGIES: dict[str, Strategy] = {
    "random": Strategy(random_pick, frozenset(), "uniformly at random (the baseline)"),
    "least_confidence": Strategy(uncertainty(scores.least_confidence), frozenset({P}),
                                 "lowest top-class probability (Settles 2009)"),
    "margin": Strategy(uncertainty(scores.margin), frozenset({P}), "smallest gap between the two top classes"),
    "entropy": Strategy(uncertainty(scores.entropy), frozenset({P}), "highest predictive entropy"),
    "bald": Strategy(bald_pick, frozenset({MC}), "top-k BALD from MC dropout (Gal et al. 2017)", bayesian=True),
    "batchbald": Strategy(batchbald_pick, frozenset({MC}), "greedy joint mutual information of the batch "
                          "(Kirsch et al. 2019)", bayesian=True),
    "powerbald": Strategy(powerbald_pick, frozenset({MC}), "BALD-proportional sampling (Kirsch et al. 2023)",
                          bayesian=True),
    "coreset": Strategy(coreset_pick, frozenset({E}), "k-center greedy on embeddings (Sener & Savarese 2018)"),
    "badge": Strategy(badge_pick, frozenset({G}), "k-means++ on gradient embeddings (Ash et al. 2020)"),
    "typiclust": Strategy(typiclust_pick, frozenset({E}), "most typical point of the largest uncovered clusters "
                          "(Hacohen et al. 2022)"),
    "probcover": Strategy(probcover_pick, frozenset({E, P}), "greedy coverage by balls of purity-chosen radius "
                          "(Yehuda et al. 2022)"),
}


def select(name: str, view: PoolView, k: int, rng: np.random.Generator) -> np.ndarray:
    """Dataset indices of the ``k`` candidates strategy ``name`` picks (distinct, in pick order)."""
    if not 0 < k <= view.n_candidates:
        raise ValueError(f"cannot pick {k} of {view.n_candidates} candidates")
    pos = np.asarray(STRATEGIES[name].select(view, k, rng), dtype=np.int64)
    assert len(pos) == k and len(set(pos.tolist())) == k and pos.min() >= 0 and pos.max() < view.n_candidates, pos
    return view.index[pos]
