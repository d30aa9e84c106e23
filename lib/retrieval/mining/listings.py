"""Graded listing labels, ranking features and position-bias propensities, in plain Python/numpy.

The reference for ``spark_listings`` (tested equal on small inputs) and the home of the one model this
stage fits: the examination curve of a position-based click model (PBM),

    P(click | query q, offer d, position p) = theta_p * gamma_qd,

estimated by EM (Chuklin, Markov & de Rijke, *Click Models for Web Search*, 2015, ch. 4) over
(query, offer) pairs that were shown at two or more positions. Listings are ordered by a noisy
ranker, so the same offer lands at different positions for the same query text: that variation is
what identifies theta. theta is reported relative to position 1 (the PBM fixes it only up to scale).
Each pair's relevance is an incidental parameter: with only a handful of impressions per pair the
estimate is biased towards a flatter top of the curve; it is consistent as impressions per pair grow
(tests/test_listings.py measures both).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LABEL_GRADES = {"click": 1, "cart": 2, "purchase": 3}  # 0 = shown only
_TOKEN = re.compile(r"[0-9a-z]+")


def tokenize(text: str | None) -> list[str]:
    """Lower-cased alphanumeric runs: ``"iPhone-15 Pro, 128GB"`` -> ``["iphone", "15", "pro", "128gb"]``."""
    return _TOKEN.findall(text.lower()) if text else []


def query_key(text: str | None) -> str:
    """The identity of a query text for the click model: its tokens, space-joined."""
    return " ".join(tokenize(text))


def label_of(events: Sequence[str]) -> int:
    """Grade of an offer in a listing from the events on it: 0 shown, 1 clicked, 2 carted, 3 purchased."""
    return max((LABEL_GRADES.get(e, 0) for e in events), default=0)


def bm25_idf(doc_freq: int, n_docs: int) -> float:
    """BM25 inverse document frequency (the non-negative Lucene variant)."""
    return math.log(1.0 + (n_docs - doc_freq + 0.5) / (doc_freq + 0.5))


def bm25(
    query: Sequence[str], title: Sequence[str], idf: Mapping[str, float], avgdl: float, k1: float, b: float
) -> float:
    """BM25 of a title for a query (distinct query tokens; unknown tokens score 0)."""
    tf = Counter(title)
    norm = k1 * (1.0 - b + b * len(title) / avgdl) if avgdl > 0 else k1
    return float(sum(idf.get(t, 0.0) * tf[t] * (k1 + 1.0) / (tf[t] + norm) for t in set(query) if tf[t]))


def token_overlap(query: Sequence[str], title: Sequence[str]) -> float:
    """Share of the query's distinct tokens found in the title (0 for an empty query)."""
    q = set(query)
    return len(q & set(title)) / len(q) if q else 0.0


@dataclass
class PositionBias:
    """Examination probability by position, relative to position 1.

    ``examination[i]`` is position ``i + 1``; positions past the fitted range follow the power law
    ``examination[-1] * (p / len(examination)) ** -eta`` fitted on the estimated curve.
    """

    examination: np.ndarray  # [K] float64, examination[0] == 1
    eta: float

    def propensity(self, positions: np.ndarray) -> np.ndarray:
        """Propensities of 1-based positions: [n] float64."""
        p = np.asarray(positions, dtype=np.int64)
        k = len(self.examination)
        out = np.empty(len(p), dtype=np.float64)
        inside = p <= k
        out[inside] = self.examination[p[inside] - 1]
        out[~inside] = self.examination[-1] * (p[~inside] / k) ** -self.eta
        return out

    def to_dict(self) -> dict[str, object]:
        return {"examination": [round(float(x), 6) for x in self.examination], "eta": round(self.eta, 6)}


def decreasing_fit(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-increasing fit of ``y`` (pool-adjacent-violators). [n] -> [n]."""
    blocks: list[list[float]] = []  # [weighted mean, weight, length]
    for yi, wi in zip(np.asarray(y, dtype=np.float64), np.asarray(w, dtype=np.float64), strict=True):
        blocks.append([yi, max(wi, 1e-12), 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(int(n), m) for m, _, n in blocks]) if blocks else np.zeros(0)


def fit_position_bias(
    group: np.ndarray,
    position: np.ndarray,
    impressions: np.ndarray,
    clicks: np.ndarray,
    max_position: int,
    iterations: int = 60,
    monotone: bool = True,
) -> PositionBias:
    """EM for the position-based model on aggregated cells.

    Args:
        group: [n] int, id of the (query, offer) pair of each cell.
        position: [n] int, 1-based position of the cell.
        impressions: [n] times the pair was shown at that position.
        clicks: [n] clicks among those impressions.
        max_position: positions 1..max_position are estimated (cells beyond are ignored).
        monotone: make the curve non-increasing in position (an isotonic fit weighted by the clicks
            at each position): deep positions have few clicks and noisy estimates, and a user does not
            look at position 20 more often than at position 19.

    Pairs seen at a single position carry no information on theta and are dropped here.
    """
    group, position = np.asarray(group), np.asarray(position)
    n, c = np.asarray(impressions, dtype=np.float64), np.asarray(clicks, dtype=np.float64)
    if not (len(group) == len(position) == len(n) == len(c)):
        raise ValueError("group, position, impressions and clicks must have the same length")
    if (c > n).any() or (n <= 0).any():
        raise ValueError("need 0 <= clicks <= impressions and impressions > 0 in every cell")
    keep = (position >= 1) & (position <= max_position)
    group, position, n, c = group[keep], position[keep], n[keep], c[keep]
    _, g = np.unique(group, return_inverse=True)
    # pairs shown at >= 2 distinct positions
    first_pos = np.full(g.max() + 1 if len(g) else 0, -1)
    multi = np.zeros(len(first_pos), dtype=bool)
    for gi, p in zip(g, position, strict=True):
        if first_pos[gi] < 0:
            first_pos[gi] = p
        elif first_pos[gi] != p:
            multi[gi] = True
    keep = multi[g] if len(g) else np.zeros(0, dtype=bool)
    g, pos, n, c = g[keep], position[keep] - 1, n[keep], c[keep]
    if len(g) == 0 or c.sum() == 0:
        raise ValueError(
            "no clicks on (query, offer) pairs shown at several positions: cannot estimate position bias"
        )
    _, g = np.unique(g, return_inverse=True)
    theta = np.full(max_position, 0.5)
    gamma = np.full(g.max() + 1, 0.5)
    shown = np.bincount(pos, n, max_position)
    per_pair = np.bincount(g, n)
    for _ in range(iterations):
        t, r = theta[pos], gamma[g]
        not_clicked = n - c
        denom = np.maximum(1.0 - t * r, 1e-12)
        examined = c + not_clicked * t * (1.0 - r) / denom  # E[examined] per cell
        relevant = c + not_clicked * r * (1.0 - t) / denom  # E[relevant] per cell
        theta = np.where(shown > 0, np.bincount(pos, examined, max_position) / np.maximum(shown, 1e-12), 0.0)
        gamma = np.bincount(g, relevant) / per_pair
    if monotone:
        theta = decreasing_fit(theta, np.bincount(pos, c, max_position) + 1.0)
    if theta[0] <= 0:
        raise ValueError("position 1 was never examined in the data: cannot normalise the curve")
    exam = theta / theta[0]
    # positions never shown: carry the last estimate forward
    for i in range(1, max_position):
        if shown[i] == 0:
            exam[i] = exam[i - 1]
    ok = exam > 0
    ranks = np.arange(1, max_position + 1)
    eta = float(-np.polyfit(np.log(ranks[ok]), np.log(exam[ok]), 1)[0]) if ok.sum() >= 2 else 1.0
    return PositionBias(exam, eta)


def propensity_mae(estimated: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error between two examination curves, both relative to position 1."""
    e, t = np.asarray(estimated, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if len(e) != len(t):
        raise ValueError(f"curves of different lengths: {len(e)} vs {len(t)}")
    return float(np.abs(e / e[0] - t / t[0]).mean())


def listing_features(
    query_text: str | None,
    offers: Sequence[Mapping[str, Any]],
    idf: Mapping[str, float],
    avgdl: float,
    k1: float = 1.2,
    b: float = 0.75,
    top: int = 10,
) -> list[dict[str, float]]:
    """Per-offer features of one listing that depend on the listing itself (reference for Spark).

    Args:
        offers: the listing in position order, each with ``price``, ``title``, ``category_id``.

    Returns one dict per offer: price_rank (1 = cheapest; ties share the lowest rank; missing prices
    rank last), price_z (z-score of the price within the listing, sample std; 0 where undefined),
    bm25, token_overlap, category_share (share of the listing's first ``top`` offers in the offer's
    category) and listing_size.
    """
    q = tokenize(query_text)
    prices: list[float | None] = [None if o.get("price") is None else float(o["price"]) for o in offers]
    known = np.array([p for p in prices if p is not None], dtype=np.float64)
    mean = known.mean() if len(known) else 0.0
    std = known.std(ddof=1) if len(known) > 1 else 0.0
    head = Counter(o.get("category_id") for o in offers[:top])
    out = []
    for o, p in zip(offers, prices, strict=True):
        title = tokenize(o.get("title"))
        rank = 1 + sum(1 for x in prices if x is not None and (p is None or x < p))
        out.append(
            {
                "price_rank": rank,
                "price_z": float((p - mean) / std) if p is not None and std > 0 else 0.0,
                "bm25": bm25(q, title, idf, avgdl, k1, b),
                "token_overlap": token_overlap(q, title),
                "category_share": head.get(o.get("category_id"), 0) / min(top, len(offers))
                if o.get("category_id") is not None
                else 0.0,
                "listing_size": len(offers),
            }
        )
    return out
