"""precompute_recs: the `recs` table, top recs.k similar offers for every offer, from the sharded index.

    ./submit.sh precompute_recs [--set recs.k=20] [--set recs.category_cap=5]
    ./submit.sh precompute_recs --set recs.mode=incremental --set recs.since=2026-10-14

Every partition of the embeddings is a block of queries that streams each shard of the current index
(index/CURRENT) through faiss and merges the per-shard top recs.candidates; then the offer itself and
offers of its product are removed, offers of one product collapsed to the best (product_id, else the
product the offer's photo, title or look matches, else the key of a near duplicate among its nearest
offers, else its category and title: retrieval.index.matching), at most recs.category_cap per
category. Incremental: recs of new and changed offers, and of offers whose carousel holds a changed
or deleted offer, are recomputed; carousels a new offer enters are patched with it (recomputed under
a category cap); the rest are kept (retrieval.index.spark_incremental). Metrics: Recall@20 on test
co-click pairs whose item is another product, matched by product and by offer,
beside co-occurrence and popularity on the same pairs; catalogue coverage.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from retrieval import tables
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.index import spark_index as si
from retrieval.index.recs import recs_metrics
from retrieval.index.spark_incremental import updated_recs
from retrieval.spark_evaluation import collapse_quality, recs_recall
from retrieval.spark_tables import exists, read_table, write_table
from retrieval.synth.oracle import ceiling_rankings


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, r, ix = cfg.paths.root, cfg.recs, cfg.index
    if r.mode == "compact":
        unchanged = {
            "offers": 0,
            "offers_with_recs": 0,
            "recall_at_20_test_pairs": None,
            "catalog_coverage": None,
        }
        return {**unchanged, "rows_out": 0, "k": r.k, "summary": ["recs.mode=compact: recs are unchanged"]}
    uri, manifest = si.current(root)
    nprobe = ix.nprobe or manifest.nprobe or 16  # pinned, else the one build_index chose
    live = read_table(spark, root, tables.OFFERS).where(~F.coalesce(F.col("deleted"), F.lit(False)))
    embeddings = read_table(spark, root, tables.EMBEDDINGS)

    def neighbours(queries: DataFrame, k: int, probe_factor: int = 1) -> DataFrame:
        return si.search_neighbours(queries, manifest, uri, k, nprobe * probe_factor, ix.k_factor, ix.threads)

    keys = si.matched_keys(live, embeddings, neighbours, r)

    def carousels(found: DataFrame) -> DataFrame:
        return si.to_recs(found, keys, r.k, r.category_cap, manifest.model_version)

    recomputed = patched = 0
    if r.mode == "full":
        recs = carousels(neighbours(embeddings, r.candidates))
    else:
        old, delta = read_table(spark, root, tables.RECS), read_table(spark, root, tables.EMBEDDINGS_DELTA)

        def reachable(pairs: DataFrame) -> DataFrame:
            return si.probe_reachable(pairs, embeddings, uri, nprobe)

        recs, recomputed, patched = updated_recs(
            old, delta, embeddings, r.k, r.candidates, neighbours, carousels, r.category_cap == 0, reachable
        )
    recs_uri = write_table(recs, root, tables.RECS)
    recs = read_table(spark, root, tables.RECS)
    stats = si.recs_stats(recs, embeddings.count(), r.k)
    pairs, ceiling = read_table(spark, root, tables.PAIRS), ceiling_rankings(root, carousels=True)
    recall = recs_recall(recs, pairs, keys, r.eval_queries, cfg.seed, r.k, ceiling, r.ceiling_queries)
    truth = None  # synthetic data: the generator's truth grades the product collapse
    if exists(root, tables.TRUTH_OFFER_PRODUCT):
        truth = collapse_quality(recs, live, keys, read_table(spark, root, tables.TRUTH_OFFER_PRODUCT))
    keys.unpersist()
    out = recs_metrics(stats, recall, r.k, r.mode, recomputed, patched, truth)
    return {**out, "index_version": manifest.version, "outputs": {"recs": recs_uri}}


if __name__ == "__main__":
    job_main("precompute_recs", run, __doc__)
