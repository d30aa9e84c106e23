"""Co-interaction pairs from sessions, in plain Python (the reference that ``spark_pairs`` is tested against).

Within a session, the interactions (``pairs.event_weights`` names which: views, clicks, carts,
purchases) are ordered by (ts, event, offer_id); each one pairs with the next ``window`` ones, among
the session's first ``max_session_events`` (so a long session costs O(n * window), never O(n^2)).
A pair of two different offers weighs the mean of its two ends' event weights; within one session a
pair counts once, at its highest weight. Over sessions, weights add up and ``support`` counts the
sessions. A session belongs to the test split when it starts on or after the cutoff day; training
pairs need ``min_support`` sessions, test pairs one. Pairs are emitted in both directions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from retrieval.config import PairsSection, SplitSection


@dataclass(frozen=True, order=True)
class Pair:
    query_offer_id: int
    item_offer_id: int
    weight: float
    split: str


def cutoff_day(last_day: str, split: SplitSection) -> str:
    """First day (``YYYY-MM-DD``) of the test split: ``split.test_start``, else the last ``test_days``
    days up to and including ``last_day`` (the day of the log's last event)."""
    if split.test_start:
        return date.fromisoformat(split.test_start).isoformat()
    return (date.fromisoformat(last_day) - timedelta(days=split.test_days - 1)).isoformat()


def session_pairs(
    interactions: Sequence[tuple[Any, str, int]], window: int, max_events: int, weights: Mapping[str, float]
) -> dict[tuple[int, int], float]:
    """Pairs of one session: ``(lo, hi) -> weight`` with ``lo < hi``.

    Args:
        interactions: (ts, event, offer_id) of the session's events, any order; events not in
            ``weights`` and rows without an offer are ignored.
    """
    kept = sorted((ts, ev, off) for ts, ev, off in interactions if ev in weights and off is not None)[
        :max_events
    ]
    out: dict[tuple[int, int], float] = {}
    for i, (_, ev_a, a) in enumerate(kept):
        for _, ev_b, b in kept[i + 1 : i + 1 + window]:
            if a == b:
                continue
            key = (a, b) if a < b else (b, a)
            w = (weights[ev_a] + weights[ev_b]) / 2.0
            if w > out.get(key, 0.0):
                out[key] = w
    return out


def mine_pairs(events: Iterable[Mapping[str, Any]], cfg: PairsSection, cutoff: str) -> list[Pair]:
    """All pairs of an events table given as rows (session_id, ts, event, offer_id); sorted.

    ``ts`` may be datetimes or ISO strings (compared with ``cutoff`` by their date).
    """
    sessions: dict[str, list[tuple[Any, str, int]]] = defaultdict(list)
    starts: dict[str, Any] = {}
    for row in events:
        sid, ts = row["session_id"], row["ts"]
        sessions[sid].append((ts, row["event"], row["offer_id"]))
        if sid not in starts or ts < starts[sid]:
            starts[sid] = ts
    weight: dict[tuple[str, int, int], float] = defaultdict(float)
    support: dict[tuple[str, int, int], int] = defaultdict(int)
    for sid, rows in sessions.items():
        split = "test" if _day(starts[sid]) >= cutoff else "train"
        for (lo, hi), w in session_pairs(rows, cfg.window, cfg.max_session_events, cfg.event_weights).items():
            weight[(split, lo, hi)] += w
            support[(split, lo, hi)] += 1
    out = []
    for (split, lo, hi), w in weight.items():
        if support[(split, lo, hi)] >= (cfg.min_support if split == "train" else 1):
            out += [Pair(lo, hi, w, split), Pair(hi, lo, w, split)]
    return sorted(out)


def _day(ts: Any) -> str:
    return ts.date().isoformat() if isinstance(ts, datetime) else str(ts)[:10]


def top_partner_share(pairs: Iterable[Pair], label: Mapping[int, Any], k: int = 10) -> float:
    """Mean over query offers of the share of their top-``k`` partners (by weight, then id) that have the
    same ``label`` (product, cluster ...) as the query. Offers without a label are skipped."""
    by_query: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for p in pairs:
        by_query[p.query_offer_id].append((-p.weight, p.item_offer_id))
    shares = []
    for q, partners in by_query.items():
        if q not in label:
            continue
        top = [item for _, item in sorted(partners)[:k]]
        shares.append(sum(label.get(item) == label[q] for item in top) / len(top))
    return sum(shares) / len(shares) if shares else float("nan")
