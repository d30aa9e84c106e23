"""Evaluating visual search on Spark: every method's street-photo queries against the held-out shop
gallery (accuracy@1/5 with a bootstrap interval), the example grid, and the same queries through the
sharded image index.

The gallery and the queries are the held-out products' photos (one query per product): a bounded
evaluation set whose vectors are featurised on the executors and come to the driver for exact search.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.evaluation import bootstrap_interval
from retrieval.training.spark_inference import broadcast_model
from retrieval.visual import spark_visual
from retrieval.visual.images import decode, encode, grid
from retrieval.visual.model import top_k

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

BASELINES = ("pixels", "histogram", "untrained")
ABLATIONS = ("seamless", "blur", "natural_bg", "uniform_bg")


def score_methods(
    gallery: DataFrame, queries: DataFrame, models: Mapping[str, Any], size: int, threads: int, seed: int
) -> dict[str, Any]:
    """accuracy@5, accuracy@1, the accuracy@5 interval and the seconds of the pixel and histogram
    baselines and of every model in ``models`` ({name: module}); plus what the example grid needs:
    the last method's ids and labels, and each method's ranked gallery indices."""
    spark = gallery.sparkSession
    acc5: dict[str, float] = {}
    acc1: dict[str, float] = {}
    ci5: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    ranked_by: dict[str, np.ndarray] = {}
    g_ids = g_labels = q_ids = q_labels = np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    for method in [*BASELINES[:2], *models]:
        t0 = time.perf_counter()
        bc = broadcast_model(spark, models[method]) if method in models else None
        kind = "model" if bc is not None else method
        g_ids, g_labels, g = spark_visual.collect_vectors(
            spark_visual.featurize(gallery, kind, size, bc, threads=threads)
        )
        q_ids, q_labels, q = spark_visual.collect_vectors(
            spark_visual.featurize(queries, kind, size, bc, threads=threads)
        )
        if bc is not None:
            bc.unpersist()
        ranked = top_k(q, g, 5)
        hit_at = (g_labels[ranked] == q_labels[:, None]).astype(np.float64)
        acc5[method] = round(float(hit_at.any(1).mean()), 4)
        acc1[method] = round(float(hit_at[:, 0].mean()), 4)
        ci5[method] = [round(x, 4) for x in bootstrap_interval(hit_at.any(1).astype(np.float64), rng)]
        seconds[method] = round(time.perf_counter() - t0, 1)
        ranked_by[method] = ranked
    return {
        "acc5": acc5,
        "acc1": acc1,
        "ci5": ci5,
        "seconds": seconds,
        "ranked": ranked_by,
        "ids": (g_ids, g_labels, q_ids, q_labels),
    }


def figures(scored: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The stage's metrics from :func:`score_methods`: baselines and variants apart from the ablations."""
    acc5, acc1 = scored["acc5"], scored["acc1"]
    g_ids, g_labels, q_ids, _ = scored["ids"]
    best_baseline = max(acc5[m] for m in BASELINES)
    return {
        "accuracy_at_5": {m: acc5[m] for m in acc5 if m not in ABLATIONS},
        "accuracy_at_1": {m: acc1[m] for m in acc1 if m not in ABLATIONS},
        "ablations": {m: acc5[m] for m in ABLATIONS if m in acc5},
        "ablations_at_1": {m: acc1[m] for m in ABLATIONS if m in acc1},
        "accuracy_at_5_interval": scored["ci5"],
        "queries": len(q_ids),
        "gallery_images": len(g_ids),
        "gallery_products": len(set(g_labels.tolist())),
        "best_baseline_at_5": best_baseline,
        "street_over_best_baseline": round(acc5["street"] / best_baseline, 2)
        if "street" in acc5 and best_baseline
        else None,
        "seconds_per_method": scored["seconds"],
        "dataset": dataset,
    }


def example_grid(
    queries: DataFrame, gallery: DataFrame, scored: dict[str, Any], method: str, size: int, n: int
) -> bytes:
    """PNG: one row per query (the street photo, then its top 5 by ``method``), hits framed green,
    misses red."""
    from pyspark.sql import functions as F

    g_ids, g_labels, q_ids, q_labels = scored["ids"]
    ranked = scored["ranked"][method]
    rows_idx = list(range(min(n, len(q_ids))))
    want_q = [int(q_ids[i]) for i in rows_idx]
    want_g = sorted({int(g_ids[j]) for i in rows_idx for j in ranked[i]})
    qimg = {
        r["label"]: decode(r["image"], size) for r in queries.where(F.col("label").isin(want_q)).collect()
    }
    gimg = {
        r["image_id"]: decode(r["image"], size)
        for r in gallery.where(F.col("image_id").isin(want_g)).collect()
    }
    rows, borders = [], []
    for i in rows_idx:
        rows.append([qimg[int(q_ids[i])], *[gimg[int(g_ids[j])] for j in ranked[i]]])
        borders.append(["", *["g" if g_labels[j] == q_labels[i] else "r" for j in ranked[i]]])
    return encode(grid(rows, pad=3, borders=borders), "PNG")


def index_accuracy(
    embeddings: DataFrame, queries: np.ndarray, query_labels: np.ndarray, manifest: Any, index_uri: str
) -> tuple[float, float]:
    """accuracy@5 of ``queries`` [Q, d] through the sharded image index (the path a user's photo takes)
    and by exact search, against the test split's photos. The index holds every photo, so it is asked
    for enough neighbours and only test photos are kept."""
    from pyspark.sql import functions as F

    from retrieval.index.spark_index import search_neighbours

    spark = embeddings.sparkSession
    test_rows = embeddings.where(F.col("split") == "test")
    test = {int(r["image_id"]): int(r["label"]) for r in test_rows.select("image_id", "label").collect()}
    n = embeddings.count()
    qdf = spark.createDataFrame(
        [(-(i + 1), vec.tolist()) for i, vec in enumerate(queries)], "offer_id bigint, vector array<float>"
    )
    k_all = 5 * max(1, round(n / max(len(test), 1))) + 20
    found = {
        -int(r["offer_id"]) - 1: [int(x) for x in r["neighbours"] if int(x) in test][:5]
        for r in search_neighbours(qdf, manifest, index_uri, k_all, nprobe=manifest.nprobe or 16).collect()
    }
    hits = np.mean([any(test[g] == query_labels[i] for g in found.get(i, [])) for i in range(len(queries))])
    g = test_rows.orderBy("image_id").collect()
    g_labels = np.asarray([r["label"] for r in g])
    g_vecs = np.asarray([r["vector"] for r in g], np.float32)
    exact = float((g_labels[top_k(queries, g_vecs, 5)] == query_labels[:, None]).any(1).mean())
    return float(hits), exact
