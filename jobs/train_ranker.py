"""train_ranker: learning to rank the search listings, an XGBoost stage then a DNN reranker.

    ./submit.sh train_ranker [--set ranker.stage=all|xgb|dnn] [--set ranker.losses='[ndcg_loss2pp]']

xgb: sampled training searches (with a click) and test searches from `listings`; two SparkXGBRanker
models (rank:ndcg) on the listing features, one plain (`xgb`) and one with XGBoost's position-bias
correction (`xgb_unbiased`, lambdarank_unbiased: the row order within a query is its position); their
scores, the features and the encoder's text vectors of query and title go into slates (one listing per
row) under ranker/. dnn: one reranker per loss in `ranker.losses` (`dnn_<loss>`), trained with
TorchDistributor on the training slates' top `ranker.rerank_k` offers by the `xgb_unbiased` score, then
scores the test slates on the executors. Metrics: nDCG@{5,10,30} and MRR of every method on the same
test slates, against the logged labels and (synthetic data) the true grades; `production` is the
logged order, `bm25` the BM25 score alone.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import functions as F

from retrieval import storage, tables
from retrieval.artifacts import content_version, encoder_dir, model_dir
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.encoder.distributed import launch
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

log = logging.getLogger(__name__)
ORDER = "xgb_unbiased"  # the first-stage score that orders slates and picks the DNN's top rerank_k


def dnn_inputs(cfg: Config) -> list[str]:
    """The DNN's numeric inputs: the XGBoost features and both XGBoost scores."""
    return [*cfg.ranker.features, *FIRST_STAGE]


def xgb_stage(spark: Any, cfg: Config) -> dict[str, Any]:
    root, rk = cfg.paths.root, cfg.ranker
    listings = read_table(spark, root, tables.LISTINGS)
    truth_uri = tables.path(root, tables.TRUTH_RELEVANCE)
    if exists(spark, truth_uri):
        truth = read_table(spark, root, tables.TRUTH_RELEVANCE)
        listings = listings.join(truth.withColumnRenamed("grade", "_g"), ["query_id", "offer_id"], "left")
        listings = listings.withColumn("grade", F.col("_g").cast("int")).drop("_g")
    else:
        listings = listings.withColumn("grade", F.lit(None).cast("int"))
    # XGBoost and the DNN learn from disjoint training searches: the XGBoost scores the DNN takes as
    # input are then out of sample, as they are on test searches and at serving time (in-sample scores
    # are better than they will ever be again, and the DNN learns to trust them too much).
    xgb_q = sample_searches(listings, "train", rk.train_queries, cfg.seed, clicked_only=True)
    if rk.dnn_queries and rk.train_queries:
        dnn_q = sample_searches(
            listings, "train", rk.dnn_queries, cfg.seed, clicked_only=True, skip=rk.train_queries
        )
    else:  # no disjoint sample asked for (or XGBoost takes every search): the same searches
        dnn_q = xgb_q
    test_q = sample_searches(listings, "test", rk.eval_queries, cfg.seed, clicked_only=False)
    roles = (
        xgb_q.withColumn("role", F.lit("xgb"))
        .union(dnn_q.withColumn("role", F.lit("dnn")))
        .union(test_q.withColumn("role", F.lit("test")))
    )
    rows = with_qid(numeric(listings.join(F.broadcast(roles), "query_id"), rk.features))
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
    version = content_version(
        {"ranker": dataclasses.asdict(rk), "seed": cfg.seed, "train": counts.get("xgb")}
    )
    train.unpersist()
    xgb_dir = model_dir(root, "ranker", version)
    for name, m in models.items():
        m.write().overwrite().save(storage.join(xgb_dir, name))
    scored = rows
    for m in models.values():
        scored = m.transform(scored)
    if rk.text:
        from retrieval.encoder.model import load
        from retrieval.encoder.spark_embed import broadcast_model

        encoder = load(encoder_dir(root))
        bc = broadcast_model(spark, encoder)
        offers = read_table(spark, root, tables.OFFERS)
        ids = rows.select("offer_id").distinct()
        t_vec = text_vectors(
            offers.join(ids, "offer_id").select("offer_id", "title"), "offer_id", "title", bc, 1
        )
        q_vec = text_vectors(
            rows.select("query_id", "query_text").distinct(), "query_id", "query_text", bc, 1
        )
        scored = scored.join(t_vec.withColumnRenamed("vec", "t_vec"), "offer_id", "left").join(
            q_vec.withColumnRenamed("vec", "q_vec"), "query_id", "left"
        )
        dim = encoder.cfg.embed_dim
        zeros = F.array_repeat(F.lit(0.0).cast("float"), dim)
        scored = scored.withColumn("t_vec", F.coalesce("t_vec", zeros)).withColumn(
            "q_vec", F.coalesce("q_vec", zeros)
        )
    inputs = dnn_inputs(cfg)
    score_cols = ["bm25", *FIRST_STAGE]
    parts = max(4, 2 * rk.num_processes)
    train_uri = write_table(
        build_slates(scored.where(F.col("role") == "dnn"), ORDER, inputs, rk.rerank_k, score_cols, rk.text)
        .repartition(parts, "qid")
        .sortWithinPartitions("qid"),  # the same files, rows and order on every run (the feed is seeded)
        root,
        tables.RANKER_TRAIN_SLATES,
    )
    test_uri = write_table(
        build_slates(scored.where(F.col("role") == "test"), ORDER, inputs, 0, score_cols, rk.text),
        root,
        tables.RANKER_TEST_SLATES,
    )
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


def dnn_stage(spark: Any, cfg: Config) -> dict[str, Any]:
    from retrieval.encoder.spark_embed import broadcast_model
    from retrieval.ranking.distributed import RerankArgs, train_worker
    from retrieval.ranking.dnn import RerankerConfig, feature_stats, load, loss_args, slate_batch

    root, rk, t = cfg.paths.root, cfg.ranker, cfg.train
    train_slates = read_table(spark, root, tables.RANKER_TRAIN_SLATES)
    test_slates = read_table(spark, root, tables.RANKER_TEST_SLATES)
    text = "q_vec" in train_slates.columns
    inputs = dnn_inputs(cfg)
    if rk.dnn_ips and "propensity" not in inputs:
        raise ValueError(
            "ranker.dnn_ips needs `propensity` among ranker.features (or --set ranker.dnn_ips=false)"
        )
    sample = slate_batch(train_slates.limit(2000).toArrow(), len(inputs), 0)  # standardisation stats
    if sample.x.shape[2] != len(inputs):
        raise ValueError(
            f"slates hold {sample.x.shape[2]} features, ranker.features + scores are {len(inputs)}"
        )
    mean, std = feature_stats(sample.x, sample.y)
    dim = len(train_slates.select("q_vec").first()["q_vec"]) if text else 0
    rcfg = RerankerConfig(features=inputs, text_dim=dim, kind=rk.dnn_kind, hidden=rk.dnn_hidden)
    n_slates = train_slates.count()
    slates_dir = storage.absolute(tables.path(root, tables.RANKER_TRAIN_SLATES))
    trained: dict[str, Any] = {}
    scored = test_slates
    # (method name, loss, inverse-propensity gains): one DNN per loss, and with ranker.ablate_ips the
    # first loss once more on the raw labels, to measure what the position-bias correction buys.
    runs = [(f"dnn_{loss}", loss, rk.dnn_ips) for loss in rk.losses]
    if rk.dnn_ips and rk.ablate_ips:
        runs.append((f"dnn_{rk.losses[0]}_no_ips", rk.losses[0], False))
    for name, loss, ips in runs:
        version = content_version(
            {
                "reranker": rcfg.to_dict(),
                "loss": loss,
                "ips": ips,
                "ranker": dataclasses.asdict(rk),
                "slates": n_slates,
                "seed": cfg.seed,
            }
        )
        out_dir = storage.absolute(model_dir(root, "reranker", version))
        args = dataclasses.asdict(
            RerankArgs(
                slates=slates_dir,
                model_dir=out_dir,
                reranker=rcfg.to_dict(),
                mean=mean.tolist(),
                std=std.tolist(),
                loss=loss,
                loss_args=loss_args(rk, loss),
                ips_feature=inputs.index("propensity") if ips else -1,
                feed=t.feed,
                epochs=rk.dnn_epochs,
                batch_size=rk.dnn_batch_size,
                lr=rk.dnn_lr,
                seed=cfg.seed,
                use_gpu=t.use_gpu,
                threads=t.threads,
            )
        )
        result = launch(
            train_worker, args, rk.num_processes, t.local_mode, t.use_gpu, t.retries, t.fallback_single
        )
        trained[name] = {**result, "model": out_dir, "loss": loss, "ips": ips}
        bc = broadcast_model(spark, load(out_dir))  # (token, state bytes, config): any model with a cfg
        scored = score_slates(scored, bc, name, rk.rerank_k, 1)
    uri = write_table(scored, root, tables.RANKER_TEST_SCORED)
    return {"dnn": trained, "outputs": {"ranker/test_scored": uri}}


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, rk = cfg.paths.root, cfg.ranker
    result: dict[str, Any] = {"stage_run": rk.stage, "outputs": {}}
    if rk.stage in ("all", "xgb"):
        info = xgb_stage(spark, cfg)
        result["outputs"].update(info.pop("outputs"))
        result["xgb"] = info
    methods = [*BASELINES, *FIRST_STAGE]
    slates_table = tables.RANKER_TEST_SLATES
    if rk.stage in ("all", "dnn"):
        info = dnn_stage(spark, cfg)
        result["outputs"].update(info.pop("outputs"))
        result["dnn"] = info["dnn"]
        methods += list(info["dnn"])
        slates_table = tables.RANKER_TEST_SCORED
    figures = slate_metrics(read_table(spark, root, slates_table), methods)
    target = "truth" if "truth" in figures else "labels"
    main, labels = figures[target], figures["labels"]
    result.update(
        {
            "ndcg_at_10": main["ndcg_at_10"],
            "ndcg_at_10_labels": labels["ndcg_at_10"],
            "mrr": main["mrr"],
            "against": "true grades" if target == "truth" else "logged labels",
            "evaluation": figures,
            "rows_out": int(main["slates"].get("production", 0)),
        }
    )
    best = main["ndcg_at_10"]
    bias: dict[str, Any] = {"xgb_unbiased_minus_xgb": round(best["xgb_unbiased"] - best["xgb"], 4)}
    ablation = f"dnn_{rk.losses[0]}_no_ips"
    if ablation in best:
        bias[f"dnn_{rk.losses[0]}_minus_no_ips"] = round(best[f"dnn_{rk.losses[0]}"] - best[ablation], 4)
    result["position_bias_correction"] = {**bias, "against": result["against"]}
    result["summary"] = [
        f"nDCG@10 against {result['against']} on {main['slates'].get('production', 0):,} test searches: "
        + ", ".join(f"{m} {best[m]:.4f}" for m in methods),
        "nDCG@10 against clicks/purchases: "
        + ", ".join(f"{m} {labels['ndcg_at_10'][m]:.4f}" for m in methods),
        "position-bias correction (nDCG@10 gained): " + ", ".join(f"{k} {v:+.4f}" for k, v in bias.items()),
    ]
    return result


if __name__ == "__main__":
    job_main("train_ranker", run, __doc__)
