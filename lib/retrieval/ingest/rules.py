"""What ingest does with each kind of bad input, as plain Python (the reference for ``spark_ingest``).

Each raw row gets at most one reason; the first rule that matches wins, in the order below. Rows with
a reason go to ``quarantine/<table>``. Then exact duplicates among the remaining rows are removed and
counted, then searches that share a query_id with a different search are quarantined, and last,
whole sessions that look like bots are quarantined. So for every table::

    rows_in = rows_accepted + rows_quarantined + rows_duplicate
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from retrieval.config import IngestSection
from retrieval.evaluation import NO_ITEM

EVENT_TYPES = ("view", "search", "click", "cart", "purchase")
OFFER_EVENTS = ("view", "click", "cart", "purchase")  # events that must name an offer

# Reasons, in the order the rules are tried.
NULL_KEY = (
    "null_key"  # a key is missing or blank: offer_id; session_id, event, or the event's offer_id/query_id
)
BAD_ID = "bad_id"  # offer_id is int64's minimum, the id that pads results (evaluation.NO_ITEM)
BAD_EVENT = "bad_event"  # event type not in EVENT_TYPES
BAD_TS = "bad_ts"  # timestamp missing (events) or unparsable
TS_OUT_OF_RANGE = "ts_out_of_range"  # more than ingest.ts_spread_days from the log's busiest day
BAD_TEXT = "bad_text"  # a query text or title that is not valid UTF-8, or longer than ingest.max_text_chars
BAD_PRICE = "bad_price"  # negative, NaN or infinite price
BAD_LISTING = (
    "bad_listing"  # a search without a listing, with null entries, or longer than ingest.max_listing
)
BAD_POSITION = "bad_position"  # a position below 1
UNKNOWN_OFFER = "unknown_offer"  # an offer id (or a listing entry) that is not in the offers table
DUPLICATE_KEY = "duplicate_key"  # an older version of an offer whose offer_id appears again
DUPLICATE_QUERY = "duplicate_query"  # one of several different searches sharing a query_id (all of them)
BOT_SESSION = "bot_session"  # the whole session: too many events, or too many per minute
# a user's CSV / JSON lines record with a value that does not parse as its column's type, or a line that
# is not a record (ingest.spark_read): quarantined with its original text before any rule above
UNPARSABLE = "unparsable"

EVENT_REASONS = (
    NULL_KEY,
    BAD_EVENT,
    BAD_TS,
    TS_OUT_OF_RANGE,
    BAD_TEXT,
    BAD_LISTING,
    BAD_POSITION,
    UNKNOWN_OFFER,
    DUPLICATE_QUERY,
    BOT_SESSION,
)
OFFER_REASONS = (NULL_KEY, BAD_ID, BAD_PRICE, BAD_TS, BAD_TEXT, DUPLICATE_KEY)
DEFAULT_LIMITS = IngestSection()

TZ_OFFSET = (
    r"[+-]\d{2}:?\d{2}\s*$"  # our logs are UTC: a time with an offset is bad_ts (Spark would shift it)
)
_TS = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)


def parse_ts(value: str | None) -> datetime | None:
    """Parses the timestamps Spark's ``try_to_timestamp`` accepts in our logs (ISO-8601 dates and times, UTC).

    Returns None for anything unparsable, like Spark does.
    """
    if value is None:
        return None
    m = _TS.match(value)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        micros = int((frac or "0").ljust(6, "0")[:6])
        out = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micros, tzinfo=UTC)
    except ValueError:
        return None
    if tz and tz != "Z":
        return None  # our logs are UTC; offsets are not expected (Spark would shift them)
    return out


BLANK = r"^[ \t\n\x0b\f\r]*$"  # a key that is empty or only (ASCII) whitespace; Spark's rlike agrees


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and re.match(BLANK, value) is not None)


def bad_text(value: Any, max_chars: int) -> bool:
    """Not valid UTF-8 (bytes that do not decode, or a str holding lone surrogates), or too long."""
    if value is None:
        return False
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else value
        text.encode("utf-8")  # a str with lone surrogates does not encode
    except UnicodeError:
        return True
    return len(text) > max_chars


def busiest_day(timestamps: Iterable[str | None]) -> date | None:
    """The UTC day with the most parsable timestamps (the earliest of a tie): the log's own centre."""
    days = Counter(t.date() for t in map(parse_ts, timestamps) if t is not None)
    return min(days, key=lambda d: (-days[d], d)) if days else None


def event_reason(
    row: Mapping[str, Any],
    known_offers: set[int] | frozenset[int],
    limits: IngestSection = DEFAULT_LIMITS,
    centre: date | None = None,
) -> str | None:
    """The reason a raw event row is rejected, or None if it passes the row-level rules. ``centre``:
    the log's :func:`busiest_day` (no range rule without it)."""
    event = row.get("event")
    if _blank(row.get("session_id")) or event is None:
        return NULL_KEY
    if event in OFFER_EVENTS and row.get("offer_id") is None:
        return NULL_KEY
    if event == "search" and _blank(row.get("query_id")):
        return NULL_KEY
    if event not in EVENT_TYPES:
        return BAD_EVENT
    ts = parse_ts(row.get("ts"))
    if ts is None:
        return BAD_TS
    if (
        centre is not None
        and limits.ts_spread_days
        and abs(ts.date() - centre) > timedelta(limits.ts_spread_days)
    ):
        return TS_OUT_OF_RANGE
    if bad_text(row.get("query_text"), limits.max_text_chars):
        return BAD_TEXT
    listing = row.get("listing")
    if event == "search" and (
        not listing or any(x is None for x in listing) or len(listing) > limits.max_listing
    ):
        return BAD_LISTING
    position = row.get("position")
    if position is not None and position < 1:
        return BAD_POSITION
    offer = row.get("offer_id")
    if offer is not None and offer not in known_offers:
        return UNKNOWN_OFFER
    if event == "search" and any(x not in known_offers for x in listing or ()):
        return UNKNOWN_OFFER
    return None


def offer_reason(row: Mapping[str, Any], limits: IngestSection = DEFAULT_LIMITS) -> str | None:
    """The reason a raw offer row is rejected by the row-level rules, or None."""
    if row.get("offer_id") is None:
        return NULL_KEY
    if row["offer_id"] == NO_ITEM:
        return BAD_ID
    price = row.get("price")
    if price is not None and (math.isnan(price) or math.isinf(price) or price < 0):
        return BAD_PRICE
    updated = row.get("updated_at")
    if updated is not None and parse_ts(updated) is None:
        return BAD_TS
    if bad_text(row.get("title"), limits.max_text_chars):
        return BAD_TEXT
    return None


def conflicting_queries(events: Iterable[Mapping[str, Any]]) -> set[str]:
    """query_ids carried by more than one distinct search row (exact duplicates are one row): which
    listing a click on that query saw cannot be known, so every such search is quarantined
    (``DUPLICATE_QUERY``). Applied after the row-level rules and de-duplication, before the bot rule."""
    seen: dict[str, set[tuple[Any, ...]]] = {}
    for row in events:
        if row["event"] == "search":
            key = tuple(tuple(v) if isinstance(v, list) else v for v in row.values())
            seen.setdefault(row["query_id"], set()).add(key)
    return {q for q, rows in seen.items() if len(rows) > 1}


def bot_sessions(
    events: Iterable[Mapping[str, Any]], max_events: int, max_per_minute: float, min_events_for_rate: int
) -> set[str]:
    """Sessions whose event count exceeds ``max_events``, or whose rate (events per minute between the
    first and last event, at least one second) exceeds ``max_per_minute`` once they have
    ``min_events_for_rate`` events."""
    stats: dict[str, list] = {}
    for row in events:
        ts = parse_ts(row["ts"])
        assert ts is not None
        s = stats.setdefault(row["session_id"], [0, ts, ts])
        s[0] += 1
        s[1] = min(s[1], ts)
        s[2] = max(s[2], ts)
    return {
        sid
        for sid, (n, lo, hi) in stats.items()
        if is_bot(n, (hi - lo).total_seconds(), max_events, max_per_minute, min_events_for_rate)
    }


def is_bot(n: int, seconds: float, max_events: int, max_per_minute: float, min_events_for_rate: int) -> bool:
    rate = n / (max(seconds, 1.0) / 60.0)
    return n > max_events or (n >= min_events_for_rate and rate > max_per_minute)
