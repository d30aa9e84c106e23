"""The report's Spark parts: examples a person can judge by eye, read from the tables (recommendation
carousels and reranked listings, with titles and, on the synthetic marketplace, the ground truth
beside them), and the recommendations' popularity bias. ``report/sections.py`` renders them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from retrieval import tables
from retrieval.spark_tables import exists, read_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def carousels(
    spark: SparkSession,
    root: str,
    offer_ids: Sequence[int],
    limit: int = 3,
    served: Callable[[list[int]], dict[int, list[dict[str, Any]] | None]] | None = None,
) -> list[dict[str, Any]]:
    """Offers (``offer_ids``, or ``limit`` sampled ones with recs) and their recs, each as a dict:
    {offer_id, found, offer: {title, category_id, seller_id, product_id} | None, recs: [{offer_id, score,
    offer, same_cluster (None without ground truth)}]}. ``served``, if given, reads the carousels (the
    serving store: offer id -> [{offer_id, score}], None where it holds none) instead of the table."""
    from pyspark.sql import functions as F

    recs = read_table(spark, root, tables.RECS)
    offers = read_table(spark, root, tables.OFFERS).select(
        "offer_id", "title", "category_id", "seller_id", "product_id"
    )
    if not offer_ids:
        offer_ids = [
            r["offer_id"]
            for r in recs.where(F.size("recs") > 0)
            .orderBy(F.xxhash64("offer_id"), "offer_id")
            .limit(limit)
            .collect()
        ]
    if served is not None:
        rows = {o: rs for o, rs in served(list(offer_ids)).items() if rs is not None}
    else:
        rows = {
            r["offer_id"]: r["recs"] for r in recs.where(F.col("offer_id").isin(list(offer_ids))).collect()
        }
    wanted = set(offer_ids) | {x["offer_id"] for rs in rows.values() for x in rs}
    info = {r["offer_id"]: r.asDict() for r in offers.where(F.col("offer_id").isin(list(wanted))).collect()}
    cluster: dict[int, int] = {}
    if exists(root, tables.TRUTH_OFFER_PRODUCT):
        truth = read_table(spark, root, tables.TRUTH_OFFER_PRODUCT)
        cluster = {
            r["offer_id"]: r["cluster_id"]
            for r in truth.where(F.col("offer_id").isin(list(wanted))).collect()
        }
    out = []
    for oid in offer_ids:
        out.append(
            {
                "offer_id": oid,
                "found": oid in rows,
                "offer": info.get(oid),
                "recs": [
                    {
                        "offer_id": rec["offer_id"],
                        "score": float(rec["score"]),
                        "offer": info.get(rec["offer_id"]),
                        "same_cluster": (cluster.get(rec["offer_id"]) == cluster.get(oid))
                        if cluster
                        else None,
                    }
                    for rec in rows.get(oid, [])
                ],
            }
        )
    return out


def reranked_listings(
    spark: SparkSession, root: str, methods: Sequence[str], limit: int = 2, top: int = 10
) -> list[dict[str, Any]]:
    """``limit`` scored test listings (``ranker/test_scored``): the query text, and per method its top
    ``top`` offers as (title, logged label, true grade or None)."""
    from pyspark.sql import functions as F

    scored = read_table(spark, root, tables.RANKER_TEST_SCORED)
    picked = (
        scored.where(F.col("n") >= top).orderBy(F.xxhash64("query_id"), "query_id").limit(limit).collect()
    )
    listings = read_table(spark, root, tables.LISTINGS)
    texts = {
        r["query_id"]: r["query_text"]
        for r in listings.where(F.col("query_id").isin([p["query_id"] for p in picked]))
        .select("query_id", "query_text")
        .distinct()
        .collect()
    }
    ids = {o for p in picked for o in p["offer_id"]}
    titles = {
        r["offer_id"]: r["title"]
        for r in read_table(spark, root, tables.OFFERS).where(F.col("offer_id").isin(list(ids))).collect()
    }
    out = []
    for p in picked:
        n = len(p["offer_id"])
        ranked: dict[str, list[dict[str, Any]]] = {}
        for m in methods:
            if m == "production":
                order = sorted(range(n), key=lambda i: p["position"][i])
            elif m in p.asDict():
                s = p[m]
                order = sorted(range(n), key=lambda i: (-s[i], p["position"][i]))
            else:
                continue
            ranked[m] = [
                {
                    "title": titles.get(p["offer_id"][i]),
                    "position": p["position"][i],
                    "label": p["label"][i],
                    "grade": p["grade"][i] if p["grade"] is not None else None,
                }
                for i in order[:top]
            ]
        out.append({"query_id": p["query_id"], "query_text": texts.get(p["query_id"]), "ranked": ranked})
    return out


def examples(spark: SparkSession, root: str, m: dict[str, dict[str, Any]]) -> tuple[Any, Any]:
    """(3 carousels, 2 listings reranked by the best DNN beside the production order), each None where
    its stage has not run."""
    shown = None
    if "precompute_recs" in m and exists(root, tables.RECS):
        shown = carousels(spark, root, [], limit=3)
    listings = None
    rk = m.get("train_ranker")
    if rk and exists(root, tables.RANKER_TEST_SCORED):
        dnns = [k for k in rk["ndcg_at_10"] if k.startswith("dnn_")]
        best = max(dnns, key=lambda k: rk["ndcg_at_10"][k], default=None)
        listings = reranked_listings(spark, root, ["production", *([best] if best else [])], limit=2)
    return shown, listings


def recs_popularity(spark: SparkSession, root: str) -> dict[str, Any] | None:
    """Share of recommendation slots taken by the most popular 1% / 10% of offers (training co-clicks)."""
    from pyspark.sql import functions as F

    if not (exists(root, tables.RECS) and exists(root, tables.PAIRS)):
        return None
    offers = read_table(spark, root, tables.OFFERS).select("offer_id")
    pairs = read_table(spark, root, tables.PAIRS).where(F.col("split") == "train")
    pop = pairs.groupBy(F.col("item_offer_id").alias("offer_id")).agg(F.count(F.lit(1)).alias("pop"))
    n_offers = offers.count()
    # The percent rank by (popularity desc, offer_id): positions from a distributed sort
    # (zipWithIndex), not a window without partitions, which would pull every offer into one task.
    ordered = offers.join(pop, "offer_id", "left").orderBy(F.desc(F.coalesce("pop", F.lit(0))), "offer_id")
    positions = ordered.select("offer_id").rdd.zipWithIndex().map(lambda r: (int(r[0][0]), int(r[1])))
    ranked = spark.createDataFrame(positions, "offer_id bigint, pos bigint").withColumn(
        "pct", F.col("pos") / F.lit(max(n_offers - 1, 1))
    )
    slots = read_table(spark, root, tables.RECS).select(F.explode("recs.offer_id").alias("offer_id"))
    r = (
        slots.join(ranked, "offer_id", "left")
        .agg(
            F.avg((F.col("pct") < 0.01).cast("double")).alias("top1"),
            F.avg((F.col("pct") < 0.10).cast("double")).alias("top10"),
        )
        .first()
    )
    assert r is not None
    recommended = slots.select("offer_id").distinct().count()
    return {
        "top1_share_of_recs": float(r["top1"] or 0.0),
        "top10_share_of_recs": float(r["top10"] or 0.0),
        "never_recommended": 1.0 - recommended / max(n_offers, 1),
    }
