"""Offline evaluation of the encoder on Spark: Recall@K / MRR on test pairs, beside the baselines.

Queries are a bounded, hash-sampled set of test query offers (the driver holds them and their
top-K, never the catalogue). The encoder's exact top-K runs where the offers are: each partition
embeds its offers with the broadcast model and keeps its best K per query; Spark merges the partial
lists. The baselines (co-occurrence, popularity) are ``retrieval.spark_evaluation``'s, on the same
queries, for warm and for cold query offers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.encoder.spark_embed import rows_to_features
from retrieval.evaluation import mrr, recall_at_k
from retrieval.spark import map_in_pandas
from retrieval.spark_evaluation import (
    cooccurrence_top_k,
    popularity_top_k,
    sample_queries,
    warm_offers,
    with_ids,
)
from retrieval.training.spark_inference import broadcast_model, worker_model

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession


def encoder_top_k(
    spark: SparkSession,
    model: Any,
    features: DataFrame,
    warm: DataFrame,
    query_ids: np.ndarray,
    k: int,
    modes: dict[str, bool],
) -> dict[str, np.ndarray]:
    """Exact inner-product top-``k`` offers for each query offer, per mode: {name: [Q, k] ids (-1
    padding)}, self excluded. A mode's flag says whether warm offers (queries and items) use their id
    embedding (False: content only). Every mode in one pass over the offers: one broadcast of the
    model, one build of it per Python worker."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from retrieval.encoder.model import embed
    from retrieval.evaluation import NO_ITEM, exact_search

    feats = features.join(warm.withColumn("_warm", F.lit(True)), "offer_id", "left").withColumn(
        "_warm", F.coalesce("_warm", F.lit(False))
    )
    names = list(modes)
    q_rows: Any = with_ids(feats, "offer_id", query_ids.tolist()).toPandas()
    if len(q_rows) == 0:
        return {name: np.full((len(query_ids), k), -1, dtype=np.int64) for name in names}
    q_rows = q_rows.set_index("offer_id").loc[[int(x) for x in query_ids]].reset_index()
    q_feats, q_warm = rows_to_features(q_rows), q_rows["_warm"].to_numpy()
    q_vecs = [embed(model, q_feats, use_id=q_warm & modes[name]) for name in names]
    model_bc = broadcast_model(spark, model)
    bc = spark.sparkContext.broadcast((q_vecs, query_ids, k, [modes[name] for name in names]))

    def partition_top_k(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        qvs, qids, kk, flags = bc.value
        m = worker_model(model_bc.value)  # once per Python worker, not per batch
        for df in frames:
            if len(df) == 0:
                continue
            item_ids, feats_, warm_ = df["offer_id"].to_numpy(), rows_to_features(df), df["_warm"].to_numpy()
            for mode, (qv, ids_on) in enumerate(zip(qvs, flags, strict=True)):
                iv = embed(m, feats_, use_id=warm_ & ids_on)
                dist, ids = exact_search(
                    qv, iv, item_ids, kk, exclude=qids
                )  # this partition's best per query
                keep = ids.reshape(-1) != NO_ITEM
                yield pd.DataFrame(
                    {
                        "mode": np.full(int(keep.sum()), mode, dtype=np.int32),
                        "q": np.repeat(np.arange(len(qids), dtype=np.int32), kk)[keep],
                        "item": ids.reshape(-1)[keep],
                        "score": dist.reshape(-1)[keep],
                    }
                )

    partial = map_in_pandas(feats, partition_top_k, "mode int, q int, item bigint, score float")
    order = Window.partitionBy("mode", "q").orderBy(F.desc("score"), "item")
    best = partial.withColumn("_r", F.row_number().over(order)).where(F.col("_r") <= k)
    out = {name: np.full((len(query_ids), k), -1, dtype=np.int64) for name in names}
    for r in best.collect():
        out[names[r["mode"]]][r["q"], r["_r"] - 1] = r["item"]
    bc.unpersist()
    model_bc.unpersist()
    return out


def evaluate_encoder(
    spark: SparkSession, model: Any, pairs: DataFrame, features: DataFrame, n_queries: int, k: int, seed: int
) -> dict[str, Any]:
    """Recall@{10,50,100} and MRR@k on sampled test query offers, warm and cold apart, for the encoder,
    the same model with its id embeddings off (``content_only``), co-occurrence and popularity:
    {"warm": {method: {metric: value}, "queries": n}, "cold": ...}."""
    queries, targets = sample_queries(pairs, n_queries, seed)
    warm = warm_offers(pairs)
    warm_ids = {r["offer_id"] for r in with_ids(warm, "offer_id", queries.tolist()).collect()}
    is_warm = np.array([int(q) in warm_ids for q in queries])
    ranked = {
        **encoder_top_k(spark, model, features, warm, queries, k, {"encoder": True, "content_only": False}),
        "cooccurrence": cooccurrence_top_k(pairs, queries, k),
        "popularity": popularity_top_k(pairs, queries, k),
    }
    figures: dict[str, dict[str, Any]] = {}
    for subset, mask in (("warm", is_warm), ("cold", ~is_warm)):
        tg = [targets[i] for i in np.flatnonzero(mask)]
        figures[subset] = {
            name: {
                f"recall_at_{kk}": round(recall_at_k(r[mask], tg, kk), 4) for kk in (10, 50, 100) if kk <= k
            }
            | {"mrr": round(mrr(r[mask], tg, k), 4)}
            for name, r in ranked.items()
        } | {"queries": int(mask.sum())}
    return figures


def encoder_metrics(
    figures: dict[str, Any], trained: dict[str, Any], n_examples: int, version: str, feed: str
) -> dict[str, Any]:
    """train_encoder's metrics and summary from :func:`evaluate_encoder`'s figures and the training
    summary (``training.spark_launch.launch``)."""
    methods = [m for m in figures["warm"] if m != "queries"]
    r50 = {m: figures["warm"][m].get("recall_at_50") for m in methods}
    c50 = {m: figures["cold"][m].get("recall_at_50") for m in methods}
    last = trained["history"][-1]
    queries = figures["cold"]["queries"] + figures["warm"]["queries"]
    return {
        "recall_at_50": r50,
        "cold_recall_at_50": c50,
        "examples_per_s": round(last["examples_per_s"], 1),
        "feed": feed,
        "evaluation": figures,
        "training": {**trained, "examples": n_examples, "model_version": version},
        "rows_out": n_examples,
        "summary": [
            f"{n_examples:,} training pairs, {len(trained['history'])} epochs on {trained['world']} processes "
            f"({feed} feed), last epoch loss {last['loss']:.3f}, {last['examples_per_s']:,.0f} examples/s",
            *([f"WARNING: {trained['fallback']}"] if "fallback" in trained else []),
            "Recall@50 warm: " + ", ".join(f"{m} {v}" for m, v in r50.items()),
            "Recall@50 cold: "
            + ", ".join(f"{m} {v}" for m, v in c50.items())
            + f" ({figures['cold']['queries']} cold of {queries} queries)",
        ],
    }
