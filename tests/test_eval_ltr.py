"""eval_ltr end to end on a small SVMlight set written here (qid: fields): every method, every seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import make_config


def write_set(path: Path, queries: int, seed: int) -> None:
    from sklearn.datasets import dump_svmlight_file

    rng = np.random.default_rng(seed)
    xs, ys, qs = [], [], []
    for q in range(queries):
        n = int(rng.integers(5, 20))
        x = rng.random((n, 6))
        score = 2 * x[:, 0] + x[:, 1] + 0.3 * rng.normal(size=n)
        ys.append(np.digitize(score, [1.2, 1.8, 2.4]))
        xs.append(x)
        qs.append(np.full(n, q + 1))
    dump_svmlight_file(
        np.vstack(xs), np.concatenate(ys), str(path), query_id=np.concatenate(qs), zero_based=False
    )


@pytest.mark.slow
def test_eval_ltr_writes_every_method_beside_lightgbm(spark: Any, tmp_path: Path) -> None:
    from jobs import eval_ltr

    write_set(tmp_path / "train.svm", 120, seed=1)
    write_set(tmp_path / "test.svm", 40, seed=2)
    cfg = make_config(
        tmp_path / "root",
        f"ltr.train={tmp_path / 'train.svm'}",
        f"ltr.test={tmp_path / 'test.svm'}",
        "ltr.name=toy",
        f"paths.results={tmp_path}",
        "ltr.seeds=2",
        "ltr.bootstrap=200",
        "ltr.dnn_epochs=[3, 6]",
        "ranker.xgb_rounds=30",
    )
    out = eval_ltr.run(spark, cfg)
    saved = json.loads((tmp_path / "toy.json").read_text())
    methods = {"lightgbm_lambdarank", "xgb", "dnn_ndcg_loss2pp", "dnn_neural_ndcg"}
    assert set(saved["methods"]) == methods == set(out["ndcg_at_10"])
    assert saved["test"]["queries"] == 40 and saved["seeds"] == 2
    assert set(saved["notes"]["dnn_epochs"]["ndcg_loss2pp"]["validation_ndcg_at_10"]) == {"3", "6"}
    for m in methods:
        for k in (1, 3, 5, 10):
            entry = saved["methods"][m][f"ndcg_at_{k}"]
            assert (
                len(entry["per_seed"]) == 2
                and entry["bootstrap_95"][0] <= entry["mean"] <= entry["bootstrap_95"][1]
            )
    # a learnable set: every method is far above a random order, XGBoost near LightGBM
    assert min(out["ndcg_at_10"].values()) > 0.75
    assert out["ndcg_at_10"]["xgb"] > out["ndcg_at_10"]["lightgbm_lambdarank"] - 0.05
