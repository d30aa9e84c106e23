"""Offline retrieval metrics, shared by every stage: exact top-K, Recall@K, MRR, bootstrap intervals
(pure numpy; the rankings' nDCG is ``ranking.evaluation``).

Conventions: ``ranked`` is [Q, K] item ids (best first, ``NO_ITEM`` = no item), ``targets`` one set of
relevant ids per query. Recall@K = |top-K ∩ targets| / |targets|, averaged over queries with targets;
MRR = mean of 1 / rank of the first relevant item within the top K (0 if none).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The id that pads a result with fewer than k items: int64's minimum, which ingest reserves (an offer
# with that id is quarantined), so every other int64, negative ids included, is an offer id.
NO_ITEM = int(np.iinfo(np.int64).min)


def exact_search(
    xq: np.ndarray,
    xb: np.ndarray,
    ids: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
    block: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` of each query among ``xb``, best first (faiss's D, I).

    Args:
        xq: [Q, d] float32 queries; xb: [N, d] float32 items with ids [N].
        exclude: [Q] item id per query to leave out (the query item itself), or None.
    Returns: D [Q, k] float32 scores (-inf padding) and I [Q, k] int64 ids (``NO_ITEM`` padding).
    """
    if xq.shape[1] != xb.shape[1]:
        raise ValueError(f"queries are {xq.shape[1]}-d but items are {xb.shape[1]}-d")
    dist = np.full((len(xq), k), -np.inf, dtype=np.float32)
    out = np.full((len(xq), k), NO_ITEM, dtype=np.int64)
    kk = min(k + (1 if exclude is not None else 0), len(xb))
    for lo in range(0, len(xq), block):
        scores = xq[lo : lo + block] @ xb.T  # [b, N]
        if exclude is not None:
            scores[ids[None, :] == exclude[lo : lo + block, None]] = -np.inf
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        order = np.take_along_axis(scores, part, axis=1)
        idx = np.take_along_axis(part, np.argsort(-order, axis=1, kind="stable"), axis=1)[:, :k]
        best = np.take_along_axis(scores, idx, axis=1)
        top = ids[idx]
        top[best == -np.inf] = NO_ITEM
        out[lo : lo + block, : top.shape[1]] = top
        dist[lo : lo + block, : best.shape[1]] = best
    return dist, out


def recall_at_k(ranked: np.ndarray, targets: Sequence[set[int]], k: int) -> float:
    hits = [len(set(row[:k].tolist()) & t) / len(t) for row, t in zip(ranked, targets, strict=True) if t]
    return float(np.mean(hits)) if hits else float("nan")


def mrr(ranked: np.ndarray, targets: Sequence[set[int]], k: int | None = None) -> float:
    scores = []
    for row, t in zip(ranked, targets, strict=True):
        if not t:
            continue
        rr = 0.0
        for rank, item in enumerate(row[:k].tolist() if k else row.tolist(), start=1):
            if item in t:
                rr = 1.0 / rank
                break
        scores.append(rr)
    return float(np.mean(scores)) if scores else float("nan")


def bootstrap_interval(
    per_query: np.ndarray, rng: np.random.Generator, rounds: int = 1000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over queries (NaN queries left out)."""
    v = np.asarray(per_query, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    means = v[rng.integers(0, len(v), size=(rounds, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
