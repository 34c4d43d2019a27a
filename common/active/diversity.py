"""Diversity in an embedding space: k-center greedy (core-set), k-means++ seeding (BADGE), typical points of
uncovered clusters (TypiClust) and greedy ball coverage (ProbCover). Distances are computed in chunks, so memory
grows with the pool, not with its square."""

from __future__ import annotations

import numpy as np
import torch

CHUNK = 4096


def _sq_dist(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """min over ``centres`` of the squared Euclidean distance, for each row of ``x`` (N, D) -> (N,)."""
    best = torch.full((len(x),), float("inf"), dtype=torch.float64)
    for i in range(0, len(centres), CHUNK):
        best = torch.minimum(best, torch.cdist(x, centres[i:i + CHUNK]).pow(2).min(1).values)
    return best


def k_center_greedy(candidates: np.ndarray, centres: np.ndarray, k: int) -> np.ndarray:
    """Sener & Savarese 2018 (https://arxiv.org/abs/1708.00489): repeatedly take the candidate farthest from every
    centre (the labelled set, then the picks). candidates (N, D), centres (M, D) -> k positions in ``candidates``.
    Without centres the first pick is the candidate farthest from the candidates' mean. Ties: the lowest position."""
    x = torch.as_tensor(candidates, dtype=torch.float64)
    assert x.ndim == 2 and 0 <= k <= len(x), (tuple(x.shape), k)
    c = torch.as_tensor(centres, dtype=torch.float64).reshape(-1, x.shape[1])
    dist = _sq_dist(x, c) if len(c) else (x - x.mean(0)).pow(2).sum(1)
    picks = []
    for _ in range(k):
        j = int(torch.argmax(dist))  # first maximum
        picks.append(j)
        dist = torch.minimum(dist, (x - x[j]).pow(2).sum(1))
        dist[j] = -1.0  # never again, even when every remaining distance is 0
    return np.array(picks, dtype=np.int64)


def kmeans_pp(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) as BADGE uses it: the first centre is the point of largest
    norm, each next one drawn with probability proportional to its squared distance to the nearest centre.
    points (N, D) -> k distinct positions; deterministic given ``rng``'s state."""
    x = torch.as_tensor(points, dtype=torch.float64)
    assert x.ndim == 2 and 0 <= k <= len(x), (tuple(x.shape), k)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    picks = [int(torch.argmax(x.pow(2).sum(1)))]
    dist = (x - x[picks[0]]).pow(2).sum(1)
    dist[picks[0]] = 0.0
    while len(picks) < k:
        w = dist.numpy().clip(min=0.0)
        if w.sum() <= 0:  # every point lies on a centre: fill with the remaining points, in random order
            rest = np.setdiff1d(np.arange(len(x)), picks)
            picks += rng.permutation(rest)[: k - len(picks)].tolist()
            break
        j = int(rng.choice(len(x), p=w / w.sum()))
        picks.append(j)
        dist = torch.minimum(dist, (x - x[j]).pow(2).sum(1))
        dist[picks] = 0.0
    return np.array(picks, dtype=np.int64)


def typicality(x: np.ndarray, neighbours: int = 20) -> np.ndarray:
    """TypiClust's typicality: 1 / mean distance to the ``neighbours`` nearest other points, (N, D) -> (N,)."""
    t = torch.as_tensor(x, dtype=torch.float64)
    m = min(neighbours, len(t) - 1)
    if m < 1:
        return np.ones(len(t))
    out = np.empty(len(t))
    for i in range(0, len(t), CHUNK):
        d = torch.cdist(t[i:i + CHUNK], t)
        out[i:i + CHUNK] = (1.0 / (d.topk(m + 1, largest=False).values[:, 1:].mean(1) + 1e-12)).numpy()
    return out


def typiclust(candidates: np.ndarray, labelled: np.ndarray, k: int, seed: int, neighbours: int = 20,
              min_cluster: int = 5) -> np.ndarray:
    """TypiClust (Hacohen et al., ICML 2022, https://arxiv.org/abs/2202.02794): k-means into |L| + k clusters of
    the whole pool, then from each of the largest clusters without a labelled point the most typical candidate.
    Clusters smaller than ``min_cluster`` come last; past the uncovered clusters, the largest covered ones."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    assert 0 <= k <= len(candidates)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    x = np.concatenate([candidates, labelled]).astype(np.float64) if len(labelled) else np.asarray(candidates,
                                                                                                      np.float64)
    n_clusters = min(len(labelled) + k, len(x))
    kind = KMeans if len(x) <= 20_000 else MiniBatchKMeans
    cluster = kind(n_clusters=n_clusters, n_init=1, random_state=seed).fit_predict(x)
    is_cand = np.arange(len(x)) < len(candidates)
    sizes = np.bincount(cluster, minlength=n_clusters)
    covered = np.zeros(n_clusters, bool)
    covered[cluster[~is_cand]] = True
    picks: list[int] = []
    while len(picks) < k:
        open_ = [c for c in range(n_clusters) if (is_cand & (cluster == c)).any()
                 and not np.isin(np.flatnonzero(cluster == c), picks).all()]
        # largest uncovered cluster first; tiny clusters (outliers) after every other
        c = min(open_, key=lambda c: (covered[c], sizes[c] < min_cluster, -sizes[c], c))
        members = np.flatnonzero(cluster == c)
        typ = typicality(x[members], neighbours)
        order = [m for m in members[np.argsort(-typ, kind="stable")] if is_cand[m] and m not in picks]
        picks.append(int(order[0]))
        covered[c] = True
    return np.array(picks, dtype=np.int64)


def ball_radius(x: np.ndarray, n_classes: int, seed: int, purity: float = 0.95) -> float:
    """ProbCover's delta: the largest radius at which ``purity`` of the balls hold one k-means cluster only
    (k = the number of classes), searched over quantiles of the nearest-neighbour distances."""
    from sklearn.cluster import KMeans

    t = torch.as_tensor(x, dtype=torch.float64)
    cluster = torch.as_tensor(KMeans(n_clusters=n_classes, n_init=1, random_state=seed).fit_predict(x))
    best = 0.0
    nn = np.concatenate([torch.cdist(t[i:i + CHUNK], t).topk(2, largest=False).values[:, 1].numpy()
                         for i in range(0, len(t), CHUNK)])
    for delta in np.quantile(nn, np.linspace(0.5, 1.0, 11)) * np.array([1, 1, 1, 1, 1, 1, 1.5, 2, 3, 4, 6]):
        pure = 0
        for i in range(0, len(t), CHUNK):
            inside = torch.cdist(t[i:i + CHUNK], t) <= delta
            other = cluster[None, :] != cluster[i:i + CHUNK, None]
            pure += int((~(inside & other).any(1)).sum())
        if pure / len(t) >= purity:
            best = max(best, float(delta))
    return best if best > 0 else float(np.quantile(nn, 0.5))


def prob_cover(candidates: np.ndarray, labelled: np.ndarray, k: int, delta: float) -> np.ndarray:
    """ProbCover (Yehuda et al., NeurIPS 2022, https://arxiv.org/abs/2205.11320): greedy max coverage of the
    pool by balls of radius ``delta``: each pick is the candidate whose ball holds the most points no labelled or
    picked point's ball holds yet. Ties: the lowest position."""
    x = torch.as_tensor(np.concatenate([candidates, labelled]) if len(labelled) else candidates, dtype=torch.float64)
    n = len(candidates)
    assert 0 <= k <= n
    covered = torch.zeros(len(x), dtype=torch.bool)
    for i in range(n, len(x)):
        covered |= (x - x[i]).pow(2).sum(1) <= delta ** 2
    gain = torch.zeros(n, dtype=torch.int64)
    inside = []  # ball membership by chunk of candidates (bool, N_chunk x N)
    for i in range(0, n, CHUNK):
        inside.append(torch.cdist(x[i:min(i + CHUNK, n)], x) <= delta)
    picks: list[int] = []
    for _ in range(k):
        gain = torch.cat([(b & ~covered).sum(1) for b in inside])
        gain[picks] = -1
        j = int(torch.argmax(gain))
        picks.append(j)
        covered |= inside[j // CHUNK][j % CHUNK]
    return np.array(picks, dtype=np.int64)
