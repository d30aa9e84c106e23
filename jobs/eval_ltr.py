"""eval_ltr: our rankers beside LightGBM lambdarank on a public learning-to-rank set.

    ./submit.sh eval_ltr --set ltr.train=../shared/data/ltr_lambdarank/rank.train \\
        --set ltr.test=../shared/data/ltr_lambdarank/rank.test --set ltr.name=ltr_lambdarank

SVMlight files with `qid:` fields or `<file>.query` side files. Every method is trained `ltr.seeds`
times (seed 0..n-1) in one run and scored on the test file: NDCG@{1,3,5,10} per seed, their mean and
spread, and a bootstrap interval over test queries (of the seed-averaged per-query NDCG). Methods:
LightGBM `lambdarank` with default parameters (the peer), our XGBoost stage (SparkXGBRanker, the
`ranker.xgb_*` parameters of train_ranker), and our DNN reranker per loss in `ranker.losses` over the
features (the same model and training function as train_ranker, in one process: a few hundred
queries), its epochs chosen on a validation split of the training file. Queries whose labels are all
0 are left out of the means; the count is in the JSON. Writes <paths.results>/<name>.json.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from retrieval import storage
from retrieval.cli import job_main
from retrieval.config import Config, ConfigError
from retrieval.ranking import benchmark
from retrieval.ranking.spark_benchmark import xgb_scores
from retrieval.ranking.svmlight import load


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    c = cfg.ltr
    if not (c.train and c.test and c.name):
        raise ConfigError("eval_ltr needs --set ltr.train=<file> --set ltr.test=<file> --set ltr.name=<name>")
    train = load(c.train)
    test = load(c.test, n_features=train.x.shape[1])
    chosen: dict[str, Any] = {}

    def dnn(loss: str) -> Callable[[int, str], np.ndarray]:
        def fit(seed: int, work: str) -> np.ndarray:
            chosen.setdefault(loss, benchmark.choose_epochs(cfg, loss, train, work))
            return benchmark.dnn_scores(cfg, loss, train, test, seed, work, chosen[loss]["epochs"])

        return fit

    methods: dict[str, Callable[[int, str], np.ndarray]] = {
        "lightgbm_lambdarank": lambda seed, _: benchmark.lightgbm_scores(train, test, seed),
        "xgb": lambda seed, _: xgb_scores(spark, cfg, train, test, seed),
        **{f"dnn_{spec.name}": dnn(spec.name) for spec in cfg.ranker.losses},
    }
    with tempfile.TemporaryDirectory(prefix="eval_ltr-") as work:
        per_seed, seconds = benchmark.run_seeds(methods, test, c.seeds, work)
    results = benchmark.aggregate(per_seed, seconds, np.random.default_rng(cfg.seed), c.bootstrap)
    counted = int((~np.isnan(per_seed["xgb"][0][10])).sum())
    out = storage.join(cfg.paths.results, f"{c.name}.json")
    storage.write_json_atomic(out, benchmark.payload(cfg, train, test, results, counted, chosen))
    head = f"NDCG on {counted} of {len(test.groups)} test queries, mean ± std over {c.seeds} seeds:"
    return {
        "ndcg_at_10": {m: r["ndcg_at_10"]["mean"] for m, r in results.items()},
        "rows_out": len(test.y),
        "outputs": {f"{c.name}.json": out},
        "summary": [head, *benchmark.table_lines(results)],
        "results": storage.read_json(out),
    }


if __name__ == "__main__":
    job_main("eval_ltr", run, __doc__)
