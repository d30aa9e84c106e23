"""The LTR benchmark (eval_ltr), pure parts: per-query NDCG of any scorer on an SVMlight test file,
LightGBM lambdarank (the peer), our DNN reranker fitted in this process, the DNN's epochs chosen on a
validation split of the training file, and the seed x bootstrap aggregation of the results.

Queries whose labels are all 0 have no ideal ordering and are left out of the means (LightGBM and
XGBoost count them as 1 by default); the count is reported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from retrieval.config import Config, ConfigError, TrainingSection
from retrieval.ranking import evaluation
from retrieval.ranking.svmlight import RankData

KS = (1, 3, 5, 10)
PerQuery = dict[int, np.ndarray]  # {k: [queries] NDCG@k}


def per_query_ndcg(scores: np.ndarray, data: RankData) -> PerQuery:
    """{k: [queries] NDCG@k} of flat scores over the file's query groups (NaN: no relevant document)."""
    g = data.groups
    s, y = evaluation.pad_groups(scores.astype(np.float64), g, -np.inf), evaluation.pad_groups(data.y, g, -1)
    return {k: evaluation.ndcg(s, y, k) for k in KS}


def lightgbm_scores(train: RankData, test: RankData, seed: int) -> np.ndarray:
    """LGBMRanker(objective='lambdarank') with default parameters: the peer every method is set beside."""
    try:
        import lightgbm as lgb
    except ImportError:
        raise ConfigError(
            "eval_ltr compares with LightGBM: pip install lightgbm==4.6.0 (scripts/setup_env.sh --dev has it)"
        ) from None
    model = lgb.LGBMRanker(objective="lambdarank", random_state=seed, verbose=-1)
    model.fit(train.x, train.y, group=train.groups)
    return np.asarray(model.predict(test.x))


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


def padded(data: RankData) -> tuple[np.ndarray, np.ndarray]:
    """(x [B, L, F] float32, y [B, L] int64, -1 padded): the file's queries as slates."""
    y = evaluation.pad_groups(data.y, data.groups, -1)
    x = np.zeros((*y.shape, data.x.shape[1]), dtype=np.float32)
    x[y != -1] = data.x
    return x, y


def dnn_scores(
    cfg: Config, loss: str, train: RankData, test: RankData, seed: int, work: str, epochs: int
) -> np.ndarray:
    """Our DNN reranker (``cfg.ranker``'s kind and width) on the file's features, loss ``loss`` with the
    arguments ``cfg.ranker.losses`` gives it, trained in this process on every core; flat test scores."""
    from retrieval.ranking.dnn import Reranker, RerankerConfig, SlateBatch, feature_stats, score
    from retrieval.ranking.worker import fit_reranker
    from retrieval.training.models import load_model

    rk = cfg.ranker
    spec = next(s for s in rk.losses if s.name == loss)
    slates = os.path.join(work, f"slates-{len(train.y)}")  # one per training set (full, or a part)
    if not os.path.exists(slates):
        write_slates(train, slates)
    x, y = padded(train)
    model = RerankerConfig(
        features=[f"f{i}" for i in range(x.shape[2])], kind=rk.dnn_kind, hidden=rk.dnn_hidden
    )
    out = os.path.join(work, f"{loss}-{seed}-{epochs}-{len(train.y)}")
    in_process = TrainingSection(num_processes=1, threads=0)
    optim = (epochs, cfg.ltr.dnn_batch_size, rk.dnn_lr)
    fit_reranker(
        slates, out, model.to_dict(), feature_stats(x, y), spec, optim, in_process, seed, progress_s=0
    )
    x_test, y_test = padded(test)
    empty = np.zeros((len(y_test), 0), np.float32)
    batch = SlateBatch(x_test, empty, np.zeros((*y_test.shape, 0), np.float32), y_test)
    return score(load_model(Reranker, out), batch)[y_test != -1]


def split_queries(data: RankData, share: float, seed: int) -> tuple[RankData, RankData]:
    """(train part, validation part): whole queries, about ``share`` of them held out, seeded."""
    qids = np.unique(data.qid)
    held = set(
        np.random.default_rng(seed).choice(qids, max(1, int(len(qids) * share)), replace=False).tolist()
    )
    mask = np.array([q in held for q in data.qid])
    return RankData(data.x[~mask], data.y[~mask], data.qid[~mask]), RankData(
        data.x[mask], data.y[mask], data.qid[mask]
    )


def choose_epochs(cfg: Config, loss: str, train: RankData, work: str) -> dict[str, Any]:
    """The DNN's epochs, picked on a validation split of the *training* file (the test file never is)."""
    fit, valid = split_queries(train, cfg.ltr.valid_share, cfg.seed)
    scores = {
        e: evaluation.mean(per_query_ndcg(dnn_scores(cfg, loss, fit, valid, 0, work, e), valid)[10])
        for e in cfg.ltr.dnn_epochs
    }
    best = max(scores, key=lambda e: scores[e])
    return {"epochs": best, "validation_ndcg_at_10": {str(e): round(v, 4) for e, v in scores.items()}}


def aggregate(
    per_seed: Mapping[str, Sequence[PerQuery]],
    seconds: Mapping[str, float],
    rng: np.random.Generator,
    rounds: int,
) -> dict[str, Any]:
    """Per method and k: the mean NDCG@k over seeds, its spread, each seed's, and a bootstrap interval
    over test queries of the seed-averaged per-query NDCG."""
    results: dict[str, Any] = {}
    for name, runs in per_seed.items():
        entry: dict[str, Any] = {"seconds": seconds[name]}
        for k in KS:
            means = np.array([evaluation.mean(r[k]) for r in runs])
            lo, hi = evaluation.bootstrap_interval(np.mean([r[k] for r in runs], axis=0), rng, rounds)
            entry[f"ndcg_at_{k}"] = {
                "mean": round(float(means.mean()), 4),
                "std_over_seeds": round(float(means.std()), 4),
                "per_seed": [round(float(v), 4) for v in means],
                "bootstrap_95": [round(lo, 4), round(hi, 4)],
            }
        results[name] = entry
    return results


def payload(
    cfg: Config,
    train: RankData,
    test: RankData,
    results: dict[str, Any],
    counted: int,
    chosen: dict[str, Any],
) -> dict[str, Any]:
    """The benchmark file (``kind: ltr``): the data, every method's figures, the gaps to LightGBM."""
    c, rk = cfg.ltr, cfg.ranker
    peer = results["lightgbm_lambdarank"]["ndcg_at_10"]["mean"]
    return {
        "kind": "ltr",
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
        "ndcg_at_10_minus_lightgbm": {
            m: round(r["ndcg_at_10"]["mean"] - peer, 4)
            for m, r in results.items()
            if m != "lightgbm_lambdarank"
        },
        "notes": {
            "lightgbm_lambdarank": "LGBMRanker(objective='lambdarank'), default parameters",
            "xgb": f"SparkXGBRanker rank:ndcg, {rk.xgb_rounds} rounds, depth {rk.xgb_depth}, "
            f"eta {rk.xgb_eta} (train_ranker's stage)",
            "dnn": f"{rk.dnn_kind} reranker over the standardised features; epochs chosen among "
            f"{c.dnn_epochs} on {c.valid_share:.0%} of the training queries held out",
            "dnn_epochs": chosen,
            "excluded": "test queries without a relevant document are left out of every mean",
        },
    }


def run_seeds(
    methods: Mapping[str, Any], test: RankData, seeds: int, work: str
) -> tuple[dict[str, list[PerQuery]], dict[str, float]]:
    """Every method (``fit(seed, work) -> flat test scores``) for seeds 0..seeds-1: its per-query NDCG
    per seed, and its seconds."""
    import logging
    import time

    per_seed: dict[str, list[PerQuery]] = {}
    seconds: dict[str, float] = {}
    for name, fit in methods.items():
        t0 = time.perf_counter()
        per_seed[name] = [per_query_ndcg(fit(seed, work), test) for seed in range(seeds)]
        seconds[name] = round(time.perf_counter() - t0, 1)
        logging.getLogger(__name__).info("%s: %d seeds in %.1f s", name, seeds, seconds[name])
    return per_seed, seconds


def table_lines(results: dict[str, Any]) -> list[str]:
    """One line per method: NDCG@k mean ± std over seeds, for every k."""
    return [
        f"{m:<22} "
        + "  ".join(
            f"@{k} {r[f'ndcg_at_{k}']['mean']:.4f}±{r[f'ndcg_at_{k}']['std_over_seeds']:.4f}" for k in KS
        )
        for m, r in results.items()
    ]
