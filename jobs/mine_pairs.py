"""mine_pairs: co-clicked / co-viewed offer pairs from the events table -> `pairs`.

    ./submit.sh mine_pairs [--config conf/local.yaml] [--set pairs.window=8] [--set split.test_days=2]

Within a session, each interaction pairs with the next `pairs.window` ones (views, clicks, carts,
purchases, weighted by `pairs.event_weights`), among the session's first `pairs.max_session_events`;
a pair counts once per session; sessions starting in the last `split.test_days` days form the test
split. On synthetic data the metrics say how often an offer's top-10 partners are the same product
or cluster, against random partners.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import functions as F

from retrieval import tables
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.mining.spark_pairs import mine_pairs, partner_shares, test_cutoff
from retrieval.spark_tables import exists, read_table, write_table


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root = cfg.paths.root
    events = read_table(spark, root, tables.EVENTS)
    cutoff = test_cutoff(events, cfg.split)
    pairs = mine_pairs(events, cfg.pairs, cutoff)
    parts = int(spark.conf.get("spark.sql.shuffle.partitions"))
    uri = write_table(
        pairs.repartition(parts, "query_offer_id").sortWithinPartitions(
            "query_offer_id", "item_offer_id", "split"
        ),
        root,
        tables.PAIRS,
    )
    pairs = read_table(spark, root, tables.PAIRS)
    by_split = {r["split"]: int(r["count"]) for r in pairs.groupBy("split").count().collect()}
    offers_with_pairs = pairs.where(F.col("split") == "train").select("query_offer_id").distinct().count()
    shares: dict[str, Any] = dict.fromkeys(
        ("same_product_at_10", "random_same_product", "same_cluster_at_10", "random_same_cluster")
    )
    if exists(root, tables.TRUTH_OFFER_PRODUCT):
        shares = partner_shares(pairs, read_table(spark, root, tables.TRUTH_OFFER_PRODUCT))
    total = sum(by_split.values())
    summary = [
        f"{total:,} pairs (train {by_split.get('train', 0):,}, test {by_split.get('test', 0):,}; test from {cutoff}); "
        f"{offers_with_pairs:,} offers have training pairs"
    ]
    if shares["same_product_at_10"] is not None:
        summary.append(
            f"top-10 partners: same product {shares['same_product_at_10']:.3f} (random {shares['random_same_product']:.5f}), "
            f"same cluster {shares['same_cluster_at_10']:.3f} (random {shares['random_same_cluster']:.5f})"
        )
    return {
        "pairs": total,
        "pairs_by_split": by_split,
        "test_start": cutoff,
        "offers_with_train_pairs": offers_with_pairs,
        **shares,
        "rows_out": total,
        "outputs": {"pairs": uri},
        "summary": summary,
    }


if __name__ == "__main__":
    job_main("mine_pairs", run, __doc__)
