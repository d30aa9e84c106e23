"""The DuckDB peer of benchmarks/mining.py computes the same pairs as our pure reference."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from benchmarks.mining import duckdb_pairs_sql

from retrieval.config import PairsSection
from retrieval.mining.pairs import Pair, mine_pairs

duckdb = pytest.importorskip("duckdb")


def test_duckdb_sql_equals_the_pure_pairs() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    t0 = datetime(2026, 10, 1)
    events = []
    for s in range(300):
        start = t0 + timedelta(days=int(rng.integers(0, 14)), seconds=int(rng.integers(0, 80000)))
        for i in range(int(rng.integers(1, 30))):
            ev = str(rng.choice(["view", "click", "cart", "purchase", "search"]))
            offer = None if ev == "search" else int(rng.integers(0, 40))
            events.append(
                {
                    "session_id": f"s{s}",
                    "ts": start + timedelta(seconds=i * 7),
                    "event": ev,
                    "offer_id": offer,
                }
            )
    cfg = PairsSection(window=3, max_session_events=12, min_support=2)
    expected = mine_pairs(events, cfg, "2026-10-12")
    con = duckdb.connect()
    con.execute("CREATE TABLE ev (session_id VARCHAR, ts TIMESTAMP, event VARCHAR, offer_id BIGINT)")
    con.executemany("INSERT INTO ev VALUES (?, ?, ?, ?)", [tuple(e.values()) for e in events])
    got = sorted(Pair(*r) for r in con.execute(duckdb_pairs_sql("ev", cfg, "2026-10-12")).fetchall())
    assert len(got) == len(expected) > 100
    assert [(p.query_offer_id, p.item_offer_id, p.split) for p in got] == [
        (p.query_offer_id, p.item_offer_id, p.split) for p in expected
    ]
    assert [p.weight for p in got] == pytest.approx([p.weight for p in expected])
