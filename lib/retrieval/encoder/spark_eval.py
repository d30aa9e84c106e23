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
    modes: dict[str, tuple[str, bool]],
) -> dict[str, np.ndarray]:
    """Exact inner-product top-``k`` offers for each query offer, per mode: {name: [Q, k] ids (-1
    padding)}, self excluded. ``model`` is a :class:`~retrieval.encoder.model.TowerSet`; a mode is
    (tower, ids): which tower embeds, and whether warm offers (queries and items) use their id
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
    plan = [modes[name] for name in names]
    q_vecs = [embed(model.tower(t), q_feats, use_id=q_warm & ids_on) for t, ids_on in plan]
    model_bc = broadcast_model(spark, model)
    bc = spark.sparkContext.broadcast((q_vecs, query_ids, k, plan))

    def partition_top_k(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        qvs, qids, kk, modes_ = bc.value
        m = worker_model(model_bc.value)  # once per Python worker, not per batch
        for df in frames:
            if len(df) == 0:
                continue
            item_ids, feats_, warm_ = df["offer_id"].to_numpy(), rows_to_features(df), df["_warm"].to_numpy()
            for mode, (qv, (tower, ids_on)) in enumerate(zip(qvs, modes_, strict=True)):
                iv = embed(m.tower(tower), feats_, use_id=warm_ & ids_on)
                dist, ids = exact_search(qv, iv, item_ids, kk, exclude=qids)  # this partition's best
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


def model_modes(model: Any) -> dict[str, tuple[str, bool]]:
    """The modes a trained :class:`TowerSet` is evaluated in: the encoder with its ids, the same with its
    ids off (``content_only``), and the content-only baseline tower (``content_trained``) if trained."""
    modes = {"encoder": ("encoder", True), "content_only": ("encoder", False)}
    if "content_trained" in model.towers:
        modes["content_trained"] = ("content_trained", False)
    return modes


def evaluate_encoder(
    spark: SparkSession,
    model: Any,
    pairs: DataFrame,
    features: DataFrame,
    enc: Any,
    seed: int,
    ceiling: Any = None,
) -> dict[str, Any]:
    """Recall@{10,50,100} and MRR on ``enc.eval_queries`` sampled test query offers (top ``enc.eval_k``),
    warm and cold apart, for every mode of ``model`` (:func:`model_modes`), co-occurrence and
    popularity: {"warm": {method: {metric: value}, "queries": n}, "cold": ...}. ``ceiling`` (query ids
    [S], k -> {name: [S, k] ids}): the generator's own rankings on synthetic data (``synth.oracle``:
    ``ceiling``, and ``ceiling_content``, what content alone can know), scored on the first
    ``enc.ceiling_queries`` queries, where every method's Recall@50 is also set beside the ceiling's
    (``share_of_ceiling``)."""
    n_queries, k, ceiling_queries = enc.eval_queries, enc.eval_k, enc.ceiling_queries
    queries, targets = sample_queries(pairs, n_queries, seed)
    warm_ids = {r["offer_id"] for r in with_ids(warm_offers(pairs), "offer_id", queries.tolist()).collect()}
    is_warm = np.array([int(q) in warm_ids for q in queries])  # any training pair: the reported split
    with_ids_on = warm_offers(pairs, model.tower("encoder").cfg.min_id_pairs)  # what the ids are used for
    ranked = {
        **encoder_top_k(spark, model, features, with_ids_on, queries, k, model_modes(model)),
        "cooccurrence": cooccurrence_top_k(pairs, queries, k),
        "popularity": popularity_top_k(pairs, queries, k),
    }
    figures: dict[str, dict[str, Any]] = {}
    for subset, mask in (("warm", is_warm), ("cold", ~is_warm)):
        tg = [targets[i] for i in np.flatnonzero(mask)]
        figures[subset] = {name: _scores(r[mask], tg, k) for name, r in ranked.items()}
        figures[subset]["queries"] = int(mask.sum())
    if ceiling is not None:  # the generator's ranking, on the first queries of the (hash-ordered) sample
        on = np.zeros(len(queries), dtype=bool)
        on[:ceiling_queries] = True
        best = ceiling(queries[on], k)
        for subset, mask in (("warm", is_warm), ("cold", ~is_warm)):
            m = mask[on]
            tg = [targets[i] for i in np.flatnonzero(on & mask)]
            if not tg:
                continue
            for name, r in best.items():
                figures[subset][name] = _scores(r[m], tg, k)
            here = {name: _scores(r[on & mask], tg, k)["recall_at_50"] for name, r in ranked.items()}
            top = figures[subset]["ceiling"]["recall_at_50"]
            figures[subset]["share_of_ceiling"] = {
                name: round(v / top, 4) if top else None for name, v in here.items()
            }
            figures[subset]["ceiling_queries"] = len(tg)
    return figures


def _scores(ranked: np.ndarray, targets: list[set[int]], k: int) -> dict[str, float]:
    out = {f"recall_at_{kk}": round(recall_at_k(ranked, targets, kk), 4) for kk in (10, 50, 100) if kk <= k}
    return out | {"mrr": round(mrr(ranked, targets, k), 4)}


def encoder_metrics(
    figures: dict[str, Any], trained: dict[str, Any], n_examples: int, version: str, feed: str
) -> dict[str, Any]:
    """train_encoder's metrics and summary from :func:`evaluate_encoder`'s figures and the training
    summary (``training.spark_launch.launch``)."""
    methods = [m for m, v in figures["warm"].items() if isinstance(v, dict) and "recall_at_50" in v]
    r50 = {m: figures["warm"][m].get("recall_at_50") for m in methods}
    c50 = {m: figures["cold"].get(m, {}).get("recall_at_50") for m in methods}
    last = trained["history"][-1]
    queries = figures["cold"]["queries"] + figures["warm"]["queries"]
    shares = []
    for subset in ("warm", "cold"):
        share = figures[subset].get("share_of_ceiling")
        if share:
            shown = ", ".join(
                f"{m} {v}" for m, v in share.items() if m not in ("ceiling", "cooccurrence", "popularity")
            )
            shares.append(
                f"share of the ceiling, {subset} ({figures[subset]['ceiling_queries']} queries): {shown}"
            )
    return {
        "recall_at_50": r50,
        "cold_recall_at_50": c50,
        **(
            {"share_of_ceiling": {s_: figures[s_].get("share_of_ceiling") for s_ in ("warm", "cold")}}
            if "share_of_ceiling" in figures["warm"]
            else {}
        ),
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
            + ", ".join(f"{m} {v}" for m, v in c50.items() if v is not None)
            + f" ({figures['cold']['queries']} cold of {queries} queries)",
            *shares,
        ],
    }
