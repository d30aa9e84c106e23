"""Bad input, table-driven, importer by importer: raw events and offers (the pure rules, and ingest on
Spark over the same rows), the session files, SVMlight, images, and the YAML and ``--set`` config.

Every case names its expected outcome, one of three:
- ``quarantine``: a quarantined row with its named reason, and the accounting still closes;
- ``error``: a one-line error naming the file and line, or the key;
- ``empty``: valid but empty input: zero rows, no error.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.config import ConfigError, IngestSection
from retrieval.evaluation import NO_ITEM
from retrieval.ingest import rules
from test_rules import ev  # a good raw view on 2026-10-01 (tests/ is on the path)

KNOWN = frozenset({1, 2, 3, -7})
LIMITS = IngestSection(max_listing=5, max_text_chars=40, ts_spread_days=30)
DAY = "2026-10-01"


def search(**kw: Any) -> dict[str, Any]:
    return ev(
        **{
            "event": "search",
            "offer_id": None,
            "query_id": "q1",
            "query_text": "red shoe",
            "listing": [1, 2],
            **kw,
        }
    )


# (case, raw event row, the reason it is quarantined with; None = accepted)
EVENT_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("a good view", ev(), None),
    ("a negative offer id is an offer id", ev(offer_id=-7), None),
    ("empty session_id", ev(session_id=""), rules.NULL_KEY),
    ("blank session_id", ev(session_id=" \t "), rules.NULL_KEY),
    ("null session_id", ev(session_id=None), rules.NULL_KEY),
    ("empty query_id of a search", search(query_id=""), rules.NULL_KEY),
    ("a click without its offer", ev(event="click", offer_id=None), rules.NULL_KEY),
    ("an unknown event type", ev(event="hover"), rules.BAD_EVENT),
    ("a timestamp that is not one", ev(ts="yesterday"), rules.BAD_TS),
    ("Feb 30", ev(ts="2026-02-30 10:00:00"), rules.BAD_TS),
    ("a time zone offset", ev(ts="2026-10-01T10:00:00+02:00"), rules.BAD_TS),
    ("dated 2099", ev(ts="2099-01-01 00:00:00"), rules.TS_OUT_OF_RANGE),
    ("dated 1970", ev(ts="1970-01-01 00:00:00"), rules.TS_OUT_OF_RANGE),
    ("30 days from the busiest day is in range", ev(ts="2026-10-31 10:00:00"), None),
    ("31 days from it is not", ev(ts="2026-11-01 10:00:00"), rules.TS_OUT_OF_RANGE),
    ("a query text past the bound", search(query_text="shoe " * 20), rules.BAD_TEXT),
    ("a search without a listing", search(listing=None), rules.BAD_LISTING),
    ("an empty listing", search(listing=[]), rules.BAD_LISTING),
    ("a listing with a null", search(listing=[1, None]), rules.BAD_LISTING),
    ("a listing past the bound", search(listing=[1, 2, 3, 1, 2, 3]), rules.BAD_LISTING),
    ("position 0", ev(event="click", query_id="q1", position=0), rules.BAD_POSITION),
    ("an offer not in the catalogue", ev(offer_id=99), rules.UNKNOWN_OFFER),
    ("the padding id", ev(offer_id=NO_ITEM), rules.UNKNOWN_OFFER),
    ("a listed offer not in the catalogue", search(listing=[1, 99]), rules.UNKNOWN_OFFER),
]


def offer(**kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "offer_id": 11,
        "title": "red shoe",
        "category_id": 1,
        "price": 10.0,
        "seller_id": 1,
        "product_id": 1,
        "image_ref": None,
        "updated_at": f"{DAY} 00:00:00",
        "deleted": False,
    }
    row.update(kw)
    return row


OFFER_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("a good offer", offer(), None),
    ("a negative id", offer(offer_id=-12), None),
    ("no id", offer(offer_id=None), rules.NULL_KEY),
    ("the padding id", offer(offer_id=NO_ITEM), rules.BAD_ID),
    ("a NaN price", offer(offer_id=13, price=float("nan")), rules.BAD_PRICE),
    ("an infinite price", offer(offer_id=14, price=float("inf")), rules.BAD_PRICE),
    ("a negative price", offer(offer_id=15, price=-1.0), rules.BAD_PRICE),
    ("an unparsable updated_at", offer(offer_id=16, updated_at="soon"), rules.BAD_TS),
    ("a title that is not UTF-8", offer(offer_id=17, title=b"caf\xe9 \xff"), rules.BAD_TEXT),
    ("a title past the bound", offer(offer_id=18, title="x" * 41), rules.BAD_TEXT),
]


@pytest.mark.parametrize(("case", "row", "reason"), EVENT_CASES, ids=[c[0] for c in EVENT_CASES])
def test_event_rules(case: str, row: dict[str, Any], reason: str | None) -> None:
    centre = rules.busiest_day([r["ts"] for _, r, _ in EVENT_CASES] + [f"{DAY} 12:00:00"] * 50)
    assert rules.event_reason(row, KNOWN, LIMITS, centre) == reason, case


@pytest.mark.parametrize(("case", "row", "reason"), OFFER_CASES, ids=[c[0] for c in OFFER_CASES])
def test_offer_rules(case: str, row: dict[str, Any], reason: str | None) -> None:
    assert rules.offer_reason(row, LIMITS) == reason, case


def test_busiest_day_is_the_logs_own_centre_not_the_clock() -> None:
    ts = ["2026-10-01 10:00:00"] * 3 + ["2026-10-02 10:00:00"] * 3 + ["2099-01-01 00:00:00", "bad"]
    assert str(rules.busiest_day(ts)) == "2026-10-01"  # the earliest of a tie
    assert rules.busiest_day(["bad", None]) is None


def _raw(spark: Any, tmp_path: Path, contract: Any, rows: list[dict[str, Any]], name: str) -> Any:
    """Rows written as a log producer would (parquet by pyarrow; a title's bytes kept as they are)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"bigint": pa.int64(), "string": pa.string(), "int": pa.int32(), "double": pa.float64()}
    types |= {"boolean": pa.bool_(), "array<bigint>": pa.list_(pa.int64())}
    schema = pa.schema([(c.name, types[c.dtype]) for c in contract.columns])
    arrays = []
    for f in schema:
        values = [r[f.name] for r in rows]
        if pa.types.is_string(f.type):
            raw = [v if v is None or isinstance(v, bytes) else v.encode() for v in values]
            arrays.append(pa.array(raw, pa.binary()).view(pa.string()))  # no UTF-8 check, like a real file
        else:
            arrays.append(pa.array(values, f.type))
    path = tmp_path / f"{name}.parquet"
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)
    return spark.read.schema(contract.ddl()).parquet(str(path))


@pytest.mark.spark
def test_ingest_on_spark_quarantines_every_case_with_its_reason(spark: Any, tmp_path: Path) -> None:
    from pyspark.sql import functions as F

    from retrieval import tables
    from retrieval.ingest.spark_ingest import check_accounting, ingest_events, ingest_offers

    catalogue = [offer(offer_id=i, title=f"thing {i}") for i in (1, 2, 3, -7)]
    offer_rows = catalogue + [r for _, r, _ in OFFER_CASES]
    offers = ingest_offers(_raw(spark, tmp_path, tables.RAW_OFFERS, offer_rows, "offers"), LIMITS)
    check_accounting("offers", offers)
    got_offers = {r["offer_id"]: r["reason"] for r in offers.quarantined.collect()}
    for case, row, reason in OFFER_CASES:
        if reason is not None and row["offer_id"] is not None:
            assert got_offers.get(row["offer_id"]) == reason, case
    assert offers.counts["rows_quarantined"] == sum(1 for *_, r in OFFER_CASES if r)

    # each case in its own session (so the bot rule sees one event), beside a day of good traffic
    good = [ev(session_id=f"busy-{i}", ts=f"{DAY} 12:{i % 60:02d}:00") for i in range(50)]
    cases = [
        dict(row, session_id=row["session_id"] and f"{row['session_id']}|{n}")
        for n, (_, row, _) in enumerate(EVENT_CASES)
    ]
    for c, (_, row, _) in zip(cases, EVENT_CASES, strict=True):
        if row["session_id"] is not None and not row["session_id"].strip():
            c["session_id"] = row["session_id"]  # blank stays blank
    raw = _raw(spark, tmp_path, tables.RAW_EVENTS, good + cases, "events")
    events = ingest_events(raw, offers.accepted, LIMITS)
    check_accounting("events", events)
    quarantined = events.quarantined.select("session_id", "ts", "reason").collect()
    by_case = {(r["session_id"], r["ts"]): r["reason"] for r in quarantined}
    for c, (case, _, reason) in zip(cases, EVENT_CASES, strict=True):
        assert by_case.get((c["session_id"], c["ts"])) == reason, case
    assert events.counts["rows_accepted"] == 50 + sum(1 for *_, r in EVENT_CASES if r is None)
    assert events.accepted.where(F.col("offer_id") == -7).count() == 1


@pytest.mark.parametrize(
    ("path", "given", "want"),
    [
        ("logs/offers.csv", "auto", "csv"),
        ("logs/events.tsv.gz", "auto", "csv"),
        ("s3://b/events/day=1/part.jsonl", "auto", "jsonl"),
        ("logs/events.ndjson", "auto", "jsonl"),
        ("logs/events/", "auto", "parquet"),
        ("logs/events.txt", "csv", "csv"),
    ],
)
def test_a_users_files_format_comes_from_the_config_or_the_extension(
    path: str, given: str, want: str
) -> None:
    from retrieval.ingest.spark_read import format_of

    assert format_of(path, given) == want


@pytest.mark.spark
def test_ingest_reads_a_users_csv_and_json_lines_and_quarantines_what_does_not_parse(
    spark: Any, tmp_path: Path
) -> None:
    """A user's offers as CSV and events as JSON lines, some values unparsable and one line broken: every
    record is accepted, quarantined with its reason (``unparsable``, with its original text), or a
    duplicate, and the accounting closes."""
    from conftest import make_config
    from jobs import ingest
    from retrieval import commit, tables
    from retrieval.cli import run_stage
    from retrieval.storage import local_path

    (tmp_path / "offers.csv").write_text(
        "offer_id,title,category_id,price,seller_id,product_id,image_ref,updated_at,deleted,colour\n"
        "1,red shoe,5,10.5,7,100,,2026-10-01T00:00:00,false,red\n"
        "2,blue shoe,5,12.0,7,,,2026-10-01T00:00:00,,blue\n"
        '3,green shoe,5,"12,50",7,,,,,green\n'  # a decimal comma: not a double
        "4,hat,six,3.0,7,,,,,\n"  # a category that is not a number
    )
    good = {"session_id": "s1", "ts": "2026-10-01T10:00:00", "event": "view", "offer_id": 1}
    lines = [
        good,
        {**good, "ts": "2026-10-01T10:01:00", "offer_id": 2},
        {
            **good,
            "ts": "2026-10-01T10:02:00",
            "event": "search",
            "offer_id": None,
            "query_id": "q1",
            "query_text": "shoe",
            "listing": [1, 2],
        },
        {
            **good,
            "ts": "2026-10-01T10:03:00",
            "event": "click",
            "offer_id": 2,
            "query_id": "q1",
            "position": 2,
        },
        {**good, "ts": "2026-10-01T10:04:00", "position": "second"},  # not an int
        {**good, "ts": "2026-10-01T10:05:00", "event": "search", "query_id": "q2", "listing": "[1, x]"},
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"session_id": "s1", "ts": \n')
    cfg = make_config(
        tmp_path / "root", f"ingest.offers={tmp_path / 'offers.csv'}", f"ingest.events={events}"
    )
    m = run_stage(spark, cfg, "ingest", ingest.run)
    assert m["tables"]["offers"]["rows_in"] == 4 and m["tables"]["offers"]["rows_accepted"] == 2
    assert m["tables"]["offers"]["quarantine_reasons"] == {"unparsable": 2}
    assert m["tables"]["events"]["rows_in"] == 7 and m["tables"]["events"]["rows_accepted"] == 4
    assert m["tables"]["events"]["quarantine_reasons"] == {"unparsable": 3}
    root = str(tmp_path / "root")
    quarantined = spark.read.parquet(local_path(commit.resolve(root, "quarantine/offers"))).collect()
    raw = sorted(r["raw"] for r in quarantined)
    assert any('"price":"12,50"' in r for r in raw) and any('"category_id":"six"' in r for r in raw)
    quarantined = spark.read.parquet(local_path(commit.resolve(root, "quarantine/events"))).collect()
    texts = [r["raw"] for r in quarantined]
    assert any('"position":"second"' in t for t in texts) and any('"listing":"[1, x]"' in t for t in texts)
    assert any(t.startswith('{"session_id": "s1", "ts": ') for t in texts)  # the broken line, as it was
    accepted = spark.read.parquet(local_path(commit.resolve(root, tables.OFFERS.name)))
    assert sorted(r["offer_id"] for r in accepted.collect()) == [1, 2]


@pytest.mark.spark
def test_a_users_file_without_a_key_column_names_the_file_and_the_column(spark: Any, tmp_path: Path) -> None:
    from retrieval import tables
    from retrieval.ingest.spark_read import read_raw

    path = tmp_path / "events.csv"
    path.write_text("session,ts,event\ns1,2026-10-01T10:00:00,view\n")
    with pytest.raises(ValueError, match=r"events\.csv: no column 'session_id' \(the raw/events columns"):
        read_raw(spark, str(path), tables.RAW_EVENTS)


def test_two_searches_sharing_a_query_id_are_both_ambiguous() -> None:
    a = search(query_id="q7", listing=[1, 2])
    rows = [a, dict(a), search(query_id="q7", listing=[2, 3], ts=f"{DAY} 10:05:00"), search(query_id="q8")]
    assert rules.conflicting_queries(rows) == {"q7"}
    assert rules.conflicting_queries([a, dict(a)]) == set()  # an exact duplicate is only a duplicate


@pytest.mark.spark
def test_ingest_quarantines_searches_that_share_a_query_id(spark: Any, tmp_path: Path) -> None:
    """Two different searches under one query_id: which listing a click on it saw is unknowable, so
    both go to quarantine as duplicate_query; an exact duplicate is counted, not quarantined."""
    from retrieval import tables
    from retrieval.ingest.spark_ingest import check_accounting, ingest_events, ingest_offers

    catalogue = [offer(offer_id=i, title=f"thing {i}") for i in (1, 2, 3)]
    offers = ingest_offers(_raw(spark, tmp_path, tables.RAW_OFFERS, catalogue, "offers"), LIMITS)
    good = [ev(session_id=f"busy-{i}", ts=f"{DAY} 12:{i % 60:02d}:00") for i in range(50)]
    a = search(session_id="a", query_id="q7", listing=[1, 2])
    b = search(session_id="b", query_id="q7", listing=[2, 3], ts=f"{DAY} 10:05:00")
    kept = search(session_id="c", query_id="q8", listing=[1, 3])
    raw = _raw(spark, tmp_path, tables.RAW_EVENTS, [*good, a, b, kept, dict(kept)], "events")
    events = ingest_events(raw, offers.accepted, LIMITS)
    check_accounting("events", events)
    assert events.reasons == {rules.DUPLICATE_QUERY: 2}
    assert events.counts["rows_duplicate"] == 1
    assert {r["query_id"] for r in events.accepted.where("event = 'search'").collect()} == {"q8"}


@pytest.mark.spark
def test_ingest_of_an_empty_log_is_zero_rows_not_an_error(spark: Any, tmp_path: Path) -> None:
    from retrieval import tables
    from retrieval.ingest.spark_ingest import ingest_events, ingest_offers

    offers = ingest_offers(_raw(spark, tmp_path, tables.RAW_OFFERS, [], "offers0"))
    events = ingest_events(_raw(spark, tmp_path, tables.RAW_EVENTS, [], "events0"), offers.accepted, LIMITS)
    assert offers.counts["rows_in"] == events.counts["rows_in"] == events.counts["rows_accepted"] == 0


# --- the session files ------------------------------------------------------------------------

SESSION_LINES = [
    ("an id past int64", "1 2 99999999999999999999", "bad_session_line"),
    ("the padding id", f"1 {NO_ITEM}", "bad_session_line"),
    ("a word", "1 two 3", "bad_session_line"),
    ("a negative id is an id", "-4 2", None),
]


@pytest.mark.spark
def test_session_files_quarantine_bad_lines_and_overflowing_ids(spark: Any, tmp_path: Path) -> None:
    from retrieval import tables
    from retrieval.sessions.spark_import import import_sessions
    from retrieval.spark_tables import read_table

    folder = tmp_path / "sessions"
    folder.mkdir()
    (folder / "train_sessions.txt").write_text(
        "\n".join(["1 2 3", *[line for _, line, _ in SESSION_LINES]]) + "\n"
    )
    (folder / "test_prefix_label.tsv").write_text("prefix\tlabel\n1 2\t3\n\t4\n")
    root = str(tmp_path / "root")
    out = import_sessions(spark, str(folder), root)
    quarantined = read_table(spark, root, tables.quarantine("events")).collect()
    bad = {json.loads(r["raw"])["line"]: r["reason"] for r in quarantined}
    for case, line, reason in SESSION_LINES:
        assert bad.get(line) == reason, case
    assert bad.get("\t4") == "bad_session_line"  # a test example without a prefix
    assert out["quarantined_lines"] == 4 and out["train_sessions"] == 2 and out["test_examples"] == 1


@pytest.mark.spark
def test_session_files_without_their_header_name_the_file(spark: Any, tmp_path: Path) -> None:
    from retrieval.sessions.spark_import import import_sessions

    (tmp_path / "train_sessions.txt").write_text("1 2\n")
    (tmp_path / "test_prefix_label.tsv").write_text("1 2\t3\n")
    with pytest.raises(ValueError, match=r"test_prefix_label\.tsv: header must be"):
        import_sessions(spark, str(tmp_path), str(tmp_path / "root"))


# --- SVMlight ---------------------------------------------------------------------------------

SVMLIGHT_CASES = [
    ("a NaN feature", "1 qid:1 1:nan 2:0.5", r":3: a feature value is nan"),
    ("an infinite feature", "1 qid:1 1:inf", r":3: a feature value is inf"),
    ("an infinite label", "inf qid:1 1:0.3", r":3: label inf"),
    ("a fractional label", "1.5 qid:1 1:0.3", r":3: label 1.5"),
    ("a negative label", "-1 qid:1 1:0.3", r":3: label -1"),
    ("a feature index of 2e9", "1 qid:1 2000000000:1", r":3: feature index 2000000000 is past the bound"),
    ("not SVMlight", "this is not svmlight", r"not an SVMlight file"),
    ("a query that recurs", "1 qid:2 1:1\n0 qid:1 1:1", r"rows of a query must be consecutive"),
]


@pytest.mark.parametrize(("case", "line", "message"), SVMLIGHT_CASES, ids=[c[0] for c in SVMLIGHT_CASES])
def test_svmlight_errors_name_the_file_and_line(case: str, line: str, message: str, tmp_path: Path) -> None:
    from retrieval.ranking import svmlight

    path = tmp_path / "train.txt"
    path.write_text(f"0 qid:1 1:0.1\n# a comment line\n{line}\n")
    with pytest.raises(ValueError, match=message) as e:
        svmlight.load(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value), case


def test_svmlight_missing_file_is_named(tmp_path: Path) -> None:
    from retrieval.ranking import svmlight

    with pytest.raises(FileNotFoundError, match=r"nothere\.txt not found"):
        svmlight.load(str(tmp_path / "nothere.txt"))


# --- images -----------------------------------------------------------------------------------


def _png(w: int, h: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (w, h)).save(buf, "PNG")
    return buf.getvalue()


def _noise_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


IMAGE_CASES = [
    ("a 27 KB PNG of 15000 x 15000 pixels", lambda: _png(15000, 15000), "too_large"),
    ("an 11 KB PNG of 9500 x 9500 pixels", lambda: _png(9500, 9500), "too_large"),
    ("not an image", lambda: b"GIF89a but not really", "unreadable"),
    ("a truncated PNG", lambda: _noise_png()[:400], "unreadable"),
    ("empty bytes", lambda: b"", "unreadable"),
    ("a small image", lambda: _png(64, 48), None),
]


@pytest.mark.parametrize(("case", "make", "outcome"), IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_images_too_large_are_not_decoded(case: str, make: Any, outcome: str | None) -> None:
    from retrieval.visual.images import ImageTooLarge, decode

    data = make()
    if outcome is None:
        assert decode(data, 32).shape == (32, 32, 3)
    elif outcome == "too_large":
        with pytest.raises(ImageTooLarge):
            decode(data, 32)
    else:
        with pytest.raises(ValueError, match="not a readable image"):
            decode(data, 32)


@pytest.mark.spark
def test_image_import_quarantines_a_bomb_as_too_large(spark: Any, tmp_path: Path) -> None:
    from retrieval.visual.spark_visual import load_images

    (tmp_path / "bomb.png").write_bytes(_png(15000, 15000))
    (tmp_path / "ok.png").write_bytes(_png(64, 64))
    (tmp_path / "junk.png").write_bytes(b"junk")
    sources = spark.createDataFrame(
        [
            (1, 1, str(tmp_path / "bomb.png")),
            (2, 2, str(tmp_path / "ok.png")),
            (3, 3, str(tmp_path / "junk.png")),
        ],
        "image_id long, label long, source string",
    )
    got = {r["image_id"]: r["reason"] for r in load_images(sources, 32).collect()}
    assert got[1] == "too_large" and got[3].startswith("unreadable") and got[2] in (None, "blank")


# --- config -----------------------------------------------------------------------------------

CONFIG_CASES = [
    ("NaN bot rate", "ingest.max_events_per_minute=.nan", r"ingest\.max_events_per_minute"),
    ("infinite bot rate", "ingest.max_events_per_minute=.inf", r"ingest\.max_events_per_minute"),
    ("negative nprobe", "index.nprobe=-3", r"index\.nprobe"),
    ("zero epochs", "encoder.epochs=0", r"encoder\.epochs must be >= 1"),
    ("a date that is not one", "recs.since=not-a-date", r"recs\.since must be"),
    ("a zero listing bound", "ingest.max_listing=0", r"ingest\.max_listing must be >= 1"),
    ("a negative time spread", "ingest.ts_spread_days=-1", r"ingest\.ts_spread_days"),
    ("an unknown key", "ingest.max_listin=3", r"unknown config key 'ingest\.max_listin'"),
    ("a file URI with a host", "paths.root=file://work/test", r"paths\.root: file://work/test"),
    ("an empty root", "paths.root=", r"paths\.root must not be empty"),
    ("a wrong type", "synth.sessions=many", r"'synth\.sessions' must be an integer"),
    ("zero image pixels", "visual.max_pixels=0", r"visual\.max_pixels must be >= 1"),
]


@pytest.mark.parametrize(("case", "assignment", "message"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_names_the_key(case: str, assignment: str, message: str) -> None:
    from retrieval import config

    with pytest.raises(ConfigError, match=message) as e:
        config.load("conf/test.yaml", [assignment])
    assert "\n" not in str(e.value), case


def test_yaml_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    from retrieval import config

    path = tmp_path / "bad.yaml"
    path.write_bytes(b"synth:\n  products: 12\n  note: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not UTF-8"):
        config.load(str(path))


def test_config_values_that_make_sense_still_load() -> None:
    from retrieval import config

    cfg = config.load("conf/test.yaml", ["recs.since=2030-01-01 10:00:00", "paths.root=file:/tmp/x"])
    assert cfg.paths.root == "/tmp/x"


# --- paths ------------------------------------------------------------------------------------


def test_names_from_config_cannot_leave_the_root() -> None:
    from retrieval import storage

    with pytest.raises(ValueError, match=r"may not contain '\.\.'"):
        storage.join("/data/run", "../../etc")
    assert storage.join("/data/run", "results", "x.json") == "/data/run/results/x.json"
    assert storage.local_path("file:/data/run") == "/data/run"


def test_index_keeps_negative_ids_apart_from_its_padding() -> None:
    faiss = pytest.importorskip("faiss")
    from retrieval.index import shards

    x = np.eye(4, dtype=np.float32)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(4))
    index.add_with_ids(x[:3], np.array([-1, -2, -9], dtype=np.int64))
    d, i = shards.search_shards([(index, frozenset())], x[:1], 5, exclude=np.array([[-2]]))
    assert i[0, 0] == -1 and np.isfinite(d[0, 0])  # offer -1 is found, and is first
    assert set(i[0, :2].tolist()) == {-1, -9} and (i[0, 2:] == NO_ITEM).all() and np.isneginf(d[0, 2:]).all()


# --- untrusted files under the root: a planted pickle never runs


class _Planted:
    """Unpickling this runs code: what an attacker would put in a petastorm ``_common_metadata``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (eval, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.mark.petastorm
def test_the_petastorm_feed_never_unpickles_a_planted_common_metadata(tmp_path: Path) -> None:
    import pickle

    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrieval.training.feed import PetastormFeed

    table = tmp_path / "examples"
    table.mkdir()
    pq.write_table(pa.table({"x": list(range(10))}), table / "part-00000.parquet")
    marker = tmp_path / "code-ran"
    schema = pa.schema([("x", pa.int64())]).with_metadata(
        {b"dataset-toolkit.unischema.v1": pickle.dumps(_Planted(marker))}
    )
    pq.write_metadata(schema, table / "_common_metadata")
    feed = PetastormFeed(str(table), 5, lambda t: t.column("x").to_pylist(), shuffle=False)
    batches = list(feed.epoch(0))
    assert sorted(x for b in batches for x in b) == list(range(10))
    assert not marker.exists(), "the feed unpickled _common_metadata"


def test_a_quantizer_given_by_path_is_checked_before_use() -> None:
    """A trained, empty, inner-product index of the embeddings' dimension that stores ids, and of the
    checksum given: anything else is refused naming the file."""
    import faiss

    from retrieval.index import shards

    def _trained(index: Any) -> bytes:
        index.train(np.random.default_rng(1).normal(size=(400, 8)).astype(np.float32))
        return shards.to_bytes(index)

    rng = np.random.default_rng(0)
    good = shards.train_index(rng.normal(size=(400, 8)).astype(np.float32), "IVF4,Flat")
    assert shards.check_quantizer(good, "q.faiss", 8, shards.checksum(good)).d == 8
    full = shards.to_bytes(shards.build_shard(good, rng.normal(size=(5, 8)).astype(np.float32), np.arange(5)))
    cases = [
        (good, 16, "", "a 8-d quantizer for 16-d embeddings"),
        (good, 8, "0" * 64, "is not index.quantizer_sha256"),
        (b"not an index at all", 8, "", "not a faiss index"),
        (full, 8, "", "must be trained and empty"),
        (shards.to_bytes(faiss.index_factory(8, "IVF4,Flat")), 8, "", "must be trained and empty"),
        (_trained(faiss.index_factory(8, "IVF4,Flat")), 8, "", "its metric is L2"),  # the default metric
        (_trained(faiss.index_factory(8, "Flat", faiss.METRIC_INNER_PRODUCT)), 8, "", "stores no offer ids"),
    ]
    for data, dim, sha, message in cases:
        with pytest.raises(ConfigError, match=message):
            shards.check_quantizer(data, "q.faiss", dim, sha)
