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


def test_write_commits_a_new_version_and_keeps_one_before_it(spark: Any, tmp_path: Path) -> None:
    root = str(tmp_path)
    versions = []
    for rows in ([(1, "a")], [(2, "b"), (3, None)], [(4, "d")]):
        uri = write_table(spark.createDataFrame(rows, TINY.ddl()), root, TINY)
        versions.append(uri.rstrip("/").rsplit("/", 1)[-1])
        assert sorted(read_table(spark, root, TINY).collect()) == sorted(rows)
    assert len(set(versions)) == 3
    # retention: the committed version and the one it replaced (a reader of that one keeps it)
    assert sorted(os.listdir(tmp_path / "tiny")) == sorted(["CURRENT", versions[1], versions[2]])
    assert os.listdir(tmp_path) == ["tiny"]


def test_leftovers_of_a_killed_writer_are_ignored_then_cleaned(spark: Any, tmp_path: Path) -> None:
    root = str(tmp_path)
    write_table(spark.createDataFrame([(1, "a")], TINY.ddl()), root, TINY)
    # a writer killed before its pointer leaves a version nobody names: readers never see it
    (tmp_path / "tiny" / "v20990101T000000-dead").mkdir()
    (tmp_path / "tiny" / "v20990101T000000-dead" / "part-0.parquet").write_bytes(b"half a file")
    # and the earlier layout's writers left hidden siblings
    (tmp_path / ".tiny.tmp-dead").mkdir()
    assert read_table(spark, root, TINY).collect() == [(1, "a")]
    write_table(spark.createDataFrame([(5, "e")], TINY.ddl()), root, TINY)
    assert read_table(spark, root, TINY).collect() == [(5, "e")]
    assert "v20990101T000000-dead" not in os.listdir(tmp_path / "tiny")
    assert os.listdir(tmp_path) == ["tiny"]


def test_a_table_of_the_earlier_layout_is_read_then_replaced(spark: Any, tmp_path: Path) -> None:
    """Roots written before versions existed (parquet files directly in <root>/<table>) still read."""
    root = str(tmp_path)
    spark.createDataFrame([(1, "a")], TINY.ddl()).write.parquet(str(tmp_path / "tiny"))
    assert read_table(spark, root, TINY).collect() == [(1, "a")]
    write_table(spark.createDataFrame([(2, "b")], TINY.ddl()), root, TINY)
    assert read_table(spark, root, TINY).collect() == [(2, "b")]
    assert not [f for f in os.listdir(tmp_path / "tiny") if f.endswith(".parquet")]


def test_a_stage_commits_its_tables_together(spark: Any, tmp_path: Path) -> None:
    """Inside a transaction a stage reads what it wrote; others see none of it until the commit, and
    a stage that fails commits nothing."""
    from retrieval import commit

    root = str(tmp_path)
    other = tables.Contract("other", TINY.columns, producer="a test")
    write_table(spark.createDataFrame([(1, "a")], TINY.ddl()), root, TINY)
    write_table(spark.createDataFrame([(1, "a")], TINY.ddl()), root, other)
    with pytest.raises(RuntimeError), commit.transaction(root, "failing"):
        write_table(spark.createDataFrame([(2, "b")], TINY.ddl()), root, TINY)
        assert read_table(spark, root, TINY).collect() == [(2, "b")]  # its own write
        raise RuntimeError("the stage fails before its second table")
    assert read_table(spark, root, TINY).collect() == [(1, "a")]
    with commit.transaction(root, "ok"):
        write_table(spark.createDataFrame([(3, "c")], TINY.ddl()), root, TINY)
        write_table(spark.createDataFrame([(3, "c")], TINY.ddl()), root, other)
        assert commit.read_pointer(str(tmp_path / "tiny")) is not None
        assert read_table(spark, root, other).collect() == [(3, "c")]
    assert read_table(spark, root, TINY).collect() == read_table(spark, root, other).collect() == [(3, "c")]
    assert not os.path.exists(tmp_path / commit.COMMITS) or not os.listdir(tmp_path / commit.COMMITS)


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


def test_an_incremental_update_refuses_vectors_of_other_weights(spark: Any) -> None:
    """Embeddings name the weights version that made them: a delta from a retrained encoder cannot
    join them (their spaces differ), and the message says to rebuild in full."""
    from retrieval.config import ConfigError
    from retrieval.encoder.spark_embed import require_model

    emb = spark.createDataFrame([(1, [0.1], "w0123456789ab")], tables.EMBEDDINGS.ddl())
    require_model(emb, "w0123456789ab")
    with pytest.raises(
        ConfigError, match="cannot mix models; run embed_offers, build_index and precompute_recs in full"
    ):
        require_model(emb, "wfedcba987654")


def test_a_stage_run_inside_another_commits_with_its_own_metrics(spark: Any, tmp_path: Path) -> None:
    """cli.ensure_stage runs a stage inside another: the inner stage's outputs commit when it ends,
    with the metrics it writes then, so an outer stage that fails after it leaves no metrics that name
    uncommitted outputs (and commits none of its own)."""
    from conftest import make_config
    from retrieval import commit, stage_metrics
    from retrieval.cli import run_stage

    root = str(tmp_path)
    cfg = make_config(root, "tracking.enabled=false")

    def inner(spark: Any, cfg: Any) -> dict[str, Any]:
        write_table(spark.createDataFrame([(1, "inner")], TINY.ddl()), root, TINY)
        return {"rows_out": 1}

    def outer(spark: Any, cfg: Any) -> dict[str, Any]:
        run_stage(spark, cfg, "inner", inner)
        write_table(
            spark.createDataFrame([(2, "outer")], TINY.ddl()), root, tables.Contract("o", TINY.columns, "t")
        )
        raise RuntimeError("the outer stage fails after the inner one ran")

    with pytest.raises(RuntimeError):
        run_stage(spark, cfg, "outer", outer)
    assert read_table(spark, root, TINY).collect() == [(1, "inner")]
    assert stage_metrics.read_stage_metrics(root, "inner")["rows_out"] == 1
    assert commit.resolve(root, "o") is None
