"""Offline evaluation on Spark that every candidate stage shares: sampled test queries and the
baselines every method is set beside (item co-occurrence, popularity), on the same queries.

Queries are a bounded hash sample of test query offers with their test partners (the driver holds
them and their top-K, never the catalogue); the pure metrics are ``retrieval.evaluation``'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def with_ids(df: DataFrame, column: str, ids: Iterable[int]) -> DataFrame:
    """The rows of ``df`` whose ``column`` is one of ``ids`` (a bounded set): a broadcast join, not an
    ``isin`` of thousands of literals, which Spark plans and ships slowly."""
    import pandas as pd
    from pyspark.sql import functions as F

    spark = df.sparkSession
    wanted = spark.createDataFrame(pd.DataFrame({column: np.asarray(sorted(set(ids)), dtype=np.int64)}))
    return df.join(F.broadcast(wanted), column)


def sample_queries(pairs: DataFrame, n: int, seed: int) -> tuple[np.ndarray, list[set[int]]]:
    """Up to ``n`` test query offers (a hash sample, so reruns agree) and their test partners."""
    from pyspark.sql import functions as F

    rows = (
        pairs.where(F.col("split") == "test")
        .groupBy("query_offer_id")
        .agg(F.collect_set("item_offer_id").alias("items"))
        .orderBy(F.xxhash64("query_offer_id", F.lit(seed)), "query_offer_id")
        .limit(n)
        .collect()
    )
    return np.array([r["query_offer_id"] for r in rows], dtype=np.int64), [set(r["items"]) for r in rows]


def warm_offers(pairs: DataFrame, min_pairs: int = 1) -> DataFrame:
    """Offers with at least ``min_pairs`` training pairs (pairs run both ways, so as query and as item
    alike): the ones whose id embedding has been trained (``encoder.min_id_pairs``)."""
    from pyspark.sql import functions as F

    train = pairs.where(F.col("split") == "train").select(F.col("query_offer_id").alias("offer_id"))
    if min_pairs <= 1:
        return train.distinct()
    return train.groupBy("offer_id").count().where(F.col("count") >= min_pairs).select("offer_id")


def cooccurrence_top_k(pairs: DataFrame, query_ids: np.ndarray, k: int) -> np.ndarray:
    """Items ranked by training co-occurrence weight with the query offer: [Q, k] (-1 padding)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pos = {int(q): i for i, q in enumerate(query_ids)}
    rows = (
        with_ids(pairs.where(F.col("split") == "train"), "query_offer_id", pos)
        .withColumn(
            "_r",
            F.row_number().over(
                Window.partitionBy("query_offer_id").orderBy(F.desc("weight"), "item_offer_id")
            ),
        )
        .where(F.col("_r") <= k)
        .collect()
    )
    out = np.full((len(query_ids), k), -1, dtype=np.int64)
    for r in rows:
        out[pos[r["query_offer_id"]], r["_r"] - 1] = r["item_offer_id"]
    return out


def popularity_top_k(pairs: DataFrame, query_ids: np.ndarray, k: int) -> np.ndarray:
    """The most frequent training positives, the same list for every query (minus the query itself)."""
    from pyspark.sql import functions as F

    top = [
        r["item_offer_id"]
        for r in pairs.where(F.col("split") == "train")
        .groupBy("item_offer_id")
        .count()
        .orderBy(F.desc("count"), "item_offer_id")
        .limit(k + 1)
        .collect()
    ]
    return np.array(
        [[x for x in top if x != q][:k] + [-1] * max(0, k - len(top) + 1) for q in query_ids], dtype=np.int64
    )[:, :k]


def recs_recall(
    recs: DataFrame,
    pairs: DataFrame,
    keys: DataFrame,
    n_queries: int,
    seed: int,
    k: int = 20,
    ceiling: Any = None,
    ceiling_queries: int = 1000,
) -> dict[str, Any]:
    """Recall@k of the recs, co-occurrence and popularity on sampled test query offers, against their
    test co-click partners that are another product (same product = not a recommendation).

    ``product``: a hit is a recommended offer of the partner's product (the carousel shows one offer
    per product, so this is what it can get right); ``offer``: the partner offer itself. ``keys``:
    (offer_id, key) product keys (``index.spark_index.product_keys``). ``ceiling`` (query ids [S], k ->
    {"ceiling": [S, k] ids}): the generator's own carousels on synthetic data, scored on the first
    ``ceiling_queries`` queries, where every method's Recall@k by product is also set beside the
    ceiling's (``share_of_ceiling``)."""
    from pyspark.sql import functions as F

    from retrieval.evaluation import recall_at_k

    queries, targets = sample_queries(pairs, n_queries, seed)
    if len(queries) == 0:
        return {"product": {"recs": None}, "offer": {"recs": None}}
    got = {
        int(row["offer_id"]): [int(x) for x in row["ids"]]
        for row in with_ids(recs, "offer_id", queries.tolist())
        .select("offer_id", F.col("recs.offer_id").alias("ids"))
        .collect()
    }
    ranked = {"recs": np.array([(got.get(int(q), []) + [-1] * k)[:k] for q in queries])}
    ranked["cooccurrence"] = cooccurrence_top_k(pairs, queries, k)
    ranked["popularity"] = popularity_top_k(pairs, queries, k)
    on = np.zeros(len(queries), dtype=bool)
    if ceiling is not None:
        on[:ceiling_queries] = True
        best = np.full((len(queries), k), -1, dtype=np.int64)
        best[on] = ceiling(queries[on], k)["ceiling"]
        ranked["ceiling"] = best
    ids = {int(q) for q in queries} | {int(t) for ts in targets for t in ts}
    ids |= {int(x) for r_ in ranked.values() for x in r_.reshape(-1) if x >= 0}
    key = {int(r["offer_id"]): r["key"] for r in with_ids(keys, "offer_id", ids).collect()}
    targets = [
        {t for t in ts if key.get(t) != key.get(int(q))} for q, ts in zip(queries, targets, strict=True)
    ]
    has = np.array([bool(t) for t in targets])

    def by_product(r_: np.ndarray, rows: np.ndarray) -> float | None:
        hits = []
        for row, ts in zip(r_[rows], [targets[i] for i in np.flatnonzero(rows)], strict=True):
            want = {key.get(t, f"o{t}") for t in ts}
            shown = {key.get(int(x), f"o{x}") for x in row[:k] if x >= 0}
            hits.append(len(want & shown) / len(want))
        return round(float(np.mean(hits)), 4) if hits else None

    out: dict[str, Any] = {"product": {}, "offer": {}}
    everywhere = np.ones(len(queries), dtype=bool)
    for name, r_ in ranked.items():
        rows = on if name == "ceiling" else everywhere
        out["offer"][name] = round(recall_at_k(r_[rows], [targets[i] for i in np.flatnonzero(rows)], k), 4)
        out["product"][name] = by_product(r_, rows & has)
    if ceiling is not None:
        top = out["product"]["ceiling"]
        out["share_of_ceiling"] = {
            name: round(v / top, 4) if (v := by_product(r_, on & has)) is not None and top else None
            for name, r_ in ranked.items()
            if name != "ceiling"
        }
        out["ceiling_queries"] = int((on & has).sum())
    return out


def duplicate_products(recs: DataFrame, truth: DataFrame) -> dict[str, float | int]:
    """How often a carousel shows one true product twice (synthetic data: ``truth/offer_product``): the
    share of carousels with a repeated product, and the slots such repeats take per carousel. What the
    product collapse misses, mostly offers whose ``product_id`` the catalogue leaves null."""
    from pyspark.sql import functions as F

    shown = recs.select("offer_id", F.explode("recs.offer_id").alias("shown"))
    products = truth.select(F.col("offer_id").alias("shown"), "product_id")
    per = (
        shown.join(products, "shown")
        .groupBy("offer_id")
        .agg(F.count("*").alias("slots"), F.countDistinct("product_id").alias("distinct"))
    )
    row = per.agg(
        F.count("*").alias("carousels"),
        F.avg((F.col("slots") > F.col("distinct")).cast("double")).alias("share"),
        F.avg(F.col("slots") - F.col("distinct")).alias("repeats"),
    ).first()
    if not row or not row["carousels"]:
        return {"carousels": 0, "share": 0.0, "repeated_slots": 0.0}
    return {
        "carousels": int(row["carousels"]),
        "share": round(float(row["share"]), 4),
        "repeated_slots": round(float(row["repeats"]), 3),
    }


def matching_quality(offers: DataFrame, keys: DataFrame, truth: DataFrame) -> dict[str, Any]:
    """How well offers without a product_id were matched to the catalogue's products
    (``index.matching``), against the generator's truth (``truth/offer_product``): precision (matches
    to the right product, of all matches) and recall (of the offers whose product the catalogue knows
    through another offer), overall and by how they were matched."""
    from pyspark.sql import functions as F

    true = truth.select("offer_id", F.col("product_id").alias("_true"))
    known = (
        offers.where(F.col("product_id").isNotNull())
        .select(F.col("product_id").alias("_true"))
        .distinct()
        .withColumn("_known", F.lit(True))
    )
    rows = (
        offers.where(F.col("product_id").isNull())
        .select("offer_id")
        .join(keys.select("offer_id", "key", "matched_by"), "offer_id")
        .join(true, "offer_id")
        .join(known, "_true", "left")
        .withColumn("_right", F.col("key") == F.concat(F.lit("p"), F.col("_true").cast("string")))
        .groupBy("matched_by")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(F.col("_right").cast("int")).alias("right"),
            F.sum(F.coalesce(F.col("_known"), F.lit(False)).cast("int")).alias("matchable"),
        )
        .collect()
    )
    by = {r["matched_by"]: r for r in rows}
    matched = sum(r["n"] for m, r in by.items() if m is not None)
    right = sum(r["right"] for m, r in by.items() if m is not None)
    matchable = sum(r["matchable"] for r in rows)
    return {
        "offers_without_product_id": sum(r["n"] for r in rows),
        "matchable": matchable,
        "matched": {m: r["n"] for m, r in by.items() if m is not None},
        "precision": round(right / matched, 4) if matched else None,
        "precision_by": {m: round(r["right"] / r["n"], 4) for m, r in by.items() if m is not None and r["n"]},
        "recall": round(right / matchable, 4) if matchable else None,
    }


def collapse_quality(recs: DataFrame, offers: DataFrame, keys: DataFrame, truth: DataFrame) -> dict[str, Any]:
    """The product collapse graded by the generator's truth: {"duplicates": :func:`duplicate_products`,
    "matching": :func:`matching_quality`}."""
    return {"duplicates": duplicate_products(recs, truth), "matching": matching_quality(offers, keys, truth)}
