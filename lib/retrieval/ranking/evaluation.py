"""Offline evaluation of rankings (pure numpy): nDCG@k and MRR, the conventions every ranker is scored by.

A slate is one listing: ``scores`` [B, L] (higher first) and graded ``labels`` [B, L] padded with
-1. Ties in score keep the slate's input order (the logged position), so a constant scorer *is* the
production order. nDCG@k uses gains 2^y - 1 and discounts log2(1 + rank); a slate whose labels are
all 0 has no ideal DCG and is left out of the mean (its count is reported), which is what LightGBM
and XGBoost do too when told to (``ndcg-``) and what keeps unclicked searches from counting as
perfect or as failures. MRR is 1 / rank of the first item with label >= ``relevant`` (0 if it is not
in the slate), over slates that have one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrieval.evaluation import bootstrap_interval

PAD = -1
__all__ = ["bootstrap_interval", "dcg", "mean", "ndcg", "pad_groups", "reciprocal_rank", "slate_metrics"]


def ranked_labels(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[B, L] labels in descending score order (stable: ties keep input order), padding last."""
    s = np.where(labels == PAD, -np.inf, np.asarray(scores, dtype=np.float64))
    order = np.argsort(-s, axis=1, kind="stable")
    return np.take_along_axis(labels, order, axis=1)


def dcg(ranked: np.ndarray, k: int) -> np.ndarray:
    """[B] DCG@k of labels already in ranked order (padding counts 0)."""
    top = ranked[:, :k].astype(np.float64)
    gains = np.where(top > 0, np.exp2(np.maximum(top, 0)) - 1.0, 0.0)
    return (gains / np.log2(np.arange(2, top.shape[1] + 2))).sum(axis=1)


def ndcg(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """[B] nDCG@k per slate; NaN where the slate has no positive label."""
    ideal = dcg(-np.sort(-labels, axis=1), k)
    got = dcg(ranked_labels(scores, labels), k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, got / ideal, np.nan)


def reciprocal_rank(scores: np.ndarray, labels: np.ndarray, relevant: int = 1) -> np.ndarray:
    """[B] 1 / rank of the first item with label >= ``relevant``; NaN where the slate has none."""
    hit = ranked_labels(scores, labels) >= relevant
    first = hit.argmax(axis=1)
    return np.where(hit.any(axis=1), 1.0 / (first + 1.0), np.nan)


@dataclass
class SlateMetrics:
    """Per-slate metrics of one scorer: nDCG at each k, and reciprocal rank (NaN = slate left out)."""

    ndcg: dict[int, np.ndarray]
    rr: np.ndarray


def slate_metrics(
    scores: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = (5, 10, 30), relevant: int = 1
) -> SlateMetrics:
    return SlateMetrics({k: ndcg(scores, labels, k) for k in ks}, reciprocal_rank(scores, labels, relevant))


def mean(values: np.ndarray) -> float:
    """Mean over the slates that count (NaN left out); NaN if none do."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else float("nan")


def pad_groups(values: np.ndarray, groups: np.ndarray, fill: float = PAD) -> np.ndarray:
    """Consecutive groups of a flat [n] array -> [B, max group] padded with ``fill``."""
    groups = np.asarray(groups, dtype=np.int64)
    out = np.full(
        (len(groups), int(groups.max()) if len(groups) else 0), fill, dtype=np.asarray(values).dtype
    )
    starts = np.concatenate([[0], np.cumsum(groups)[:-1]])
    row = np.repeat(np.arange(len(groups)), groups)
    col = np.arange(len(values)) - np.repeat(starts, groups)
    out[row, col] = values
    return out
