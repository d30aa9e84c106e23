"""train_ranker's two stages on Spark: the XGBoost stage (searches, features, SparkXGBRanker, slates)
and the DNN stage (one reranker per loss on the training slates, scoring the test slates), then the
metrics of every method on the same test slates.

XGBoost and the DNN learn from disjoint training searches: the XGBoost scores the DNN takes as input
are then out of sample, as they are on test searches and at serving time (in-sample scores are better
than they will ever be again, and the DNN learns to trust them too much).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from retrieval import commit, storage, tables
from retrieval.artifacts import content_version, publish_model, retain_models, run_dir
from retrieval.config import Config, runtime
from retrieval.ranking.spark_ranker import (
    BASELINES,
    FIRST_STAGE,
    build_slates,
    fit_xgb,
    numeric,
    prepare_groups,
    sample_searches,
    score_slates,
    slate_metrics,
    text_vectors,
    with_qid,
)
from retrieval.spark_tables import exists, read_table, write_table
from retrieval.synth.oracle import generator_config

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)
ORDER = "xgb_unbiased"  # the first-stage score that orders slates and picks the DNN's top rerank_k


def dnn_inputs(cfg: Config) -> list[str]:
    """The DNN's numeric inputs: the XGBoost features and both XGBoost scores."""
    return [*cfg.ranker.features, *FIRST_STAGE]


def with_grades(spark: SparkSession, root: str, listings: DataFrame, searches: DataFrame) -> DataFrame:
    """Adds ``grade``: the true relevance where the data has it (synthetic), else null. For grading only.
    ``searches`` (query_id, a bounded sample) narrows the truth before the join: it has a row per
    offer shown in every search."""
    from pyspark.sql import functions as F

    if not exists(root, tables.TRUTH_RELEVANCE):
        return listings.withColumn("grade", F.lit(None).cast("int"))
    truth = read_table(spark, root, tables.TRUTH_RELEVANCE).join(F.broadcast(searches), "query_id")
    grades = truth.select("query_id", "offer_id", F.col("grade").cast("int").alias("grade"))
    return listings.join(grades, ["query_id", "offer_id"], "left")


def search_roles(listings: DataFrame, cfg: Config) -> DataFrame:
    """(query_id, role): the searches XGBoost trains on (``xgb``), the DNN trains on (``dnn``, disjoint
    unless ranker.dnn_queries is 0 or XGBoost takes every search) and every method is scored on (``test``)."""
    from pyspark.sql import functions as F

    rk = cfg.ranker
    per_search = listings.groupBy("query_id", "split").agg(F.max("label").alias("_top")).cache()
    xgb_q = sample_searches(per_search, "train", rk.train_queries, cfg.seed, clicked_only=True)
    dnn_q = xgb_q
    if rk.dnn_queries and rk.train_queries:
        rest = sample_searches(
            per_search, "train", rk.dnn_queries, cfg.seed, clicked_only=True, skip=rk.train_queries
        )
        if rest.limit(1).count():  # else XGBoost took every search: the DNN trains on them too
            dnn_q = rest
        else:
            log.warning("XGBoost takes every training search: the DNN trains on the same ones")
    test_q = sample_searches(per_search, "test", rk.eval_queries, cfg.seed, clicked_only=False)
    return (
        xgb_q.withColumn("role", F.lit("xgb"))
        .union(dnn_q.withColumn("role", F.lit("dnn")))
        .union(test_q.withColumn("role", F.lit("test")))
    )


def with_text(spark: SparkSession, root: str, encoder: Any, rows: DataFrame, scored: DataFrame) -> DataFrame:
    """Adds ``t_vec`` (title) and ``q_vec`` (query) text vectors from the trained ``encoder``'s bags
    (``encoder.model.text_vectors``; zeros where a text is missing)."""
    from pyspark.sql import functions as F

    from retrieval.training.spark_inference import broadcast_model

    bc = broadcast_model(spark, encoder)
    offers = read_table(spark, root, tables.OFFERS).join(rows.select("offer_id").distinct(), "offer_id")
    t_vec = text_vectors(offers.select("offer_id", "title"), "offer_id", "title", bc, 1)
    q_vec = text_vectors(rows.select("query_id", "query_text").distinct(), "query_id", "query_text", bc, 1)
    zeros = F.array_repeat(F.lit(0.0).cast("float"), encoder.cfg.embed_dim)
    return (
        scored.join(t_vec.withColumnRenamed("vec", "t_vec"), "offer_id", "left")
        .join(q_vec.withColumnRenamed("vec", "q_vec"), "query_id", "left")
        .withColumn("t_vec", F.coalesce("t_vec", zeros))
        .withColumn("q_vec", F.coalesce("q_vec", zeros))
    )


def xgb_stage(spark: SparkSession, cfg: Config, encoder: Any = None) -> dict[str, Any]:
    """Two SparkXGBRanker models (``xgb``, ``xgb_unbiased``) on sampled training searches, their
    scores on every sampled search, and the slates: the DNN's training slates and the test slates,
    with ``encoder``'s text vectors of query and title where ranker.text asks for them."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    root, rk = cfg.paths.root, cfg.ranker
    listings = read_table(spark, root, tables.LISTINGS)
    # the sampled searches (bounded by ranker.*_queries), each with its dense qid, then their rows
    roles = with_qid(search_roles(listings, cfg)).cache()
    sampled = listings.join(F.broadcast(roles), "query_id")
    rows = numeric(with_grades(spark, root, sampled, roles.select("query_id").distinct()), rk.features)
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    train = prepare_groups(rows.where(F.col("role") == "xgb"), rk.xgb_workers)
    counts = {
        r["role"]: (r["q"], r["n"])
        for r in rows.groupBy("role")
        .agg(F.countDistinct("query_id").alias("q"), F.count(F.lit(1)).alias("n"))
        .collect()
    }
    models, seconds = {}, {}
    for name, unbiased in (("xgb", False), ("xgb_unbiased", True)):
        t0 = time.perf_counter()
        models[name] = fit_xgb(train, rk.features, name, unbiased, rk, cfg.seed)
        seconds[name] = round(time.perf_counter() - t0, 1)
        log.info("%s fitted in %.1f s", name, seconds[name])
    train.unpersist()
    # a new version directory, committed with the stage (never a model deleted before its rewrite)
    with commit.committed(root, "models/ranker") as xgb_dir:
        for name, m in models.items():
            m.write().save(storage.to_uri(storage.join(xgb_dir, name)))
    scored = rows
    for m in models.values():
        scored = m.transform(scored)
    if rk.text:
        if encoder is None:
            raise ValueError(
                "ranker.text needs the trained encoder (train_encoder), or --set ranker.text=false"
            )
        scored = with_text(spark, root, encoder, rows, scored)
    inputs, score_cols = dnn_inputs(cfg), ["bm25", *FIRST_STAGE]
    parts = max(4, 2 * runtime(cfg, "ranker").num_processes)
    train_slates = build_slates(
        scored.where(F.col("role") == "dnn"), ORDER, inputs, rk.rerank_k, score_cols, rk.text
    )
    train_uri = write_table(
        # the same files, rows and order on every run (the feed is seeded)
        train_slates.repartition(parts, "qid").sortWithinPartitions("qid"),
        root,
        tables.RANKER_TRAIN_SLATES,
    )
    test_slates = build_slates(scored.where(F.col("role") == "test"), ORDER, inputs, 0, score_cols, rk.text)
    test_uri = write_table(test_slates, root, tables.RANKER_TEST_SLATES)
    rows.unpersist()
    return {
        "searches": {s: int(q) for s, (q, _) in counts.items()},
        "rows": {s: int(n) for s, (_, n) in counts.items()},
        "xgb_seconds": seconds,
        "xgb_model": xgb_dir,
        "outputs": {
            "ranker/train_slates": train_uri,
            "ranker/test_slates": test_uri,
            "xgboost models": xgb_dir,
        },
    }


def dnn_stage(spark: SparkSession, cfg: Config) -> dict[str, Any]:
    """One DNN per loss of ranker.losses (``dnn_<loss>``; with ranker.ablate_ips the first loss again
    without inverse-propensity gains, ``dnn_<loss>_no_ips``) on the training slates, each then scoring
    the test slates' top rerank_k on the executors."""
    from retrieval.ranking.dnn import Reranker, RerankerConfig, feature_stats, slate_batch
    from retrieval.ranking.losses import LOSSES
    from retrieval.ranking.worker import fit_reranker
    from retrieval.training.components import resolve
    from retrieval.training.models import load_model
    from retrieval.training.spark_inference import broadcast_model

    root, rk, rt = cfg.paths.root, cfg.ranker, runtime(cfg, "ranker")
    for i, spec in enumerate(rk.losses):  # a bad loss or argument fails here, not in a training process
        resolve(spec.name, spec.args, LOSSES, f"ranker.losses[{i}]")
    train_slates = read_table(spark, root, tables.RANKER_TRAIN_SLATES)
    inputs = dnn_inputs(cfg)
    sample = slate_batch(train_slates.limit(2000).toArrow(), len(inputs), 0)  # standardisation stats
    if sample.x.shape[2] != len(inputs):
        raise ValueError(
            f"slates hold {sample.x.shape[2]} features, ranker.features + scores are {len(inputs)}"
        )
    stats = feature_stats(sample.x, sample.y)
    first = train_slates.select("q_vec").first() if "q_vec" in train_slates.columns else None
    dim = len(first["q_vec"]) if first is not None else 0
    model = RerankerConfig(features=inputs, text_dim=dim, kind=rk.dnn_kind, hidden=rk.dnn_hidden).to_dict()
    n_slates = train_slates.count()
    slates_dir = storage.absolute(tables.path(root, tables.RANKER_TRAIN_SLATES))
    runs = [(f"dnn_{spec.name}", spec, rk.dnn_ips) for spec in rk.losses]
    if rk.dnn_ips and rk.ablate_ips:
        runs.append((f"dnn_{rk.losses[0].name}_no_ips", rk.losses[0], False))
    trained: dict[str, Any] = {}
    run_dirs: list[str] = []
    scored = read_table(spark, root, tables.RANKER_TEST_SLATES)
    for name, spec, ips in runs:
        described = {"reranker": model, "loss": dataclasses.asdict(spec), "ips": ips, "slates": n_slates}
        identity = {**described, "ranker": dataclasses.asdict(rk), "seed": cfg.seed}
        out_dir = storage.absolute(run_dir(root, "reranker", content_version(identity)))
        run_dirs.append(out_dir)
        result = fit_reranker(
            slates_dir,
            out_dir,
            model,
            stats,
            spec,
            (rk.dnn_epochs, rk.dnn_batch_size, rk.dnn_lr),
            rt,
            cfg.seed,
            cfg.progress_s,
            ips_feature=inputs.index("propensity") if ips else -1,
        )
        data = {"slates": commit.version_of(slates_dir)}
        version, final = publish_model(root, "reranker", out_dir, {**identity, "data_version": data})
        trained[name] = {**result, "model": final, "version": version, "loss": spec.name, "ips": ips}
        scored = score_slates(
            scored, broadcast_model(spark, load_model(Reranker, final)), name, rk.rerank_k, 1
        )
    retain_models(root, "reranker", {t["version"] for t in trained.values()}, set(run_dirs))
    uri = write_table(scored, root, tables.RANKER_TEST_SCORED)
    return {"dnn": trained, "outputs": {"ranker/test_scored": uri}}


def ranker_metrics(spark: SparkSession, cfg: Config, methods: list[str], scored: bool) -> dict[str, Any]:
    """nDCG@{5,10,30} and MRR of ``methods`` on the test slates (with the DNNs' scores when ``scored``),
    against the true grades where known, else the logged labels; and what position-bias correction buys."""
    rk = cfg.ranker
    table = tables.RANKER_TEST_SCORED if scored else tables.RANKER_TEST_SLATES
    made = generator_config(cfg.paths.root)  # synthetic data: the generator's click model is the ceiling
    generator = dataclasses.asdict(made) if made is not None else None
    figures = slate_metrics(read_table(spark, cfg.paths.root, table), methods, generator)
    target = "truth" if "truth" in figures else "labels"
    main, labels = figures[target], figures["labels"]
    best = main["ndcg_at_10"]
    bias: dict[str, Any] = {"xgb_unbiased_minus_xgb": round(best["xgb_unbiased"] - best["xgb"], 4)}
    first = rk.losses[0].name
    if f"dnn_{first}_no_ips" in best:
        bias[f"dnn_{first}_minus_no_ips"] = round(best[f"dnn_{first}"] - best[f"dnn_{first}_no_ips"], 4)
    against = "true grades" if target == "truth" else "logged labels"
    return {
        "ndcg_at_10": main["ndcg_at_10"],
        "ndcg_at_10_labels": labels["ndcg_at_10"],
        "mrr": main["mrr"],
        "against": against,
        "evaluation": figures,
        "rows_out": int(main["slates"].get("production", 0)),
        "position_bias_correction": {**bias, "against": against},
        "summary": [
            f"nDCG@10 against {against} on {main['slates'].get('production', 0):,} test searches: "
            + ", ".join(f"{m} {best[m]:.4f}" for m in methods),
            "nDCG@10 against clicks/purchases: "
            + ", ".join(f"{m} {labels['ndcg_at_10'][m]:.4f}" for m in methods)
            + (
                f"; ceiling (the generator's click model) {labels['ndcg_at_10']['ceiling']:.4f}"
                if "ceiling" in labels["ndcg_at_10"]
                else ""
            ),
            *(["against true grades the ceiling is 1 by definition"] if target == "truth" else []),
            "position-bias correction (nDCG@10 gained): "
            + ", ".join(f"{k} {v:+.4f}" for k, v in bias.items()),
        ],
    }


BASELINE_METHODS = [*BASELINES, *FIRST_STAGE]
