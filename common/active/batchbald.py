"""Batch-aware Bayesian acquisition: BatchBALD (Kirsch et al., NeurIPS 2019, https://arxiv.org/abs/1906.08158)
and PowerBALD (Kirsch et al. 2023, "Stochastic Batch Acquisition", https://arxiv.org/abs/2106.12059).

Top-k BALD picks near-duplicates: k copies of one informative image each score high. BatchBALD scores a batch
by the mutual information I(y_1, ..., y_k; w) = H(y_1..k) - sum_i H(y_i | w) and builds it greedily. The joint
entropy needs p(y_1..n) = mean_t prod_i p_t(y_i): exactly over every label configuration while there are at most
``max_configs`` of them, else estimated from ``samples`` configurations drawn from the MC samples (the paper's
estimator, as BatchBALD's reference code and baal do)."""

from __future__ import annotations

import numpy as np
import torch

from common.active.scores import EPS, bald

CHUNK = 512  # candidates per step: memory (CHUNK, configurations, C)


def _entropy_with(joint: torch.Tensor, weights: torch.Tensor | None, p: torch.Tensor) -> torch.Tensor:
    """H(y_batch, y_n) for every candidate n: joint (M, T) is p_t of each of M batch configurations, p (N, C, T).

    Exact (``weights`` None): -sum_{m,c} q log q with q = mean_t joint[m, t] p[n, c, t]. Sampled: configurations
    drawn from p(y_batch), each term divided by its p(config) (``weights`` (M,)), averaged over the M draws."""
    t = joint.shape[1]
    q = torch.einsum("mt,nct->nmc", joint, p) / t                              # (N, M, C)
    terms = -(q * q.clamp_min(EPS).log())
    if weights is None:
        return terms.sum((1, 2))
    return (terms / weights[None, :, None]).sum(2).mean(1)


def batch_bald(mc_probs: np.ndarray, k: int, rng: np.random.Generator, max_configs: int = 4096,
               samples: int = 2000) -> np.ndarray:
    """Greedy BatchBALD: k positions of ``mc_probs`` (N, C, T) whose joint mutual information with the weights is
    (greedily) largest. The first pick is BALD's best; duplicates of a pick add no information, so are skipped."""
    p = torch.as_tensor(mc_probs, dtype=torch.float64)
    n, c, t = p.shape
    assert 0 <= k <= n, (tuple(p.shape), k)
    cond = -(p * p.clamp_min(EPS).log()).sum(1).mean(1)                          # (N,) E_w H(y_n | w)
    picks: list[int] = []
    joint, weights = torch.ones(1, t, dtype=torch.float64), None                  # p_t(empty batch) = 1
    cond_sum = 0.0
    for _ in range(k):
        h = torch.cat([_entropy_with(joint, weights, p[i:i + CHUNK]) for i in range(0, n, CHUNK)])
        gain = h - cond_sum - cond                                               # (N,) I(batch + n; w)
        if picks:
            gain[picks] = -float("inf")
        j = int(torch.argmax(gain))
        picks.append(j)
        cond_sum += float(cond[j])
        # joint over configurations of the new batch: (M, T) x (C, T) -> (M * C, T)
        expanded = (joint[:, None, :] * p[j][None, :, :]).reshape(-1, t)
        if weights is None and expanded.shape[0] <= max_configs:
            joint = expanded
        else:  # sample configurations y ~ p(y_batch): a pass t, then each label from p_t
            joint, weights = _sample_configs(p[picks], samples, rng)
    return np.array(picks, dtype=np.int64)


def _sample_configs(p: torch.Tensor, samples: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``samples`` label configurations of the batch p (B, C, T) -> (their p_t (M, T), their p(config) (M,))."""
    b, c, t = p.shape
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    passes = torch.randint(t, (samples,), generator=g)                            # (M,)
    probs = p[:, :, passes].permute(2, 0, 1).reshape(-1, c)                       # (M * B, C)
    labels = torch.multinomial(probs, 1, generator=g).view(samples, b)            # (M, B)
    joint = p[torch.arange(b)[None, :], labels].prod(1)                           # (M, B, T) -> (M, T)
    return joint, joint.mean(1)


def batch_mutual_information(mc_probs: np.ndarray) -> float:
    """I(y_1..B; w) of a small batch (B, C, T) by enumerating every label configuration (C**B of them)."""
    p = torch.as_tensor(mc_probs, dtype=torch.float64)
    joint = torch.ones(1, p.shape[2], dtype=torch.float64)
    for i in range(len(p)):
        joint = (joint[:, None, :] * p[i][None]).reshape(-1, p.shape[2])
    q = joint.mean(1)
    h = float(-(q * q.clamp_min(EPS).log()).sum())
    return h - float((-(p * p.clamp_min(EPS).log()).sum(1).mean(1)).sum())


def power_bald(mc_probs: np.ndarray, k: int, rng: np.random.Generator, beta: float = 1.0) -> np.ndarray:
    """PowerBALD: k positions drawn without replacement with probability proportional to BALD**beta (Gumbel top-k
    on beta * log BALD): informative points, but not the same cluster k times."""
    scores = bald(mc_probs)
    assert 0 <= k <= len(scores)
    keys = beta * np.log(np.maximum(scores, 1e-30)) + rng.gumbel(size=len(scores))
    return np.argsort(-keys, kind="stable")[:k].astype(np.int64)
