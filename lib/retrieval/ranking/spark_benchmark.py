"""The LTR benchmark's Spark part: our XGBoost stage (SparkXGBRanker, train_ranker's parameters) fitted
on an SVMlight training file and scoring the test file."""

from __future__ import annotations

from typing import Any

import numpy as np

from retrieval.config import Config
from retrieval.ranking.spark_ranker import fit_xgb, prepare_groups
from retrieval.ranking.svmlight import RankData


def xgb_scores(spark: Any, cfg: Config, train: RankData, test: RankData, seed: int) -> np.ndarray:
    """Flat test scores of SparkXGBRanker (rank:ndcg, ``cfg.ranker.xgb_*``) trained on ``train``."""
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
