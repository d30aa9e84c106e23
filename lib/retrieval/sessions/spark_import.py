"""Imports a session dataset folder (SR-GNN format, see :mod:`retrieval.sessions.benchmark`) into our
``offers`` and ``events`` tables, and reads it back for the benchmark.

The files have item ids only, no clock: every click becomes a ``view`` event whose ``ts`` is its
position in the session (seconds after the epoch), and the split is the one the files give, kept in
the session id: line n of ``train_sessions.txt`` is session ``train-<n>``; line n of
``test_prefix_label.tsv`` is session ``test-<n>`` holding the prefix followed by the label (its last
event is what the benchmark predicts). ``offers`` gets one id-only row per item. A line that is not
a list of integer ids goes to ``quarantine/events`` with its reason; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from retrieval import storage, tables
from retrieval.evaluation import NO_ITEM
from retrieval.spark_tables import quarantine_rows, read_table, write_quarantine, write_table

TRAIN_FILE = "train_sessions.txt"
TEST_FILE = "test_prefix_label.tsv"
_INTS = r"^\s*-?\d+(\s+-?\d+)*\s*$"


def _numbered(spark: SparkSession, path: str) -> DataFrame:
    """The file's lines with their 1-based line number (``line``, ``value``)."""
    lines = spark.read.text(path).rdd.zipWithIndex()
    return spark.createDataFrame(lines.map(lambda r: (r[1] + 1, r[0][0])), "line long, value string")


def import_sessions(
    spark: SparkSession, folder: str, root: str, job: str = "eval_sessions"
) -> dict[str, Any]:
    """Writes ``offers``, ``events`` and ``quarantine/events`` under ``root``; returns the counts."""
    for name in (TRAIN_FILE, TEST_FILE):
        if not storage.exists(storage.join(folder, name)):
            raise FileNotFoundError(
                f"{storage.join(folder, name)} not found: a session dataset folder needs {TRAIN_FILE} and {TEST_FILE}"
            )
    train = _numbered(spark, storage.join(folder, TRAIN_FILE)).where(F.trim("value") != "")
    train = train.select(
        F.format_string("train-%09d", "line").alias("session_id"), "value", F.col("value").alias("items")
    )
    test = _numbered(spark, storage.join(folder, TEST_FILE))
    header = test.where(F.col("line") == 1).select("value").first()
    if header is None or header["value"].rstrip("\r") != "prefix\tlabel":
        raise ValueError(f"{storage.join(folder, TEST_FILE)}: header must be 'prefix<TAB>label'")
    test = test.where((F.col("line") > 1) & (F.trim("value") != ""))
    parts = F.split("value", "\t")
    test = test.select(
        F.format_string("test-%09d", "line").alias("session_id"),
        "value",
        # a test example needs a non-empty prefix and one label
        F.when(
            (F.size(parts) == 2) & (F.trim(parts[0]) != "") & ~F.trim(parts[1]).contains(" "),
            F.concat_ws(" ", parts[0], parts[1]),
        ).alias("items"),
    )
    lines = train.unionByName(test)
    # integers that fit int64 (one past it would stop the job at the cast under ANSI mode), never the
    # id that pads results
    fits = F.forall(
        F.split(F.trim("items"), r"\s+"),
        lambda t: t.try_cast("long").isNotNull() & (t.try_cast("long") != F.lit(NO_ITEM)),
    )
    valid = F.col("items").isNotNull() & F.col("items").rlike(_INTS) & fits
    bad = lines.where(~valid).select(
        F.col("session_id"), F.col("value").alias("line"), F.lit("bad_session_line").alias("reason")
    )
    events = (
        lines.where(valid)
        .select("session_id", F.posexplode(F.split(F.trim("items"), r"\s+")).alias("pos", "item"))
        .select(
            "session_id",
            F.timestamp_seconds(F.col("pos").cast("long")).alias("ts"),
            F.lit("view").alias("event"),
            F.col("item").cast("long").alias("offer_id"),
            F.lit(None).cast("string").alias("query_id"),
            F.lit(None).cast("string").alias("query_text"),
            F.lit(None).cast(T.ArrayType(T.LongType())).alias("listing"),
            F.lit(None).cast("int").alias("position"),
        )
    )
    uris = {"events": write_table(events, root, tables.EVENTS)}
    events = read_table(spark, root, tables.EVENTS)
    offers = (
        events.select("offer_id")
        .distinct()
        .select(
            "offer_id",
            *[F.lit(None).cast(c.dtype).alias(c.name) for c in tables.OFFERS.columns if c.name != "offer_id"],
        )
    )
    uris["offers"] = write_table(offers.coalesce(max(1, events.rdd.getNumPartitions())), root, tables.OFFERS)
    uris["quarantine/events"] = write_quarantine(
        quarantine_rows(bad, ["session_id", "line"], job).coalesce(1), root, "events"
    )
    by_split = {
        r["split"]: (int(r["sessions"]), int(r["events"]))
        for r in events.groupBy(F.split("session_id", "-")[0].alias("split"))
        .agg(F.countDistinct("session_id").alias("sessions"), F.count("*").alias("events"))
        .collect()
    }
    return {
        "outputs": uris,
        "train_sessions": by_split.get("train", (0, 0))[0],
        "test_examples": by_split.get("test", (0, 0))[0],
        "events": sum(e for _, e in by_split.values()),
        "items": read_table(spark, root, tables.OFFERS).count(),
        "quarantined_lines": read_table(spark, root, tables.quarantine("events")).count(),
    }


@dataclass
class Sessions:
    """A session dataset read back from the tables, items as dense indices 1..n (0 = padding)."""

    train: list[list[int]]
    prefixes: list[list[int]]
    labels: np.ndarray
    item_ids: np.ndarray  # [n] the original offer id of dense index i + 1


def read_sessions(spark: SparkSession, root: str) -> Sessions:
    """Sessions of the ``events`` table in click order, split by their id; test labels are their last event.

    Collects to the driver: the benchmark trains one process on it (session datasets of this kind are
    a few million clicks). Test sessions come back in line order.
    """
    events = read_table(spark, root, tables.EVENTS)
    per_session: Any = (
        events.groupBy("session_id")
        .agg(F.sort_array(F.collect_list(F.struct("ts", "offer_id"))).alias("clicks"))
        .select("session_id", F.col("clicks.offer_id").alias("items"))
        .orderBy("session_id")
        .toPandas()
    )
    item_ids = np.unique(np.concatenate(per_session["items"].to_numpy())) if len(per_session) else np.zeros(0)
    item_ids = item_ids.astype(np.int64)
    train, prefixes, labels = [], [], []
    for sid, items in zip(per_session["session_id"], per_session["items"], strict=True):
        dense = (np.searchsorted(item_ids, np.asarray(items, dtype=np.int64)) + 1).tolist()
        if sid.startswith("train-"):
            train.append(dense)
        elif len(dense) >= 2:
            prefixes.append(dense[:-1])
            labels.append(dense[-1])
    return Sessions(train, prefixes, np.asarray(labels, dtype=np.int64), item_ids)
