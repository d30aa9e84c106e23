"""Co-interaction pairs on Spark: the semantics of ``retrieval.mining.pairs`` as DataFrame operations.

No per-session Python: the window of following interactions is ``lead(offer_id, k)`` for k in
1..window over one sorted window pass, so the work is O(events * window) and everything stays in the JVM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrieval.config import PairsSection, SplitSection
from retrieval.mining.pairs import cutoff_day

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def test_cutoff(events: DataFrame, split: SplitSection) -> str:
    """First day of the test split (``YYYY-MM-DD``), from the log's last event unless configured."""
    from pyspark.sql import functions as F

    if split.test_start:
        return cutoff_day("1970-01-01", split)
    last = events.agg(F.date_format(F.max("ts"), "yyyy-MM-dd").alias("d")).first()
    if last is None or last["d"] is None:
        raise ValueError("table 'events' is empty: no test split can be derived")
    return cutoff_day(str(last["d"]), split)


def session_splits(events: DataFrame, cutoff: str) -> DataFrame:
    """(session_id, split): a session is in the test split when it starts on or after ``cutoff``."""
    from pyspark.sql import functions as F

    return (
        events.groupBy("session_id")
        .agg(F.min("ts").alias("_start"))
        .select("session_id", split_of(F.col("_start"), cutoff).alias("split"))
    )


def split_of(start: Column, cutoff: str) -> Column:
    """ "test" for a session starting on or after the ``cutoff`` day, else "train"."""
    from pyspark.sql import functions as F

    return F.when(F.to_date(start) >= F.lit(cutoff).cast("date"), "test").otherwise("train")


def mine_pairs(events: DataFrame, cfg: PairsSection, cutoff: str) -> DataFrame:
    """The ``pairs`` table (query_offer_id, item_offer_id, weight, split) of an ``events`` table."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    weight_of = F.create_map(
        *[x for k, v in sorted(cfg.event_weights.items()) for x in (F.lit(k), F.lit(float(v)))]
    )
    session = Window.partitionBy("session_id")
    order = session.orderBy("ts", "event", "offer_id")
    # One shuffle by session: the session's start (over all its events) and the order of its interactions
    # come from window passes over the same partitioning; the per-session de-duplication below needs no
    # exchange either, so the only other shuffle is the final aggregation by pair.
    inter = (
        events.select("session_id", "ts", "event", "offer_id", F.min("ts").over(session).alias("_start"))
        .where(F.col("event").isin(*cfg.event_weights) & F.col("offer_id").isNotNull())
        .select(
            "session_id",
            "ts",
            "event",
            "offer_id",
            weight_of[F.col("event")].alias("_w"),
            split_of(F.col("_start"), cutoff).alias("split"),
        )
        .withColumn("_idx", F.row_number().over(order))
        .where(F.col("_idx") <= cfg.max_session_events)
    )
    # The next `window` interactions of each one (among the kept ones: the filter above runs first).
    following = F.array(
        *[
            F.struct(F.lead("offer_id", k).over(order).alias("o"), F.lead("_w", k).over(order).alias("w"))
            for k in range(1, cfg.window + 1)
        ]
    )
    per_session = (
        inter.withColumn("_next", following)  # windows cannot sit inside a generator: materialise first
        .select("session_id", "split", "offer_id", "_w", F.explode("_next").alias("_b"))
        .where(F.col("_b.o").isNotNull() & (F.col("_b.o") != F.col("offer_id")))
        .select(
            "session_id",
            "split",
            F.least("offer_id", "_b.o").alias("lo"),
            F.greatest("offer_id", "_b.o").alias("hi"),
            ((F.col("_w") + F.col("_b.w")) / 2.0).alias("w"),
        )
        .groupBy("session_id", "split", "lo", "hi")
        .agg(F.max("w").alias("w"))
    )
    totals = (
        per_session.groupBy("split", "lo", "hi")
        .agg(F.sum("w").alias("weight"), F.count(F.lit(1)).alias("support"))
        .where(
            F.col("support") >= F.when(F.col("split") == "train", F.lit(cfg.min_support)).otherwise(F.lit(1))
        )
    )
    forward = totals.select(
        F.col("lo").alias("query_offer_id"), F.col("hi").alias("item_offer_id"), "weight", "split"
    )
    backward = totals.select(
        F.col("hi").alias("query_offer_id"), F.col("lo").alias("item_offer_id"), "weight", "split"
    )
    return forward.unionByName(backward)


def partner_shares(pairs: DataFrame, truth: DataFrame, k: int = 10) -> dict[str, Any]:
    """How much planted structure the pairs recover (synthetic data, ``truth/offer_product``).

    For every query offer of the training pairs: the share of its top-``k`` partners (by weight, then
    id) of the same product, and of the same cluster, averaged over query offers; beside it, the same
    share for a partner drawn uniformly from all other offers (its exact expectation).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    t = truth.select("offer_id", "product_id", "cluster_id")
    n = truth.count()
    rank = Window.partitionBy("query_offer_id").orderBy(F.desc("weight"), "item_offer_id")
    top = (
        pairs.where(F.col("split") == "train")
        .withColumn("_r", F.row_number().over(rank))
        .where(F.col("_r") <= k)
    )
    q = t.select(
        F.col("offer_id").alias("query_offer_id"),
        F.col("product_id").alias("qp"),
        F.col("cluster_id").alias("qc"),
    )
    i = t.select(
        F.col("offer_id").alias("item_offer_id"),
        F.col("product_id").alias("ip"),
        F.col("cluster_id").alias("ic"),
    )
    per_query = (
        top.join(q, "query_offer_id")
        .join(i, "item_offer_id")
        .groupBy("query_offer_id", "qp", "qc")
        .agg(
            F.avg((F.col("qp") == F.col("ip")).cast("double")).alias("sp"),
            F.avg((F.col("qc") == F.col("ic")).cast("double")).alias("sc"),
        )
    )
    product_size = t.groupBy("product_id").agg(F.count(F.lit(1)).alias("np"))
    cluster_size = t.groupBy("cluster_id").agg(F.count(F.lit(1)).alias("nc"))
    row = (
        per_query.join(product_size.withColumnRenamed("product_id", "qp"), "qp")
        .join(cluster_size.withColumnRenamed("cluster_id", "qc"), "qc")
        .agg(
            F.avg("sp").alias("sp"),
            F.avg("sc").alias("sc"),
            F.avg((F.col("np") - 1) / F.lit(max(n - 1, 1))).alias("rp"),
            F.avg((F.col("nc") - 1) / F.lit(max(n - 1, 1))).alias("rc"),
            F.count(F.lit(1)).alias("queries"),
        )
        .first()
    )
    assert row is not None

    def r(x: Any) -> float | None:
        return None if x is None else round(float(x), 5)

    return {
        "same_product_at_10": r(row["sp"]),
        "random_same_product": r(row["rp"]),
        "same_cluster_at_10": r(row["sc"]),
        "random_same_cluster": r(row["rc"]),
        "query_offers_graded": int(row["queries"]),
    }
