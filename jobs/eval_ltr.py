"""eval_ltr: our rankers beside LightGBM lambdarank on a public learning-to-rank set.

    ./submit.sh eval_ltr --set ltr.train=../shared/data/ltr_lambdarank/rank.train \\
        --set ltr.test=../shared/data/ltr_lambdarank/rank.test --set ltr.name=ltr_lambdarank

SVMlight files with `qid:` fields or `<file>.query` side files. Every method is trained `ltr.seeds`
times (seed 0..n-1) in one run and scored on the test file: NDCG@{1,3,5,10} per seed, their mean and
spread, and a bootstrap interval over test queries (of the seed-averaged per-query NDCG). Methods:
LightGBM `lambdarank` with default parameters (the peer), our XGBoost stage (SparkXGBRanker, the
`ranker.xgb_*` parameters of train_ranker), and our DNN reranker per loss in `ranker.losses` over the
features (the same model and training function as train_ranker, in one process: a few hundred
queries). Queries whose labels are all 0 have no ideal ordering and are left out of the means (LightGBM
and XGBoost count them as 1 by default); the count is in the JSON. Writes <ltr.results_dir>/<name>.json.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from retrieval import storage
from retrieval.cli import job_main
from retrieval.config import Config, ConfigError
from retrieval.ranking import metrics as M
from retrieval.ranking.svmlight import RankData, load

log = logging.getLogger(__name__)
KS = (1, 3, 5, 10)


def per_query_ndcg(scores: np.ndarray, data: RankData) -> dict[int, np.ndarray]:
    """{k: [queries] NDCG@k} of flat scores over the test file's groups (NaN: no relevant document)."""
    g = data.groups
    s, y = M.pad_groups(scores.astype(np.float64), g, -np.inf), M.pad_groups(data.y, g, -1)
    return {k: M.ndcg(s, y, k) for k in KS}


def lightgbm_scores(train: RankData, test: RankData, seed: int) -> np.ndarray:
    try:
        import lightgbm as lgb
    except ImportError:
        raise ConfigError(
            "eval_ltr compares with LightGBM: pip install lightgbm==4.6.0 (scripts/setup_env.sh --dev has it)"
        ) from None
    model = lgb.LGBMRanker(objective="lambdarank", random_state=seed, verbose=-1)
    model.fit(train.x, train.y, group=train.groups)
    return np.asarray(model.predict(test.x))


def xgb_scores(spark: Any, cfg: Config, train: RankData, test: RankData, seed: int) -> np.ndarray:
    from retrieval.ranking.spark_ranker import fit_xgb, prepare_groups

    names = [f"f{i}" for i in range(train.x.shape[1])]

    def frame(d: RankData) -> Any:
        import pandas as pd

        pdf = pd.DataFrame(d.x.astype(np.float64), columns=names)
        pdf["label"] = d.y.astype(np.int32)
        pdf["qid"] = d.qid.astype(np.int64)
        pdf["position"] = np.arange(len(d.y), dtype=np.int32)  # the file's order within a query
        pdf["row"] = np.arange(len(d.y), dtype=np.int64)
        return spark.createDataFrame(pdf)

    prepared = prepare_groups(frame(train), cfg.ranker.xgb_workers)
    model = fit_xgb(prepared, names, "score", False, cfg.ranker, seed)
    prepared.unpersist()
    out = model.transform(frame(test)).select("row", "score").toPandas().sort_values("row")
    return out["score"].to_numpy()


def write_slates(data: RankData, path: str) -> None:
    """One slate per query (labels, flattened features) as parquet, for the reranker's feed."""
    g = data.groups
    starts = np.concatenate([[0], np.cumsum(g)[:-1]])
    rows = {
        "n": g.astype(np.int32),
        "label": [data.y[s : s + n].tolist() for s, n in zip(starts, g, strict=True)],
        "x": [data.x[s : s + n].ravel().tolist() for s, n in zip(starts, g, strict=True)],
    }
    os.makedirs(path, exist_ok=True)
    pq.write_table(pa.table(rows), os.path.join(path, "part-0.parquet"))


def dnn_scores(
    cfg: Config, loss: str, train: RankData, test: RankData, seed: int, work: str, epochs: int
) -> np.ndarray:
    from retrieval.ranking.distributed import RerankArgs, train_worker
    from retrieval.ranking.dnn import (
        Reranker,
        RerankerConfig,
        SlateBatch,
        feature_stats,
        load,
        loss_args,
        score,
    )

    rk = cfg.ranker
    slates = os.path.join(work, f"slates-{len(train.y)}")  # one per training set (full, or a part)
    if not os.path.exists(slates):
        write_slates(train, slates)
    n_feat = train.x.shape[1]
    y_pad = M.pad_groups(train.y, train.groups, -1)
    x_pad = np.zeros((*y_pad.shape, n_feat), dtype=np.float32)
    x_pad[y_pad != -1] = train.x
    mean, std = feature_stats(x_pad, y_pad)
    rcfg = RerankerConfig(features=[f"f{i}" for i in range(n_feat)], kind=rk.dnn_kind, hidden=rk.dnn_hidden)
    out = os.path.join(work, f"{loss}-{seed}-{epochs}-{len(train.y)}")
    train_worker(
        dataclasses.asdict(
            RerankArgs(
                slates=slates,
                model_dir=out,
                reranker=rcfg.to_dict(),
                mean=mean.tolist(),
                std=std.tolist(),
                loss=loss,
                loss_args=loss_args(rk, loss),
                epochs=epochs,
                batch_size=cfg.ltr.dnn_batch_size,
                lr=rk.dnn_lr,
                seed=seed,
                threads=max(1, os.cpu_count() or 1),
                progress_s=0,
            )
        )
    )
    model: Reranker = load(out)
    y_test = M.pad_groups(test.y, test.groups, -1)
    x_test = np.zeros((*y_test.shape, n_feat), dtype=np.float32)
    x_test[y_test != -1] = test.x
    b = SlateBatch(
        x_test, np.zeros((len(y_test), 0), np.float32), np.zeros((*y_test.shape, 0), np.float32), y_test
    )
    return score(model, b)[y_test != -1]


def split_queries(data: RankData, share: float, seed: int) -> tuple[RankData, RankData]:
    """(train part, validation part): whole queries, about ``share`` of them held out, seeded."""
    qids = np.unique(data.qid)
    held = set(
        np.random.default_rng(seed).choice(qids, max(1, int(len(qids) * share)), replace=False).tolist()
    )
    mask = np.array([q in held for q in data.qid])
    part = lambda m: RankData(data.x[m], data.y[m], data.qid[m])  # noqa: E731
    return part(~mask), part(mask)


def choose_epochs(cfg: Config, loss: str, train: RankData, work: str) -> dict[str, Any]:
    """The DNN's epochs, picked on a validation split of the *training* file (the test file never is)."""
    fit, valid = split_queries(train, cfg.ltr.valid_share, cfg.seed)
    scores = {
        e: M.mean(per_query_ndcg(dnn_scores(cfg, loss, fit, valid, 0, work, e), valid)[10])
        for e in cfg.ltr.dnn_epochs
    }
    best = max(scores, key=lambda e: scores[e])
    return {"epochs": best, "validation_ndcg_at_10": {str(e): round(v, 4) for e, v in scores.items()}}


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    c = cfg.ltr
    if not (c.train and c.test and c.name):
        raise ConfigError("eval_ltr needs --set ltr.train=<file> --set ltr.test=<file> --set ltr.name=<name>")
    train = load(c.train)
    test = load(c.test, n_features=train.x.shape[1])
    methods: dict[str, Callable[[int, str], np.ndarray]] = {
        "lightgbm_lambdarank": lambda seed, _: lightgbm_scores(train, test, seed),
        "xgb": lambda seed, _: xgb_scores(spark, cfg, train, test, seed),
    }
    chosen: dict[str, dict[str, Any]] = {}

    def dnn(loss: str) -> Callable[[int, str], np.ndarray]:
        def fit(seed: int, work: str) -> np.ndarray:
            if loss not in chosen:
                chosen[loss] = choose_epochs(cfg, loss, train, work)
                log.info("dnn_%s: %s", loss, chosen[loss])
            return dnn_scores(cfg, loss, train, test, seed, work, chosen[loss]["epochs"])

        return fit

    for loss in cfg.ranker.losses:
        methods[f"dnn_{loss}"] = dnn(loss)
    per_seed: dict[str, list[dict[int, np.ndarray]]] = {m: [] for m in methods}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="eval_ltr-") as work:
        for name, fn in methods.items():
            t0 = time.perf_counter()
            for seed in range(c.seeds):
                per_seed[name].append(per_query_ndcg(fn(seed, work), test))
            seconds[name] = round(time.perf_counter() - t0, 1)
            log.info("%s: %d seeds in %.1f s", name, c.seeds, seconds[name])
    rng = np.random.default_rng(cfg.seed)
    results: dict[str, Any] = {}
    for name, runs in per_seed.items():
        entry: dict[str, Any] = {"seconds": seconds[name]}
        for k in KS:
            means = np.array([M.mean(r[k]) for r in runs])
            lo, hi = M.bootstrap_interval(np.mean([r[k] for r in runs], axis=0), rng, c.bootstrap)
            entry[f"ndcg_at_{k}"] = {
                "mean": round(float(means.mean()), 4),
                "std_over_seeds": round(float(means.std()), 4),
                "per_seed": [round(float(v), 4) for v in means],
                "bootstrap_95": [round(lo, 4), round(hi, 4)],
            }
        results[name] = entry
    counted = int((~np.isnan(per_seed["xgb"][0][10])).sum())
    peer = results["lightgbm_lambdarank"]["ndcg_at_10"]["mean"]
    gaps = {
        m: round(r["ndcg_at_10"]["mean"] - peer, 4) for m, r in results.items() if m != "lightgbm_lambdarank"
    }
    payload = {
        "dataset": c.name,
        "train": {"file": c.train, "queries": len(train.groups), "documents": len(train.y)},
        "test": {
            "file": c.test,
            "queries": len(test.groups),
            "documents": len(test.y),
            "queries_counted": counted,
        },
        "features": int(train.x.shape[1]),
        "seeds": c.seeds,
        "bootstrap_rounds": c.bootstrap,
        "methods": results,
        "ndcg_at_10_minus_lightgbm": gaps,
        "notes": {
            "lightgbm_lambdarank": "LGBMRanker(objective='lambdarank'), default parameters",
            "xgb": f"SparkXGBRanker rank:ndcg, {cfg.ranker.xgb_rounds} rounds, depth {cfg.ranker.xgb_depth}, "
            f"eta {cfg.ranker.xgb_eta} (train_ranker's stage)",
            "dnn": f"{cfg.ranker.dnn_kind} reranker over the standardised features; epochs chosen among "
            f"{cfg.ltr.dnn_epochs} on {cfg.ltr.valid_share:.0%} of the training queries held out",
            "dnn_epochs": chosen,
            "excluded": "test queries without a relevant document are left out of every mean",
        },
    }
    out = storage.join(c.results_dir, f"{c.name}.json")
    storage.write_json_atomic(out, payload)
    table = [
        f"{m:<22} "
        + "  ".join(
            f"@{k} {r[f'ndcg_at_{k}']['mean']:.4f}±{r[f'ndcg_at_{k}']['std_over_seeds']:.4f}" for k in KS
        )
        for m, r in results.items()
    ]
    return {
        "ndcg_at_10": {m: r["ndcg_at_10"]["mean"] for m, r in results.items()},
        "rows_out": len(test.y),
        "outputs": {f"{c.name}.json": out},
        "summary": [
            f"NDCG on {counted} of {len(test.groups)} test queries, mean ± std over {c.seeds} seeds:",
            *table,
        ],
        "results": json.loads(json.dumps(payload)),
    }


if __name__ == "__main__":
    job_main("eval_ltr", run, __doc__)
