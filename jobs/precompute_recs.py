"""precompute_recs: the `recs` table, top recs.k similar offers for every offer, from the sharded index.

    ./submit.sh precompute_recs [--set recs.k=20] [--set recs.category_cap=5]
    ./submit.sh precompute_recs --set recs.mode=incremental --set recs.since=2026-10-14

Every partition of the embeddings is a block of queries that streams each shard of the current index
(index/CURRENT) through faiss and merges the per-shard top recs.candidates; then the offer itself and
offers of its product are removed, offers of one product collapsed to the best (product_id, or seller
+ near-duplicate title where it is null), at most recs.category_cap per category. Incremental: recs
of new and changed offers, and of offers whose carousel they enter or whose carousel holds a changed
or deleted offer, are recomputed; the rest are kept. Metrics: Recall@20 on test co-click pairs whose
item is another product, matched by product (the carousel shows one offer per product) and by offer,
with co-occurrence and popularity on the same pairs beside it; catalogue coverage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from retrieval import tables
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.encoder.spark_eval import cooccurrence_top_k, popularity_top_k, sample_queries
from retrieval.evaluation import recall_at_k
from retrieval.index.spark_index import current, product_keys, search_neighbours, to_recs
from retrieval.spark_tables import read_table, write_table

# An incremental update looks for offers whose carousel a new offer enters among this many times
# recs.candidates neighbours of the new offer (kNN is not symmetric; see affected_offers).
REVERSE_FACTOR = 4


def affected_offers(recs: DataFrame, delta: DataFrame, reverse: DataFrame, k: int) -> DataFrame:
    """Offers whose recs must be recomputed after an update (besides the changed offers themselves):
    those whose carousel holds a changed or deleted offer, and those a new vector would enter: found
    among the new offer's nearest neighbours (``reverse``: offer_id = new offer, neighbours/scores) with
    a score above the neighbour's current k-th recommendation (or a carousel shorter than k)."""
    changed = delta.select(F.col("offer_id").alias("rec_id"))
    holding = (
        recs.select("offer_id", F.explode("recs.offer_id").alias("rec_id"))
        .join(changed, "rec_id")
        .select("offer_id")
    )
    kth = recs.select(
        "offer_id",
        F.when(F.size("recs") >= k, F.element_at("recs.score", k))
        .otherwise(F.lit(float("-inf")))
        .alias("kth"),
    )
    entered = (
        reverse.select(F.explode(F.arrays_zip("neighbours", "scores")).alias("n"))
        .select(F.col("n.neighbours").alias("offer_id"), F.col("n.scores").alias("score"))
        .join(kth, "offer_id")
        .where(F.col("score") >= F.col("kth"))
        .select("offer_id")
    )
    return holding.union(entered).distinct()


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, r, ix = cfg.paths.root, cfg.recs, cfg.index
    if r.mode == "compact":
        return {
            "rows_out": 0,
            "offers": 0,
            "offers_with_recs": 0,
            "k": r.k,
            "recall_at_20_test_pairs": None,
            "catalog_coverage": None,
            "summary": ["recs.mode=compact: recs are unchanged"],
        }
    uri, manifest = current(root)
    offers = read_table(spark, root, tables.OFFERS)
    live = offers.where(F.coalesce(F.col("deleted"), F.lit(False)) == F.lit(False))
    keys = product_keys(live).cache()
    embeddings = read_table(spark, root, tables.EMBEDDINGS)

    def neighbours(queries: DataFrame, k: int) -> DataFrame:
        return search_neighbours(queries, manifest, uri, k, ix.nprobe, ix.k_factor, ix.threads)

    recomputed = 0
    if r.mode == "full":
        recs = to_recs(
            neighbours(embeddings, r.candidates), keys, r.k, r.category_cap, manifest.model_version
        )
        recs_uri = write_table(recs, root, tables.RECS)
    else:
        old = read_table(spark, root, tables.RECS)
        delta = read_table(spark, root, tables.EMBEDDINGS_DELTA)
        fresh = delta.where(~F.col("deleted")).select("offer_id", "vector")
        reverse = neighbours(fresh, REVERSE_FACTOR * r.candidates)
        todo = (
            affected_offers(old, delta, reverse, r.k)
            .union(fresh.select("offer_id"))
            .distinct()
            .join(embeddings.select("offer_id"), "offer_id")  # live offers only
        ).cache()
        recomputed = todo.count()
        new = to_recs(
            neighbours(embeddings.join(todo, "offer_id"), r.candidates),
            keys,
            r.k,
            r.category_cap,
            manifest.model_version,
        )
        kept = old.join(todo, "offer_id", "left_anti").join(delta.select("offer_id"), "offer_id", "left_anti")
        recs_uri = write_table(kept.unionByName(new), root, tables.RECS)
        todo.unpersist()
    recs = read_table(spark, root, tables.RECS)
    stats = recs.agg(
        F.count("*").alias("offers"),
        F.sum((F.size("recs") > 0).cast("long")).alias("with_recs"),
        F.sum((F.size("recs") >= r.k).cast("long")).alias("full"),
    ).first()
    assert stats is not None
    n_live = embeddings.count()
    covered = recs.select(F.explode("recs.offer_id").alias("o")).distinct().count()
    figures = evaluate(cfg, recs, keys)
    keys.unpersist()
    share = recomputed / max(n_live, 1)
    return {
        "offers": int(stats["offers"]),
        "offers_with_recs": int(stats["with_recs"] or 0),
        "offers_with_k_recs": int(stats["full"] or 0),
        "k": r.k,
        "recall_at_20_test_pairs": figures["product"]["recs"],
        "recall_at_20_baselines": {m: v for m, v in figures["product"].items() if m != "recs"},
        "recall_at_20_offer_level": figures["offer"],
        "catalog_coverage": round(covered / max(n_live, 1), 4),
        "mode": r.mode,
        "recomputed": recomputed,
        "index_version": manifest.version,
        "rows_out": int(stats["offers"]),
        "outputs": {"recs": recs_uri},
        "summary": [
            f"{int(stats['offers']):,} offers with recs ({int(stats['full'] or 0):,} with all {r.k}); "
            f"catalogue coverage {covered / max(n_live, 1):.3f}"
            + (
                f"; incremental: {recomputed:,} recomputed ({share:.1%} of the catalogue)"
                if r.mode != "full"
                else ""
            ),
            "Recall@20 on test co-clicks of another product, by product: "
            + ", ".join(f"{m} {v}" for m, v in figures["product"].items())
            + "; by offer: "
            + ", ".join(f"{m} {v}" for m, v in figures["offer"].items()),
        ],
    }


def evaluate(cfg: Config, recs: DataFrame, keys: DataFrame) -> dict[str, dict[str, float | None]]:
    """Recall@20 of the recs, co-occurrence and popularity on sampled test query offers, against their
    test co-click partners that are another product (same product = not a recommendation).

    ``product``: a hit is a recommended offer of the partner's product (the carousel shows one offer
    per product, so this is what it can get right); ``offer``: the partner offer itself."""
    spark = recs.sparkSession
    pairs = read_table(spark, cfg.paths.root, tables.PAIRS)
    queries, targets = sample_queries(pairs, cfg.recs.eval_queries, cfg.seed)
    if len(queries) == 0:
        return {"product": {"recs": None}, "offer": {"recs": None}}
    got = {
        int(row["offer_id"]): [int(x) for x in row["ids"]]
        for row in recs.where(F.col("offer_id").isin([int(q) for q in queries]))
        .select("offer_id", F.col("recs.offer_id").alias("ids"))
        .collect()
    }
    ranked = {"recs": np.array([(got.get(int(q), []) + [-1] * 20)[:20] for q in queries])}
    for name, fn in (("cooccurrence", cooccurrence_top_k), ("popularity", popularity_top_k)):
        ranked[name] = fn(pairs, queries, 20)
    ids = {int(q) for q in queries} | {int(t) for ts in targets for t in ts}
    ids |= {int(x) for r_ in ranked.values() for x in r_.reshape(-1) if x >= 0}
    key = {
        int(row["offer_id"]): row["key"] for row in keys.where(F.col("offer_id").isin(list(ids))).collect()
    }
    targets = [
        {t for t in ts if key.get(t) != key.get(int(q))} for q, ts in zip(queries, targets, strict=True)
    ]
    out: dict[str, dict[str, float | None]] = {"product": {}, "offer": {}}
    for name, r_ in ranked.items():
        out["offer"][name] = round(recall_at_k(r_, targets, 20), 4)
        hits = []
        for row, ts in zip(r_, targets, strict=True):
            if ts:
                want = {key.get(t, f"o{t}") for t in ts}
                shown = {key.get(int(x), f"o{x}") for x in row[:20] if x >= 0}
                hits.append(len(want & shown) / len(want))
        out["product"][name] = round(float(np.mean(hits)), 4) if hits else None
    return out


if __name__ == "__main__":
    job_main("precompute_recs", run, __doc__)
