"""Ingest on Spark: raw offers and events -> validated tables + quarantined rows with their reason.

The same rules as ``retrieval.ingest.rules`` (the pure reference, checked against this module by a
parity test), as Column expressions. Nothing is dropped silently: every raw row ends up accepted,
quarantined with a reason, or counted as an exact duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retrieval import tables
from retrieval.config import IngestSection
from retrieval.evaluation import NO_ITEM
from retrieval.ingest import rules

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


RAW_TEXT = "_raw"  # a quarantined row's original text, where it had no parsed columns (quarantine_rows)


@dataclass
class IngestResult:
    accepted: DataFrame  # the validated table (its contract's columns and types)
    quarantined: DataFrame  # raw columns + ``reason``
    counts: dict[str, int] = field(
        default_factory=dict
    )  # rows_in, rows_accepted, rows_quarantined, rows_duplicate
    reasons: dict[str, int] = field(default_factory=dict)  # quarantined rows per reason


def _first_reason(checks: list[tuple[Column, str]]) -> Column:
    from pyspark.sql import functions as F

    expr = None
    for cond, reason in checks:
        expr = F.when(cond, F.lit(reason)) if expr is None else expr.when(cond, F.lit(reason))
    assert expr is not None
    return expr.otherwise(F.lit(None).cast("string"))


def _dedupe(df: DataFrame, columns: list[str]) -> tuple[DataFrame, DataFrame]:
    """Exact duplicates over ``columns``: (one row per distinct row, per-group duplicate counts)."""
    from pyspark.sql import functions as F

    grouped = df.groupBy(*columns).agg(F.count(F.lit(1)).alias("_n"))
    return grouped, grouped.where(F.col("_n") > 1).select((F.col("_n") - 1).alias("_dups"))


def _count_by_reason(bad: DataFrame) -> dict[str, int]:
    return {r["reason"]: int(r["count"]) for r in bad.groupBy("reason").count().collect()}


def _bad_text(col: Column, max_chars: int) -> Column:
    from pyspark.sql import functions as F

    return col.isNotNull() & (~F.is_valid_utf8(col) | (F.length(col) > max_chars))


def ingest_offers(raw: DataFrame, cfg: IngestSection = rules.DEFAULT_LIMITS) -> IngestResult:
    """Validates raw offers: null keys, reserved ids, bad prices, bad timestamps, bad titles ->
    quarantine; exact duplicates -> removed and counted; several versions of one offer_id -> the latest
    ``updated_at`` wins, the older ones are quarantined as ``duplicate_key``."""
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cols = tables.RAW_OFFERS.column_names
    price = F.col("price")
    staged = (
        raw.withColumn("_ts", F.try_to_timestamp(F.col("updated_at")))
        .withColumn(
            "reason",
            _first_reason(
                [
                    (F.col("offer_id").isNull(), rules.NULL_KEY),
                    (F.col("offer_id") == F.lit(NO_ITEM), rules.BAD_ID),
                    (
                        price.isNotNull() & (F.isnan(price) | (price < 0) | (F.abs(price) == float("inf"))),
                        rules.BAD_PRICE,
                    ),
                    (F.col("updated_at").isNotNull() & F.col("_ts").isNull(), rules.BAD_TS),
                    (_bad_text(F.col("title"), cfg.max_text_chars), rules.BAD_TEXT),
                ]
            ),
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    rows_in = staged.count()
    bad_rows = staged.where(F.col("reason").isNotNull()).select(*cols, "reason")
    distinct, dups = _dedupe(staged.where(F.col("reason").isNull()).select(*cols, "_ts"), [*cols, "_ts"])
    rows_duplicate = int(dups.agg(F.coalesce(F.sum("_dups"), F.lit(0))).first()[0])  # type: ignore[index]
    latest = Window.partitionBy("offer_id").orderBy(
        F.col("_ts").desc_nulls_last(), *[F.col(c).asc_nulls_last() for c in cols if c != "offer_id"]
    )
    ranked = distinct.withColumn("_rank", F.row_number().over(latest)).persist(StorageLevel.MEMORY_AND_DISK)
    superseded = ranked.where(F.col("_rank") > 1).select(*cols, F.lit(rules.DUPLICATE_KEY).alias("reason"))
    quarantined = bad_rows.unionByName(superseded)
    accepted = ranked.where(F.col("_rank") == 1).select(
        *[
            F.col(c) if c != "updated_at" else F.col("_ts").alias("updated_at")
            for c in tables.OFFERS.column_names
        ]
    )
    reasons = _count_by_reason(quarantined)
    n_accepted = accepted.count()
    counts = {
        "rows_in": rows_in,
        "rows_accepted": n_accepted,
        "rows_quarantined": sum(reasons.values()),
        "rows_duplicate": rows_duplicate,
    }
    return IngestResult(accepted, quarantined, counts, reasons)


def ingest_events(raw: DataFrame, offers: DataFrame, cfg: IngestSection) -> IngestResult:
    """Validates raw events against the accepted ``offers`` (see ``rules`` for the order of the rules)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    cols = tables.RAW_EVENTS.column_names
    known = offers.select(F.col("offer_id").alias("_known")).distinct()
    event, listing = F.col("event"), F.col("listing")
    # Row-level rules that need no other table; the time range is centred on the log's busiest day.
    timed = raw.withColumn("_ts", F.try_to_timestamp(F.col("ts")))
    busiest = (
        timed.where(F.col("_ts").isNotNull())
        .groupBy(F.to_date("_ts").alias("day"))
        .count()
        .orderBy(F.desc("count"), "day")
        .first()
    )
    out_of_range = (
        F.abs(F.datediff(F.to_date("_ts"), F.lit(busiest["day"]))) > cfg.ts_spread_days
        if busiest is not None and cfg.ts_spread_days
        else F.lit(False)
    )

    def blank(c: str) -> Column:
        return F.col(c).isNull() | F.col(c).rlike(rules.BLANK)

    pre = timed.withColumn(
        "_pre",
        _first_reason(
            [
                (blank("session_id") | event.isNull(), rules.NULL_KEY),
                (event.isin(*rules.OFFER_EVENTS) & F.col("offer_id").isNull(), rules.NULL_KEY),
                ((event == "search") & blank("query_id"), rules.NULL_KEY),
                (~event.isin(*rules.EVENT_TYPES), rules.BAD_EVENT),
                (F.col("_ts").isNull() | F.col("ts").rlike(rules.TZ_OFFSET), rules.BAD_TS),
                (out_of_range, rules.TS_OUT_OF_RANGE),
                (_bad_text(F.col("query_text"), cfg.max_text_chars), rules.BAD_TEXT),
                (
                    (event == "search")
                    & (
                        listing.isNull()
                        | (F.size(listing) == 0)
                        | (F.size(listing) > cfg.max_listing)
                        | F.exists(listing, lambda x: x.isNull())
                    ),
                    rules.BAD_LISTING,
                ),
                (F.col("position").isNotNull() & (F.col("position") < 1), rules.BAD_POSITION),
            ]
        ),
    )
    # Unknown offers: a row's own offer_id, or any entry of a search's listing. Rows are keyed by a
    # 96-bit hash of their content (exact duplicates share it, and share the verdict too).
    pre = (
        pre.withColumn("_k1", F.xxhash64(*cols))
        .withColumn("_k2", F.hash(*cols))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    ok = pre.where(F.col("_pre").isNull())
    unknown_own = (
        ok.where(F.col("offer_id").isNotNull())
        .join(known, F.col("offer_id") == F.col("_known"), "left_anti")
        .select("_k1", "_k2")
    )
    unknown_listed = (
        ok.where(event == "search")
        .select("_k1", "_k2", F.explode(listing).alias("_o"))
        .join(known, F.col("_o") == F.col("_known"), "left_anti")
        .select("_k1", "_k2")
    )
    unknown = unknown_own.unionByName(unknown_listed).distinct().withColumn("_unknown", F.lit(True))
    staged = (
        pre.join(unknown, ["_k1", "_k2"], "left")
        .withColumn(
            "reason", F.coalesce(F.col("_pre"), F.when(F.col("_unknown"), F.lit(rules.UNKNOWN_OFFER)))
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    rows_in = staged.count()
    bad_rows = staged.where(F.col("reason").isNotNull()).select(*cols, "reason")
    distinct, dups = _dedupe(staged.where(F.col("reason").isNull()).select(*cols, "_ts"), [*cols, "_ts"])
    rows_duplicate = int(dups.agg(F.coalesce(F.sum("_dups"), F.lit(0))).first()[0])  # type: ignore[index]
    # Different searches under one query_id (after de-duplication): all of them are ambiguous.
    conflicts = (
        distinct.where(event == "search")
        .groupBy("query_id")
        .count()
        .where(F.col("count") > 1)
        .select("query_id", F.lit(True).alias("_conflict"))
    )
    marked = distinct.join(conflicts, "query_id", "left")
    conflict_rows = marked.where(F.col("_conflict") & (event == "search")).select(
        *cols, F.lit(rules.DUPLICATE_QUERY).alias("reason")
    )
    distinct = marked.where(~(F.coalesce(F.col("_conflict"), F.lit(False)) & (event == "search"))).drop(
        "_conflict"
    )
    # Bots: whole sessions, judged on the rows that survived the row-level rules and de-duplication.
    seconds = F.col("_last").cast("double") - F.col("_first").cast("double")
    rate = F.col("_n") / (F.greatest(seconds, F.lit(1.0)) / 60.0)
    bots = (
        distinct.groupBy("session_id")
        .agg(F.count(F.lit(1)).alias("_n"), F.min("_ts").alias("_first"), F.max("_ts").alias("_last"))
        .where(
            (F.col("_n") > cfg.max_session_events)
            | ((F.col("_n") >= cfg.min_events_for_rate) & (rate > cfg.max_events_per_minute))
        )
        .select("session_id", F.lit(True).alias("_bot"))
    )
    judged = distinct.drop("_n").join(bots, "session_id", "left").persist(StorageLevel.MEMORY_AND_DISK)
    bot_rows = judged.where(F.col("_bot")).select(*cols, F.lit(rules.BOT_SESSION).alias("reason"))
    quarantined = bad_rows.unionByName(conflict_rows).unionByName(bot_rows)
    accepted = judged.where(F.col("_bot").isNull()).select(
        *[F.col(c) if c != "ts" else F.col("_ts").alias("ts") for c in tables.EVENTS.column_names]
    )
    reasons = _count_by_reason(quarantined)
    counts = {
        "rows_in": rows_in,
        "rows_accepted": accepted.count(),
        "rows_quarantined": sum(reasons.values()),
        "rows_duplicate": rows_duplicate,
    }
    return IngestResult(accepted, quarantined, counts, reasons)


def with_unparsable(result: IngestResult, unparsable: DataFrame | None) -> IngestResult:
    """``result`` with the records that did not parse (``spark_read``: raw columns and their original
    text in ``_unparsable``) counted in and quarantined, reason ``unparsable``, their text as the raw row."""
    from pyspark.sql import functions as F

    from retrieval.ingest.spark_read import UNPARSABLE

    if unparsable is None:
        return result
    n = unparsable.count()
    if n == 0:
        return result
    bad = unparsable.select(
        *[F.col(c) for c in result.quarantined.columns if c != "reason"],
        F.lit(rules.UNPARSABLE).alias("reason"),
        F.col(UNPARSABLE).alias(RAW_TEXT),
    )
    quarantined = result.quarantined.withColumn(RAW_TEXT, F.lit(None).cast("string")).unionByName(bad)
    counts = {**result.counts, "rows_in": result.counts["rows_in"] + n}
    counts["rows_quarantined"] += n
    reasons = dict(sorted({**result.reasons, rules.UNPARSABLE: n}.items()))
    return IngestResult(result.accepted, quarantined, counts, reasons)


def check_accounting(name: str, result: IngestResult) -> None:
    """Raises if rows were lost: rows_in must equal accepted + quarantined + duplicate."""
    c = result.counts
    if c["rows_in"] != c["rows_accepted"] + c["rows_quarantined"] + c["rows_duplicate"]:
        raise AssertionError(
            f"ingest of {name} lost rows: rows_in={c['rows_in']} but accepted={c['rows_accepted']} + "
            f"quarantined={c['rows_quarantined']} + duplicate={c['rows_duplicate']}"
        )
