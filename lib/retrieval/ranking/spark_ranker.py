"""The ranker on Spark: query groups for SparkXGBRanker, text vectors, slates, distributed scoring, metrics.

XGBoost's ranking objectives need every query group whole on one worker and its rows consecutive: a
group split across partitions becomes two smaller groups on two workers (wrong pairs, wrong lambda
gradients, no error), and ``lambdarank_unbiased`` reads a row's *position* from its place within the
group. ``SparkXGBRanker`` repartitions by range of qid only when the partition count differs from
``num_workers``, then sorts each partition by qid. So :func:`group_partitions` hands it exactly
``num_workers`` partitions hashed by qid and sorted by (qid, position), and cached
(:func:`prepare_groups`): groups stay whole, and the wrapper's own sort by qid cannot undo the
position order (both tested).

A *slate* is one listing as one row (``dnn.slate_batch`` reads it): its offers in first-stage order,
with per-offer arrays (labels, true grades where the data has them, positions, the scores of every
first-stage method) and the DNN's inputs flattened (features, title text vectors) plus the query's
text vector. Training slates keep the top ``rerank_k``; test slates keep the whole listing so every
method is scored on the same full list (the DNN reorders the top ``rerank_k`` only).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.spark import map_in_arrow, map_in_pandas

if TYPE_CHECKING:
    import pandas as pd
    from pyspark import Broadcast
    from pyspark.sql import Column, DataFrame

# Methods scored on every test slate, besides the DNNs: the logged order and a BM25-only order.
BASELINES = ("production", "bm25")
FIRST_STAGE = ("xgb", "xgb_unbiased")
KS = (5, 10, 30)


def with_qid(df: DataFrame) -> DataFrame:
    """Adds ``qid`` (bigint in [0, number of searches)), the group id XGBoost needs, from ``query_id``.

    Dense, not a hash: XGBoost keeps qid as a 32-bit unsigned integer (a 64-bit hash is truncated,
    and 32-bit hashes collide at 10^5 searches, merging two listings into one group).
    """
    spark = df.sparkSession
    # sorted first, so the same searches get the same qids on every run (and land in the same partitions)
    ids = df.select("query_id").distinct().orderBy("query_id").rdd.map(lambda r: r[0]).zipWithIndex()
    return df.join(spark.createDataFrame(ids, "query_id string, qid bigint"), "query_id")


def sample_searches(
    searches: DataFrame, split: str, n: int, seed: int, clicked_only: bool, skip: int = 0
) -> DataFrame:
    """query_ids of about ``n`` searches of ``split`` (all if ``n`` is 0 or more than there is), chosen
    by a seeded hash (reruns agree); ``clicked_only`` keeps searches with a positive label (a listing
    without one has nothing to learn from). ``skip``: leave out the first ``skip`` searches' share of
    the hash range, so a second sample is disjoint from the first.

    ``searches``: one row per search (query_id, split, ``_top`` its best label), or listing rows."""
    from pyspark.sql import functions as F

    if "_top" not in searches.columns:
        searches = searches.groupBy("query_id", "split").agg(F.max("label").alias("_top"))
    q = searches.where(F.col("split") == split)
    if clicked_only:
        q = q.where(F.col("_top") > 0)
    if not n and not skip:
        return q.select("query_id")
    total = max(q.count(), 1)
    lo = int(min(skip / total, 1.0) * 1_000_000)
    hi = 1_000_000 if not n else int(min((skip + n) / total, 1.0) * 1_000_000)
    h = F.abs(F.xxhash64("query_id", F.lit(seed))) % 1_000_000
    return q.where((h >= lo) & (h < hi)).select("query_id")


def group_partitions(df: DataFrame, partitions: int) -> DataFrame:
    """Exactly ``partitions`` partitions, each query group whole in one, rows sorted by (qid, position)."""
    return df.repartition(partitions, "qid").sortWithinPartitions("qid", "position")


def prepare_groups(df: DataFrame, partitions: int) -> DataFrame:
    """:func:`group_partitions`, persisted and materialised: what :func:`fit_xgb` needs.

    SparkXGBRanker sorts its input by qid alone, and Spark's optimizer drops an earlier sort that a
    later one supersedes: over a plain DataFrame our (qid, position) order is gone and the rows of a
    query arrive in any order (``lambdarank_unbiased`` would read wrong positions; seen in CI). Over a
    cached one the order is the cache's, which already satisfies the qid sort, so it stays. Unpersist
    it after fitting.
    """
    from pyspark import StorageLevel

    out = group_partitions(df, partitions).persist(StorageLevel.MEMORY_AND_DISK)
    out.count()
    return out


def check_groups(df: DataFrame) -> None:
    """Raises ValueError if a qid spans partitions or a partition is not sorted by (qid, position)."""
    from pyspark.sql import functions as F

    def spans(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd
        from pyspark import TaskContext

        ctx = TaskContext.get()
        part = ctx.partitionId() if ctx is not None else -1
        for f in frames:
            q, p = f["qid"].to_numpy(), f["position"].to_numpy()
            ordered = bool(np.all((q[1:] > q[:-1]) | ((q[1:] == q[:-1]) & (p[1:] >= p[:-1]))))
            yield pd.DataFrame({"qid": f["qid"].unique(), "part": part, "ordered": ordered})

    parts = map_in_pandas(df.select("qid", "position"), spans, "qid bigint, part int, ordered boolean")
    unordered = parts.where(~F.col("ordered")).select("part").distinct().collect()
    if unordered:
        raise ValueError(
            f"partitions {sorted(r['part'] for r in unordered)} are not sorted by (qid, position)"
        )
    split = parts.groupBy("qid").agg(F.countDistinct("part").alias("n")).where(F.col("n") > 1)
    bad = split.limit(3).collect()
    if bad:
        raise ValueError(
            f"query groups split across partitions (e.g. qid {[r['qid'] for r in bad]}): "
            "XGBoost would see each part as its own group; use group_partitions()"
        )


def numeric(df: DataFrame, features: Sequence[str]) -> DataFrame:
    """Feature columns as double with nulls as NaN (XGBoost's missing value)."""
    from pyspark.sql import functions as F

    missing = [f for f in features if f not in df.columns]
    if missing:
        raise ValueError(f"ranker.features not in the listings table: {missing}")
    for f in features:
        df = df.withColumn(f, F.coalesce(F.col(f).cast("double"), F.lit(float("nan"))))
    return df


def fit_xgb(
    train: DataFrame, features: Sequence[str], prediction: str, unbiased: bool, cfg: Any, seed: int
) -> Any:
    """A SparkXGBRanker (rank:ndcg, top-k pairs) fitted on whole, position-sorted query groups.

    ``train`` must come from :func:`prepare_groups` with ``cfg.xgb_workers`` partitions."""
    if not train.is_cached or train.rdd.getNumPartitions() != cfg.xgb_workers:
        raise ValueError(
            f"fit_xgb needs prepare_groups(df, {cfg.xgb_workers}): cached, one partition per worker"
        )
    from xgboost.spark import SparkXGBRanker

    ranker = SparkXGBRanker(
        features_col=list(features),
        label_col="label",
        qid_col="qid",
        prediction_col=prediction,
        num_workers=cfg.xgb_workers,
        objective="rank:ndcg",
        n_estimators=cfg.xgb_rounds,
        max_depth=cfg.xgb_depth,
        learning_rate=cfg.xgb_eta,
        lambdarank_pair_method="topk",
        lambdarank_num_pair_per_sample=cfg.xgb_pairs,
        lambdarank_unbiased=unbiased,
        tree_method="hist",
        random_state=seed,
    )
    return ranker.fit(train)


def text_vectors(
    frame: DataFrame, key: str, text: str, model_bc: Broadcast[Any], threads: int, batch_size: int = 4096
) -> DataFrame:
    """(key, vec array<float>): the encoder's text vector of ``text`` (``encoder.model.text_vectors``)."""

    def embed_texts(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd
        import torch

        from retrieval.encoder.features import collate, offer_row_features
        from retrieval.encoder.model import text_vectors as vectors
        from retrieval.training.spark_inference import task_setup, worker_model

        model = worker_model(model_bc.value, task_setup(threads))
        for df in frames:
            for lo in range(0, len(df), batch_size):
                part = df.iloc[lo : lo + batch_size]
                feats = collate([offer_row_features({"title": t}, model.cfg.vocab) for t in part[text]])
                vec = vectors(model, torch.as_tensor(feats.words), torch.as_tensor(feats.chars)).numpy()
                yield pd.DataFrame({key: part[key].to_numpy(), "vec": list(vec)})

    dtype = dict(frame.dtypes)[key]
    return map_in_pandas(frame.select(key, text), embed_texts, f"{key} {dtype}, vec array<float>")


def build_slates(
    rows: DataFrame,
    order: str,
    inputs: Sequence[str],
    k: int,
    scores: Sequence[str],
    text: bool,
) -> DataFrame:
    """One row per listing, offers in descending ``order`` (ties by position), the top ``k`` (0 = all).

    Columns: query_id, qid, split, n, and arrays offer_id, position, label, grade (null where unknown),
    one per name in ``scores``, ``x`` (the ``inputs`` of each offer, flattened), and with ``text``
    ``t_vec`` (title vectors, flattened) and ``q_vec``.
    """
    from pyspark.sql import functions as F

    fields = [
        (-F.col(order)).alias("_s"),
        F.col("position"),
        F.col("offer_id"),
        F.col("label"),
        F.col("grade"),
        *[F.col(s).cast("float").alias(f"s_{s}") for s in scores],
        F.array(*[F.col(c).cast("float") for c in inputs]).alias("x"),
    ]
    if text:
        fields.append(F.col("t_vec"))
    agg = [F.sort_array(F.collect_list(F.struct(*fields))).alias("_i")]
    if text:
        agg.append(F.first("q_vec").alias("q_vec"))
    g = rows.groupBy("query_id", "qid", "split").agg(*agg)
    if k:
        g = g.withColumn("_i", F.slice("_i", 1, k))
    text_cols: list[Column | str] = [F.flatten(F.col("_i.t_vec")).alias("t_vec"), "q_vec"] if text else []
    out = g.select(
        "query_id",
        "qid",
        "split",
        F.size("_i").alias("n"),
        F.col("_i.offer_id").alias("offer_id"),
        F.col("_i.position").alias("position"),
        F.col("_i.label").alias("label"),
        F.col("_i.grade").alias("grade"),
        *[F.col(f"_i.s_{s}").alias(s) for s in scores],
        F.flatten(F.col("_i.x")).alias("x"),
        *text_cols,
    )
    return out


def score_slates(
    slates: DataFrame, model_bc: Broadcast[Any], column: str, k: int, threads: int, batch: int = 256
) -> DataFrame:
    """Adds ``column`` (array<float>): the DNN's scores of each slate's first ``k`` offers, and below
    them the rest in first-stage order (scores that keep them there)."""
    import pyarrow as pa

    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from retrieval.ranking.dnn import score, slate_batch
        from retrieval.training.spark_inference import task_setup, worker_model

        model = worker_model(model_bc.value, task_setup(threads))
        n_feat, dim = len(model.cfg.features), model.cfg.text_dim
        for rb in batches:
            table = pa.Table.from_batches([rb])
            out = []
            for lo in range(0, table.num_rows, batch):
                part = table.slice(lo, batch)
                s = score(model, slate_batch(part, n_feat, dim))
                for i, n in enumerate(part.column("n").to_pylist()):
                    out.append(rerank_top(s[i, :n], k))
            yield pa.RecordBatch.from_arrays(
                [*rb.columns, pa.array(out, type=pa.list_(pa.float32()))], names=[*rb.schema.names, column]
            )

    schema = f"{', '.join(f'`{f.name}` {f.dataType.simpleString()}' for f in slates.schema.fields)}, {column} array<float>"
    return map_in_arrow(slates, score_partition, schema)


def rerank_top(dnn: np.ndarray, k: int) -> list[float]:
    """Final scores of a slate in first-stage order: the first ``k`` by ``dnn``, then the rest as they were."""
    n = len(dnn)
    out = np.empty(n, dtype=np.float64)
    top = min(k, n)
    ranks = np.empty(top, dtype=np.float64)
    ranks[np.argsort(-dnn[:top], kind="stable")] = np.arange(top)
    out[:top] = n - ranks  # n .. n - top + 1
    out[top:] = n - np.arange(top, n)  # below every reranked offer, in the given order
    return out.astype(np.float32).tolist()


def _padded(
    t: Any, name: str, groups: np.ndarray, fill: float, order: np.ndarray | None = None
) -> np.ndarray:
    """A list column of slates -> [B, max n] float64, padding (and nulls) = ``fill``; each row's
    entries permuted by ``order`` [B, max n] when given."""
    from retrieval.ranking.evaluation import pad_groups

    flat = t.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    out = pad_groups(np.nan_to_num(flat.astype(np.float64), nan=fill), groups, fill)
    return out if order is None else np.take_along_axis(out, order, axis=1)


def slate_metrics(
    slates: DataFrame, methods: Sequence[str], generator: dict[str, Any] | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """Mean metrics of every method over the slates: {target: {metric: {method: value}}}.

    Targets: ``labels`` (logged grades) and ``truth`` (true grades, where the slates have them).
    Metrics: ndcg_at_{5,10,30}, mrr (first label >= 1; against the truth, first grade-3 offer: the
    product searched for), and ``slates`` (how many counted). ``production`` scores the logged
    position order, every other method its score array. With ``generator`` (the config the synthetic
    marketplace was generated with), also ``ceiling``: the generator's own click model's ranking
    (``synth.oracle.expected_label_gain``), against the labels only (against true grades the ceiling
    is 1 by definition).
    """
    import pyarrow as pa

    cols = ["position", "label", "grade", *[m for m in methods if m != "production"]]
    if generator is not None:
        cols.append("offer_id")

    def partial_sums(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from retrieval.ranking import evaluation
        from retrieval.synth.oracle import expected_label_gain

        cat = None
        if generator is not None:
            from retrieval.config import from_dict
            from retrieval.synth.catalog import Catalog

            made = from_dict(generator)
            cat = Catalog(made.synth, made.seed)

        acc: dict[tuple[str, str, str], list[float]] = {}
        for rb in batches:
            t = pa.Table.from_batches([rb])
            groups = np.array([len(x) for x in t.column("position").to_pylist()])
            if len(groups) == 0:
                continue

            # Slates hold offers in first-stage order; put them back in the logged order, so that a
            # method's ties fall back to the logged position, never to another method's order.
            logged = np.argsort(_padded(t, "position", groups, np.inf), axis=1, kind="stable")
            position = _padded(t, "position", groups, np.inf, logged)
            targets = {"labels": (_padded(t, "label", groups, -1, logged).astype(np.int64), 1)}
            if t.column("grade").combine_chunks().flatten().null_count == 0:
                targets["truth"] = (_padded(t, "grade", groups, -1, logged).astype(np.int64), 3)
            scorers = {
                m: -position if m == "production" else _padded(t, m, groups, -np.inf, logged) for m in methods
            }
            if cat is not None:
                gains = [
                    expected_label_gain(cat, np.asarray(o, dtype=np.int64), np.asarray(p_), np.asarray(g_))
                    for o, p_, g_ in zip(
                        t.column("offer_id").to_pylist(),
                        t.column("position").to_pylist(),
                        t.column("grade").to_pylist(),
                        strict=True,
                    )
                ]
                flat = np.concatenate(gains) if gains else np.zeros(0)
                scorers["ceiling"] = np.take_along_axis(
                    evaluation.pad_groups(flat, groups, -np.inf), logged, axis=1
                )
            for m, s in scorers.items():
                for target, (y, rel) in targets.items():
                    if m == "ceiling" and target != "labels":
                        continue
                    sm = evaluation.slate_metrics(s, y, KS, rel)
                    for name, v in [*((f"ndcg_at_{k}", sm.ndcg[k]) for k in KS), ("mrr", sm.rr)]:
                        got = acc.setdefault((target, name, m), [0.0, 0.0])
                        got[0] += float(np.nansum(v))
                        got[1] += float((~np.isnan(v)).sum())
        keys = list(acc)
        yield pa.RecordBatch.from_pydict(
            {
                "target": [k[0] for k in keys],
                "metric": [k[1] for k in keys],
                "method": [k[2] for k in keys],
                "total": [acc[k][0] for k in keys],
                "count": [acc[k][1] for k in keys],
            }
        )

    from pyspark.sql import functions as F

    sums = "target string, metric string, method string, total double, count double"
    rows = (
        map_in_arrow(slates.select(*cols), partial_sums, sums)
        .groupBy("target", "metric", "method")
        .agg(F.sum("total").alias("total"), F.sum("count").alias("count"))
        .collect()
    )
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        value = round(r["total"] / r["count"], 4) if r["count"] else float("nan")
        out.setdefault(r["target"], {}).setdefault(r["metric"], {})[r["method"]] = value
        if r["metric"] == "ndcg_at_10":
            out[r["target"]].setdefault("slates", {})[r["method"]] = int(r["count"])
    return out
