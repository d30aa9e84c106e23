"""Table contracts on Spark: validation messages, missing tables, atomic writes, quarantine rows."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from retrieval import tables
from retrieval.spark_tables import TableError, quarantine_rows, read_table, validate, write_table

pytestmark = pytest.mark.spark

TINY = tables.Contract("tiny", tables._c("id bigint, name string?"), producer="a test")


def test_contract_parses_nested_types() -> None:
    recs = tables.RECS.columns[1]
    assert recs.dtype == "array<struct<offer_id:bigint,score:float>>" and not recs.nullable
    assert not tables.EVENTS.columns[0].nullable and tables.EVENTS.columns[3].nullable


def test_validate_names_table_column_and_type(spark: Any) -> None:
    df = spark.createDataFrame([("s", "2026-10-01", "view")], "session_id string, ts string, event string")
    with pytest.raises(TableError) as e:
        validate(df, tables.EVENTS)
    msg = str(e.value)
    assert "table 'events'" in msg
    assert "column 'ts' has type string, expected timestamp" in msg
    assert "column 'listing' is missing (expected array<bigint>)" in msg


def test_write_rejects_unexpected_columns(spark: Any, tmp_path: Path) -> None:
    df = spark.createDataFrame([(1, "a", 2)], "id bigint, name string, extra int")
    with pytest.raises(TableError, match=r"unexpected columns \['extra'\]"):
        write_table(df, str(tmp_path), TINY)


def test_missing_table_names_table_and_producer(spark: Any, tmp_path: Path) -> None:
    with pytest.raises(
        TableError, match=r"table 'raw/events' not found at file://.*raw/events; it is written by"
    ):
        read_table(spark, str(tmp_path), tables.RAW_EVENTS)


def test_write_replaces_atomically_and_leaves_no_temporaries(spark: Any, tmp_path: Path) -> None:
    root = str(tmp_path)
    write_table(spark.createDataFrame([(1, "a")], TINY.ddl()), root, TINY)
    write_table(spark.createDataFrame([(2, "b"), (3, None)], TINY.ddl()), root, TINY)
    assert sorted(read_table(spark, root, TINY).collect()) == [(2, "b"), (3, None)]
    assert os.listdir(tmp_path) == ["tiny"]


def test_leftovers_of_a_killed_writer_are_cleaned_and_recovered(spark: Any, tmp_path: Path) -> None:
    root = str(tmp_path)
    write_table(spark.createDataFrame([(1, "a")], TINY.ddl()), root, TINY)
    # a writer killed mid-write leaves a temporary sibling: readers ignore it, the next write removes it
    (tmp_path / ".tiny.tmp-dead").mkdir()
    (tmp_path / ".tiny.tmp-dead" / "part-0.parquet").write_bytes(b"half a file")
    assert read_table(spark, root, TINY).collect() == [(1, "a")]
    # a writer killed between its two renames leaves the previous table aside: readers put it back
    os.rename(tmp_path / "tiny", tmp_path / ".tiny.old-dead")
    assert read_table(spark, root, TINY).collect() == [(1, "a")]
    write_table(spark.createDataFrame([(5, "e")], TINY.ddl()), root, TINY)
    assert sorted(os.listdir(tmp_path)) == ["tiny"]


def test_quarantine_rows_keep_the_raw_row_and_reason(spark: Any) -> None:
    bad = spark.createDataFrame(
        [(None, "x", "null_key"), (7, None, "bad_price")], "id bigint, name string, reason string"
    )
    q = quarantine_rows(bad, ["id", "name"], "ingest")
    validate(q, tables.quarantine("offers"), exact=True)
    rows = sorted(q.collect(), key=lambda r: r.reason)
    assert [json.loads(r.raw) for r in rows] == [{"id": 7, "name": None}, {"id": None, "name": "x"}]
    assert [r.reason for r in rows] == ["bad_price", "null_key"] and {r.job for r in rows} == {"ingest"}
    assert all(r.ts is not None for r in rows)
