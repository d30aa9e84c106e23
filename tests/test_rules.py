"""The pure ingest rules on hand-made rows, one behaviour each."""

from __future__ import annotations

import pytest

from retrieval.ingest import rules

KNOWN = frozenset({1, 2, 3})


def ev(**kw: object) -> dict:
    row = {
        "session_id": "s1",
        "ts": "2026-10-01 10:00:00.000",
        "event": "view",
        "offer_id": 1,
        "query_id": None,
        "query_text": None,
        "listing": None,
        "position": None,
    }
    row.update(kw)
    return row


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (ev(), None),
        (ev(session_id=None), rules.NULL_KEY),
        (ev(event=None), rules.NULL_KEY),
        (ev(offer_id=None), rules.NULL_KEY),
        (ev(event="search", offer_id=None, query_id=None, listing=[1]), rules.NULL_KEY),
        (ev(event="search", offer_id=None, query_id="q", listing=[1, 2]), None),
        (ev(event="hover"), rules.BAD_EVENT),
        (ev(ts="2026-13-45 25:61:00"), rules.BAD_TS),
        (ev(ts="not a timestamp"), rules.BAD_TS),
        (ev(ts=""), rules.BAD_TS),
        (ev(ts=None), rules.BAD_TS),
        (ev(ts="2026-02-30T10:00:00"), rules.BAD_TS),
        (ev(ts="2026-10-01T10:00:00Z"), None),
        (ev(event="search", offer_id=None, query_id="q", listing=[]), rules.BAD_LISTING),
        (ev(event="search", offer_id=None, query_id="q", listing=None), rules.BAD_LISTING),
        (ev(event="search", offer_id=None, query_id="q", listing=[1, None]), rules.BAD_LISTING),
        (ev(event="click", position=0, query_id="q"), rules.BAD_POSITION),
        (ev(event="click", position=3, query_id="q"), None),
        (ev(offer_id=99), rules.UNKNOWN_OFFER),
        (ev(event="search", offer_id=None, query_id="q", listing=[1, 99]), rules.UNKNOWN_OFFER),
        # the first failing rule names the reason
        (ev(offer_id=99, ts="bad"), rules.BAD_TS),
        (ev(session_id=None, ts="bad"), rules.NULL_KEY),
    ],
)
def test_event_reason(row: dict, reason: str | None) -> None:
    assert rules.event_reason(row, KNOWN) == reason


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"offer_id": 1, "price": 10.0, "updated_at": "2026-10-01 00:00:00"}, None),
        ({"offer_id": 1, "price": None, "updated_at": None}, None),  # content may be missing
        ({"offer_id": None, "price": 10.0}, rules.NULL_KEY),
        ({"offer_id": 1, "price": -1.0}, rules.BAD_PRICE),
        ({"offer_id": 1, "price": float("nan")}, rules.BAD_PRICE),
        ({"offer_id": 1, "price": float("inf")}, rules.BAD_PRICE),
        ({"offer_id": 1, "price": 0.0}, None),
        ({"offer_id": 1, "price": 1.0, "updated_at": "yesterday"}, rules.BAD_TS),
    ],
)
def test_offer_reason(row: dict, reason: str | None) -> None:
    assert rules.offer_reason(row) == reason


def test_bot_by_count_and_by_rate() -> None:
    fast = [ev(session_id="fast", ts=f"2026-10-01 10:00:{i // 10:02d}.{i % 10}00") for i in range(40)]
    slow = [ev(session_id="slow", ts=f"2026-10-01 10:{i:02d}:00.000") for i in range(40)]
    many = [
        ev(session_id="many", ts=f"2026-10-0{1 + i // 600} 10:{(i // 10) % 60:02d}:00.000")
        for i in range(1500)
    ]
    short_burst = [ev(session_id="burst", ts="2026-10-01 11:00:00.000") for _ in range(5)]
    bots = rules.bot_sessions(
        fast + slow + many + short_burst, max_events=1000, max_per_minute=60.0, min_events_for_rate=30
    )
    assert bots == {"fast", "many"}


def test_is_bot_boundaries() -> None:
    assert not rules.is_bot(1000, 1e6, 1000, 60.0, 30)
    assert rules.is_bot(1001, 1e6, 1000, 60.0, 30)
    assert not rules.is_bot(30, 30.0, 1000, 60.0, 30)  # exactly 60/min
    assert rules.is_bot(31, 30.0, 1000, 60.0, 30)
