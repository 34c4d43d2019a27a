"""Acquisition scores on predicted probabilities: higher always means "ask for this label first".

Settles, "Active Learning Literature Survey", 2009 (least confidence, margin, entropy); Houlsby et al. 2011,
https://arxiv.org/abs/1112.5745, and Gal et al., "Deep Bayesian Active Learning with Image Data", ICML 2017,
https://arxiv.org/abs/1703.02910 (BALD: the mutual information between the label and the weights, from MC dropout).
Each takes a tensor or array of probabilities and returns a float64 numpy array with one score per item.
"""

from __future__ import annotations

import numpy as np
import torch

EPS = 1e-12  # p log p at p = 0 is 0; clamping keeps log finite without changing any other term


def _probs(probs, ndim: int) -> torch.Tensor:
    p = torch.as_tensor(probs).double()
    if p.ndim != ndim:
        raise ValueError(f"expected probabilities of {ndim} dims, got shape {tuple(p.shape)}")
    return p


def least_confidence(probs) -> np.ndarray:
    """1 - max_c p(c | x), probs (N, C) -> (N,)."""
    return (1.0 - _probs(probs, 2).max(1).values).numpy()


def margin(probs) -> np.ndarray:
    """1 - (p_first - p_second), the gap between the two most probable classes turned around; (N, C) -> (N,)."""
    top = _probs(probs, 2).topk(2, dim=1).values
    return (1.0 - (top[:, 0] - top[:, 1])).numpy()


def entropy(probs) -> np.ndarray:
    """Predictive entropy -sum_c p log p in nats, (N, C) -> (N,)."""
    p = _probs(probs, 2)
    return -(p * p.clamp_min(EPS).log()).sum(1).numpy()


def bald(mc_probs) -> np.ndarray:
    """BALD: H[mean_t p_t] - mean_t H[p_t] in nats, MC-dropout probabilities (N, C, T) -> (N,) (>= 0)."""
    p = _probs(mc_probs, 3)
    mean = p.mean(2)
    h_mean = -(mean * mean.clamp_min(EPS).log()).sum(1)
    mean_h = -(p * p.clamp_min(EPS).log()).sum(1).mean(1)
    return (h_mean - mean_h).clamp_min(0.0).numpy()


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, highest first; ties in position order (a stable sort)."""
    scores = np.asarray(scores, dtype=np.float64)
    assert scores.ndim == 1 and 0 <= k <= len(scores), (scores.shape, k)
    return np.argsort(-scores, kind="stable")[:k]
