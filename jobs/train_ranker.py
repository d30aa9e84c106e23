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

from typing import Any

from retrieval.artifacts import encoder_dir
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.encoder.model import OfferTower
from retrieval.ranking.spark_train import BASELINE_METHODS, dnn_stage, ranker_metrics, xgb_stage
from retrieval.training.models import load_model


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    stage = cfg.ranker.stage
    result: dict[str, Any] = {"stage_run": stage, "outputs": {}}
    methods = list(BASELINE_METHODS)
    if stage in ("all", "xgb"):
        encoder = load_model(OfferTower, encoder_dir(cfg.paths.root)) if cfg.ranker.text else None
        result["xgb"] = xgb_stage(spark, cfg, encoder)
        result["outputs"].update(result["xgb"].pop("outputs"))
    if stage in ("all", "dnn"):
        dnn = dnn_stage(spark, cfg)
        result["dnn"] = dnn["dnn"]
        result["outputs"].update(dnn["outputs"])
        methods += list(dnn["dnn"])
    return {**result, **ranker_metrics(spark, cfg, methods, scored=stage in ("all", "dnn"))}


if __name__ == "__main__":
    job_main("train_ranker", run, __doc__)
