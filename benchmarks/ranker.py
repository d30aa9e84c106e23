"""Benchmark: SparkXGBRanker training time versus single-process xgboost on the same rows, rounds and
threads; and the DNN reranker's training throughput (offers/s, slates/s) per loss. One run.

    .venv/bin/python -m benchmarks.ranker [--queries 20000] [--per-query 120] [--threads 2] [--rounds 100]

The data is generated here (seeded): `queries` listings of about `per-query` offers with 11 features
and graded labels, so anyone can rerun it without a pipeline run. XGBoost: the stage's own fit
(retrieval.ranking.spark_ranker.fit_xgb: `threads` workers of one thread each on local[threads], query
groups kept whole) against xgboost.XGBRanker with nthread=`threads` on the same numpy rows; the ratio
is single-process time / Spark time (1.0 = no overhead). DNN: one process with `threads` torch threads
training through the same feed and worker function train_ranker uses, on slates written as parquet.
Results go to benchmarks/results/ranker.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def make_data(queries: int, per_query: int, features: int, seed: int) -> dict[str, Any]:
    """Listings with log-uniform lengths around ``per_query``; grades from a noisy linear score."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(np.log(per_query / 4), np.log(per_query * 2), queries)).astype(int).clip(2)
    n = int(sizes.sum())
    x = rng.normal(size=(n, features)).astype(np.float32)
    w = rng.normal(size=features)
    y = np.digitize(x @ w + rng.normal(size=n) * 2, np.quantile(x @ w, [0.7, 0.9, 0.97])).astype(np.int64)
    qid = np.repeat(np.arange(queries), sizes)
    pos = np.concatenate([np.arange(1, s + 1) for s in sizes])
    return {"x": x, "y": y, "qid": qid, "position": pos, "sizes": sizes}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=20000)
    p.add_argument("--per-query", type=int, default=120)
    p.add_argument("--features", type=int, default=11)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--dnn-slates", type=int, default=8000)
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "ranker.json"))
    a = p.parse_args(argv)

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import xgboost as xgb

    from retrieval import config
    from retrieval.ranking.dnn import RerankerConfig, feature_stats
    from retrieval.ranking.evaluation import pad_groups
    from retrieval.ranking.spark_ranker import fit_xgb, prepare_groups
    from retrieval.ranking.worker import fit_reranker
    from retrieval.spark import get_spark

    d = make_data(a.queries, a.per_query, a.features, seed=7)
    names = [f"f{i}" for i in range(a.features)]
    cfg = config.load(
        None,
        [
            "paths.root=work/bench/ranker",
            f"spark.master=local[{a.threads}]",
            f"ranker.xgb_workers={a.threads}",
            f"ranker.xgb_rounds={a.rounds}",
        ],
    )
    rows = len(d["y"])
    print(
        f"{a.queries:,} queries, {rows:,} rows, {a.features} features, {a.rounds} rounds, {a.threads} threads"
    )

    t0 = time.perf_counter()
    single = xgb.XGBRanker(
        objective="rank:ndcg",
        n_estimators=a.rounds,
        max_depth=cfg.ranker.xgb_depth,
        learning_rate=cfg.ranker.xgb_eta,
        lambdarank_pair_method="topk",
        lambdarank_num_pair_per_sample=cfg.ranker.xgb_pairs,
        tree_method="hist",
        nthread=a.threads,
    ).fit(d["x"], d["y"], qid=d["qid"])
    single_s = time.perf_counter() - t0
    del single

    spark = get_spark(cfg, "bench-ranker")
    pdf = pd.DataFrame(d["x"].astype(np.float64), columns=names)
    pdf["label"], pdf["qid"], pdf["position"] = (
        d["y"].astype(np.int32),
        d["qid"],
        d["position"].astype(np.int32),
    )
    # the input is grouped and in memory before the clock starts, as the numpy arrays are
    frame = prepare_groups(spark.createDataFrame(pdf), a.threads)
    t0 = time.perf_counter()
    fit_xgb(frame, names, "score", False, cfg.ranker, seed=0)
    spark_s = time.perf_counter() - t0
    frame.unpersist()
    spark.stop()

    # The DNN: slates of the first dnn_slates queries, one process, `threads` torch threads.
    k = min(a.dnn_slates, a.queries)
    sizes = d["sizes"][:k]
    n = int(sizes.sum())
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    slates_dir = os.path.join(REPO, "work", "bench", "ranker", "slates")
    shutil.rmtree(slates_dir, ignore_errors=True)
    os.makedirs(slates_dir)
    table = pa.table(
        {
            "n": sizes.astype(np.int32),
            "label": [d["y"][s : s + m].tolist() for s, m in zip(starts, sizes, strict=True)],
            "x": [d["x"][s : s + m].ravel().tolist() for s, m in zip(starts, sizes, strict=True)],
        }
    )
    pq.write_table(table, os.path.join(slates_dir, "part-0.parquet"))
    y_pad = pad_groups(d["y"][:n], sizes, -1)
    x_pad = np.zeros((*y_pad.shape, a.features), dtype=np.float32)
    x_pad[y_pad != -1] = d["x"][:n]
    mean, std = feature_stats(x_pad, y_pad)
    rcfg = RerankerConfig(features=names, hidden=cfg.ranker.dnn_hidden)
    dnn: dict[str, Any] = {}
    in_process = config.TrainingSection(num_processes=1, threads=a.threads)
    for spec in cfg.ranker.losses:
        loss = spec.name
        out = os.path.join(REPO, "work", "bench", "ranker", loss)
        shutil.rmtree(out, ignore_errors=True)
        optim = (1, cfg.ranker.dnn_batch_size, cfg.ranker.dnn_lr)
        res = fit_reranker(
            slates_dir, out, rcfg.to_dict(), (mean, std), spec, optim, in_process, 0, progress_s=0
        )
        h = res["history"][-1]
        dnn[loss] = {"offers_per_s": h["offers_per_s"], "slates_per_s": h["slates_per_s"]}
        print(f"DNN {loss:<14} {h['offers_per_s']:>10,.0f} offers/s  {h['slates_per_s']:>8,.1f} slates/s")

    ratio = single_s / spark_s
    print(f"XGBoost: single process {single_s:.1f} s, SparkXGBRanker {spark_s:.1f} s -> ratio {ratio:.2f}")
    result = {
        "kind": "speed",
        "queries": a.queries,
        "rows": rows,
        "features": a.features,
        "rounds": a.rounds,
        "threads": a.threads,
        "xgb_single_process_s": round(single_s, 2),
        "xgb_spark_s": round(spark_s, 2),
        "xgb_single_over_spark": round(ratio, 3),
        "dnn": dnn,
        "dnn_slates": k,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
