"""Spark glue of the synthetic marketplace: every task generates its own blocks with its own seed.

A block of products (or of sessions) is a pure function of (config, seed, block id), so the data do
not depend on how many executors run it, and 100M+ events are just more tasks. The driver only
holds the config and aggregate statistics.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from retrieval import config, tables
from retrieval.synth.catalog import Catalog
from retrieval.synth.offers import OFFER_SCHEMA, generate_offers
from retrieval.synth.sessions import EVENT_SCHEMA, INJECTED_KINDS, SessionSimulator, examination

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# The union row type of the session generator's output: events, and truth rows (``_part`` says which).
_SESSION_OUT = pa.schema([*EVENT_SCHEMA, ("grade", pa.int32()), ("_part", pa.string())])


def _ddl(schema: pa.Schema) -> str:
    names = {
        pa.int64(): "bigint",
        pa.int32(): "int",
        pa.string(): "string",
        pa.float64(): "double",
        pa.bool_(): "boolean",
        pa.list_(pa.int64()): "array<bigint>",
    }
    return ", ".join(f"`{f.name}` {names[f.type]}" for f in schema)


def _offer_blocks(cfg_dict: dict[str, Any]) -> Any:
    def generate_products(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        cfg = config.from_dict(cfg_dict)
        cat = Catalog(cfg.synth, cfg.seed)
        step = cfg.synth.offers_per_task
        for batch in batches:
            for block in batch.column(0).to_pylist():
                lo, hi = block * step, min((block + 1) * step, cfg.synth.products)
                yield from generate_offers(cat, lo, hi, block).to_batches(max_chunksize=20000)

    return generate_products


def _session_blocks(cfg_dict: dict[str, Any]) -> Any:
    def simulate_sessions(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        cfg = config.from_dict(cfg_dict)
        sim = SessionSimulator(Catalog(cfg.synth, cfg.seed))
        step = cfg.synth.sessions_per_task
        for batch in batches:
            for block in batch.column(0).to_pylist():
                out = sim.simulate(block, block * step, min((block + 1) * step, cfg.synth.sessions))
                ev = out.events
                n = ev.num_rows
                ev = ev.append_column("grade", pa.nulls(n, pa.int32())).append_column(
                    "_part", pa.array(["event"] * n, pa.string())
                )
                rel = out.relevance
                m = rel.num_rows
                rel_rows = pa.table(
                    {f.name: pa.nulls(m, f.type) for f in _SESSION_OUT}
                    | {
                        "query_id": rel["query_id"],
                        "offer_id": rel["offer_id"],
                        "grade": rel["grade"],
                        "_part": pa.array(["relevance"] * m, pa.string()),
                    },
                    schema=_SESSION_OUT,
                )
                yield from pa.concat_tables([ev.cast(_SESSION_OUT), rel_rows]).to_batches(max_chunksize=50000)

    return simulate_sessions


@dataclass
class Generated:
    raw_offers: DataFrame
    raw_events: DataFrame
    truth_offer_product: DataFrame
    truth_relevance: DataFrame
    truth_examination: DataFrame
    _offers_all: DataFrame
    _sessions_all: DataFrame

    def unpersist(self) -> None:
        self._offers_all.unpersist()
        self._sessions_all.unpersist()


def generate(spark: SparkSession, cfg: config.Config) -> Generated:
    """Builds (lazily, cached once computed) every table of the synthetic marketplace."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    s = cfg.synth
    cfg_dict = dataclasses.asdict(cfg)
    n_pblocks = math.ceil(s.products / s.offers_per_task)
    n_sblocks = math.ceil(s.sessions / s.sessions_per_task)
    offers_all = (
        spark.range(n_pblocks, numPartitions=n_pblocks)
        .mapInArrow(_offer_blocks(cfg_dict), _ddl(OFFER_SCHEMA))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    sessions_all = (
        spark.range(n_sblocks, numPartitions=n_sblocks)
        .mapInArrow(_session_blocks(cfg_dict), _ddl(_SESSION_OUT))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    raw_offers = offers_all.select(*tables.RAW_OFFERS.column_names)
    truth_op = offers_all.where(F.col("_injected").isNull()).select(
        "offer_id",
        F.col("true_product_id").alias("product_id"),
        F.col("true_cluster_id").alias("cluster_id"),
        F.col("true_category_id").alias("category_id"),
    )
    events = sessions_all.where(F.col("_part") == "event")
    raw_events = events.select(*tables.RAW_EVENTS.column_names)
    truth_rel = sessions_all.where(F.col("_part") == "relevance").select("query_id", "offer_id", "grade")
    positions = np.arange(1, s.listing_max + 1)
    truth_exam = spark.createDataFrame(
        [
            (int(p), float(e))
            for p, e in zip(positions, examination(positions, s.examination_eta), strict=True)
        ],
        tables.TRUTH_EXAMINATION.ddl(),
    )
    return Generated(raw_offers, raw_events, truth_op, truth_rel, truth_exam, offers_all, sessions_all)


def injected_counts(gen: Generated) -> dict[str, int]:
    """Rows injected per kind (every kind listed, zeros included)."""
    from pyspark.sql import functions as F

    counts = dict.fromkeys(INJECTED_KINDS, 0)
    for df in (gen._offers_all, gen._sessions_all.where(F.col("_part") == "event")):
        for row in df.where(F.col("_injected").isNotNull()).groupBy("_injected").count().collect():
            counts[row["_injected"]] += int(row["count"])
    return counts


def planted_structure(gen: Generated, cfg: config.Config, max_position: int = 30) -> dict[str, Any]:
    """Plain statistics that show the planted structure: Zipf popularity, offers per product, CTR by position."""
    from pyspark.sql import functions as F

    s = cfg.synth
    clean = gen._sessions_all.where((F.col("_part") == "event") & F.col("_injected").isNull())
    # Offers per product (from the truth): the Zipf of sellers per product.
    per_product = gen.truth_offer_product.groupBy("product_id").count()
    opp = per_product.agg(
        F.avg("count").alias("mean"),
        F.max("count").alias("max"),
        F.avg((F.col("count") == 1).cast("double")).alias("share_single"),
        F.count("*").alias("products"),
    ).first()
    assert opp is not None
    # Popularity: events per product by rank, and the slope of log(count) against log(rank).
    top_n = max(10, min(300, s.products // 20))
    counts = (
        clean.where(F.col("offer_id").isNotNull())
        .join(gen.truth_offer_product.select("offer_id", "product_id"), "offer_id")
        .groupBy("product_id")
        .count()
        .orderBy(F.desc("count"))
        .limit(top_n)
        .collect()
    )
    c = np.array(sorted((r["count"] for r in counts), reverse=True), dtype=np.float64)
    ranks = np.arange(1, len(c) + 1)
    slope = float(-np.polyfit(np.log(ranks), np.log(c), 1)[0]) if len(c) >= 3 else float("nan")
    # Click-through rate by position: clicks at p over searches whose listing reaches p.
    searches = clean.where(F.col("event") == "search")
    impressions = searches.agg(
        *[F.sum((F.size("listing") >= p).cast("long")).alias(str(p)) for p in range(1, max_position + 1)]
    ).first()
    clicks: dict[int, int] = dict(
        clean.where((F.col("event") == "click") & (F.col("position") <= max_position))
        .groupBy("position")
        .count()
        .collect()
    )
    ctr = {
        str(p): round(clicks.get(p, 0) / impressions[str(p)], 5)
        if impressions and impressions[str(p)]
        else None
        for p in range(1, max_position + 1)
    }
    by_type: dict[str, int] = dict(clean.groupBy("event").count().collect())
    n_sessions = clean.select("session_id").distinct().count()
    return {
        "zipf": {
            "configured_a": s.zipf_a,
            "fitted_a": round(slope, 3),
            "ranks_fitted": len(c),
            "note": "slope of log(events per product) vs log(rank) over the top ranks",
        },
        "offers_per_product": {
            "mean": round(float(opp["mean"]), 3),
            "max": int(opp["max"]),
            "share_single": round(float(opp["share_single"]), 3),
            "configured_a": s.offers_per_product_a,
        },
        "ctr_by_position": ctr,
        "true_examination": {
            str(p): round(float(e), 5)
            for p, e in zip(
                range(1, max_position + 1),
                examination(np.arange(1, max_position + 1), s.examination_eta),
                strict=True,
            )
        },
        "events_by_type": {k: int(v) for k, v in sorted(by_type.items())},
        "sessions": int(n_sessions),
        "products": int(opp["products"]),
    }
