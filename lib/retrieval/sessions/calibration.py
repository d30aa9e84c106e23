"""How a click log looks, in the figures that decide what a recommender's numbers mean: how
concentrated the clicks are, how long sessions run, how often a session returns to an item, and how
often consecutive clicks stay in one category. Computed the same way for the synthetic marketplace
and for a real log (benchmarks/calibration.py), so that the generator's defaults can be brought into
the real log's range.

A log is a list of sessions, each an array of item ids in click order (and optionally an aligned
array of categories). :func:`sr_gnn_filter` applies the preprocessing behind the public session
splits (SR-GNN's: items seen fewer than 5 times dropped, then sessions shorter than 2), so that a raw
synthetic log is compared with a filtered real one on the same terms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

TOP_N = 20


def sr_gnn_filter(
    sessions: Sequence[np.ndarray],
    categories: Sequence[np.ndarray] | None = None,
    min_item_count: int = 5,
    min_length: int = 2,
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Sessions without the items seen fewer than ``min_item_count`` times in the whole log, then
    without sessions left shorter than ``min_length`` (one pass, as SR-GNN's preprocessing does)."""
    if not sessions:
        return [], ([] if categories is not None else None)
    items, counts = np.unique(np.concatenate(sessions), return_counts=True)
    frequent = items[counts >= min_item_count]
    kept_s: list[np.ndarray] = []
    kept_c: list[np.ndarray] = []
    for i, s in enumerate(sessions):
        keep = np.isin(s, frequent)
        if keep.sum() >= min_length:
            kept_s.append(s[keep])
            if categories is not None:
                kept_c.append(categories[i][keep])
    return kept_s, (kept_c if categories is not None else None)


def log_stats(
    sessions: Sequence[np.ndarray], categories: Sequence[np.ndarray] | None = None
) -> dict[str, Any]:
    """The log's shape, as shares in [0, 1] and lengths in clicks:

    - ``top20_share`` / ``top1pct_share``: clicks on the 20 most clicked items / the top 1% of items;
    - ``next_click_top20_share``: clicks after a session's first on the 20 most clicked items, which is
      what a popularity recommender's HR@20 is on that log (computed on the same log, so an upper side);
    - ``session_length``: mean, median, 90th percentile and the share of sessions of length >= 10;
    - ``repeat_rate``: clicks on an item the session already clicked;
    - ``same_category_next``: consecutive click pairs within one category (None without categories).
    """
    if not sessions:
        raise ValueError("log_stats: the log has no sessions")
    lengths = np.array([len(s) for s in sessions])
    flat = np.concatenate(sessions)
    items, counts = np.unique(flat, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    clicks = int(counts.sum())
    top_n = counts[order[:TOP_N]].sum()
    top_pct = counts[order[: max(1, int(np.ceil(0.01 * len(items))))]].sum()
    top_items = items[order[:TOP_N]]
    later = np.concatenate([s[1:] for s in sessions]) if lengths.max() > 1 else np.array([], flat.dtype)
    repeats = sum(len(s) - len(np.unique(s)) for s in sessions)
    same_cat: float | None = None
    if categories is not None:
        pairs = same = 0
        for c in categories:
            if len(c) > 1:
                pairs += len(c) - 1
                same += int((c[1:] == c[:-1]).sum())
        same_cat = round(same / pairs, 4) if pairs else None
    return {
        "sessions": len(sessions),
        "clicks": clicks,
        "items": len(items),
        "top20_share": round(float(top_n / clicks), 4),
        "top1pct_share": round(float(top_pct / clicks), 4),
        "next_click_top20_share": round(float(np.isin(later, top_items).mean()), 4) if len(later) else None,
        "session_length": {
            "mean": round(float(lengths.mean()), 2),
            "median": float(np.median(lengths)),
            "p90": float(np.percentile(lengths, 90)),
            "share_ge_10": round(float((lengths >= 10).mean()), 4),
        },
        "repeat_rate": round(repeats / clicks, 4),
        "same_category_next": same_cat,
    }


_ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("sessions", lambda s: f"{s['sessions']:,}"),
    ("clicks", lambda s: f"{s['clicks']:,}"),
    ("items", lambda s: f"{s['items']:,}"),
    ("clicks on the top 20 items", lambda s: f"{s['top20_share']:.2%}"),
    ("clicks on the top 1% of items", lambda s: f"{s['top1pct_share']:.2%}"),
    ("next clicks on the top 20 (POP HR@20, in-sample)", lambda s: f"{s['next_click_top20_share']:.2%}"),
    (
        "session length: mean / median / p90",
        lambda s: "{mean} / {median:g} / {p90:g}".format(**s["session_length"]),
    ),
    ("sessions of >= 10 clicks", lambda s: f"{s['session_length']['share_ge_10']:.1%}"),
    ("repeat clicks within a session", lambda s: f"{s['repeat_rate']:.1%}"),
    (
        "consecutive clicks in one category",
        lambda s: "n/a" if s["same_category_next"] is None else f"{s['same_category_next']:.1%}",
    ),
]


def table(logs: Mapping[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): the logs of ``logs`` (name -> :func:`log_stats`) side by side, a figure a row."""
    return ["", *logs], [[label, *(fmt(s) for s in logs.values())] for label, fmt in _ROWS]
