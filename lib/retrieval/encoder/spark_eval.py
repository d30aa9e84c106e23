"""Offline evaluation of the encoder on Spark: Recall@K / MRR on test pairs against baselines.

Queries are a bounded, hash-sampled set of test query offers (the driver holds them and their
top-K, never the catalogue). The encoder's exact top-K runs where the offers are: each partition
embeds its offers with the broadcast model and keeps its best K per query; Spark merges the partial
lists. Baselines on the same queries: item-to-item co-occurrence (training pair weights) and
popularity (training positives).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.encoder.spark_embed import broadcast_model, rows_to_features, worker_model

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession


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


def warm_offers(pairs: DataFrame) -> DataFrame:
    """Offers with training pairs (as query or item): the ones whose id embedding has been trained."""
    from pyspark.sql import functions as F

    train = pairs.where(F.col("split") == "train")
    return (
        train.select(F.col("query_offer_id").alias("offer_id"))
        .union(train.select(F.col("item_offer_id").alias("offer_id")))
        .distinct()
    )


def encoder_top_k(
    spark: SparkSession,
    model: Any,
    features: DataFrame,
    warm: DataFrame,
    query_ids: np.ndarray,
    k: int,
    use_ids: bool,
) -> np.ndarray:
    """Exact inner-product top-``k`` offers for each query offer: [Q, k] ids (-1 padding), self excluded.

    ``use_ids``: warm offers (queries and items) use their id embedding; False = content only.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from retrieval.encoder.model import embed
    from retrieval.evaluation import exact_search

    feats = features.join(warm.withColumn("_warm", F.lit(True)), "offer_id", "left").withColumn(
        "_warm", F.coalesce("_warm", F.lit(False))
    )
    q_rows: Any = feats.where(F.col("offer_id").isin([int(x) for x in query_ids])).toPandas()
    if len(q_rows) == 0:
        return np.full((len(query_ids), k), -1, dtype=np.int64)
    q_rows = q_rows.set_index("offer_id").loc[[int(x) for x in query_ids]].reset_index()
    q_vec = embed(model, rows_to_features(q_rows), use_id=q_rows["_warm"].to_numpy() & use_ids)
    model_bc = broadcast_model(spark, model)
    bc = spark.sparkContext.broadcast((q_vec, query_ids, k, use_ids))

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        qv, qids, kk, ids_on = bc.value
        m = worker_model(model_bc.value)  # once per Python worker, not per batch
        for df in frames:
            if len(df) == 0:
                continue
            item_ids = df["offer_id"].to_numpy()
            iv = embed(m, rows_to_features(df), use_id=df["_warm"].to_numpy() & ids_on)
            dist, ids = exact_search(qv, iv, item_ids, kk, exclude=qids)  # this partition's best per query
            keep = ids.reshape(-1) >= 0
            yield pd.DataFrame(
                {
                    "q": np.repeat(np.arange(len(qids), dtype=np.int32), kk)[keep],
                    "item": ids.reshape(-1)[keep],
                    "score": dist.reshape(-1)[keep],
                }
            )

    fn: Any = run
    partial = feats.mapInPandas(fn, "q int, item bigint, score float")
    best = partial.withColumn(
        "_r", F.row_number().over(Window.partitionBy("q").orderBy(F.desc("score"), "item"))
    ).where(F.col("_r") <= k)
    out = np.full((len(query_ids), k), -1, dtype=np.int64)
    for r in best.collect():
        out[r["q"], r["_r"] - 1] = r["item"]
    bc.unpersist()
    model_bc.unpersist()
    return out


def cooccurrence_top_k(pairs: DataFrame, query_ids: np.ndarray, k: int) -> np.ndarray:
    """Items ranked by training co-occurrence weight with the query offer: [Q, k] (-1 padding)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pos = {int(q): i for i, q in enumerate(query_ids)}
    rows = (
        pairs.where((F.col("split") == "train") & F.col("query_offer_id").isin(list(pos)))
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
