"""Co-interaction pairs: the pure reference on hand-made sessions, then Spark against it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from retrieval.config import PairsSection, SplitSection
from retrieval.mining.pairs import Pair, cutoff_day, mine_pairs, session_pairs, top_partner_share

W = {"view": 1.0, "click": 1.0, "cart": 2.0, "purchase": 3.0}
T0 = datetime(2026, 10, 1, 12, 0, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_window_bounds_the_pairs_of_a_long_session() -> None:
    views = [(at(i), "view", 100 + i) for i in range(50)]
    pairs = session_pairs(views, window=3, max_events=200, weights=W)
    assert len(pairs) == 47 * 3 + 2 + 1  # each event pairs with the next 3 only
    assert (100, 103) in pairs and (100, 104) not in pairs


def test_max_session_events_keeps_the_first_interactions() -> None:
    views = [(at(i), "view", 100 + i) for i in range(10)]
    pairs = session_pairs(views, window=5, max_events=4, weights=W)
    assert set(pairs) == {(100, 101), (100, 102), (100, 103), (101, 102), (101, 103), (102, 103)}


def test_a_pair_counts_once_per_session_at_its_highest_weight() -> None:
    events = [(at(0), "view", 1), (at(1), "view", 2), (at(2), "view", 1), (at(3), "purchase", 2)]
    assert session_pairs(events, window=5, max_events=100, weights=W) == {(1, 2): 2.0}


def test_self_pairs_other_events_and_missing_offers_are_ignored() -> None:
    events = [
        (at(0), "view", 1),
        (at(1), "click", 1),
        (at(2), "search", None),
        (at(3), "view", None),
        (at(4), "view", 2),
    ]
    assert session_pairs(events, window=1, max_events=100, weights=W) == {(1, 2): 1.0}  # search/None skipped


def test_order_is_by_time_not_by_input_order() -> None:
    events = [(at(10), "view", 3), (at(0), "view", 1), (at(5), "view", 2)]
    assert set(session_pairs(events, window=1, max_events=100, weights=W)) == {(1, 2), (2, 3)}


def rows(session: str, start: float, offers: list[int], event: str = "view") -> list[dict[str, Any]]:
    return [
        {"session_id": session, "ts": at(start + i), "event": event, "offer_id": o}
        for i, o in enumerate(offers)
    ]


def test_support_split_and_both_directions() -> None:
    day = 86400
    events = (
        rows("a", 0, [1, 2])
        + rows("b", 100, [1, 2, 3])  # train: (1,2) twice, (2,3) once
        + rows("c", 10 * day, [1, 2])
        + rows("d", 10 * day, [4, 5], "purchase")  # test
    )
    cfg = PairsSection(window=1, min_support=2, event_weights=W)
    got = mine_pairs(events, cfg, cutoff="2026-10-10")
    assert got == sorted(
        [
            Pair(1, 2, 2.0, "train"),
            Pair(2, 1, 2.0, "train"),
            Pair(1, 2, 1.0, "test"),
            Pair(2, 1, 1.0, "test"),
            Pair(4, 5, 3.0, "test"),
            Pair(5, 4, 3.0, "test"),
        ]
    )


def test_cutoff_day() -> None:
    assert cutoff_day("2026-10-14", SplitSection(test_days=3)) == "2026-10-12"
    assert cutoff_day("2026-10-14", SplitSection(test_days=3, test_start="2026-10-05")) == "2026-10-05"


def test_top_partner_share() -> None:
    pairs = [
        Pair(1, 2, 5.0, "train"),
        Pair(1, 3, 4.0, "train"),
        Pair(1, 4, 1.0, "train"),
        Pair(2, 1, 5.0, "train"),
    ]
    label = {1: "p", 2: "p", 3: "q", 4: "p"}
    # offer 1: top-2 = {2 (same), 3 (other)} -> 0.5; offer 2: {1 (same)} -> 1.0
    assert top_partner_share(pairs, label, k=2) == pytest.approx(0.75)


@pytest.mark.spark
def test_spark_pairs_equal_the_pure_ones_on_hand_made_sessions(spark: Any) -> None:
    from retrieval.mining.spark_pairs import mine_pairs as spark_mine_pairs

    day = 86400
    events = (
        rows("a", 0, [1, 2, 1, 3, 3, 4])
        + rows("b", 50, [2, 1])
        + rows("c", 100, [5, 6], "cart")
        + rows("c", 102, [6, 5], "purchase")
        + rows("d", 11 * day, [1, 2, 3])
        + rows("e", 11 * day, [3, 2])
    )
    events.append({"session_id": "a", "ts": at(3), "event": "search", "offer_id": None})
    cfg = PairsSection(window=2, max_session_events=5, min_support=1, event_weights=W)
    df = spark.createDataFrame(
        [(r["session_id"], r["ts"], r["event"], r["offer_id"]) for r in events],
        "session_id string, ts timestamp, event string, offer_id bigint",
    )
    got = sorted(Pair(*r) for r in spark_mine_pairs(df, cfg, "2026-10-10").collect())
    assert got == mine_pairs(events, cfg, "2026-10-10")
