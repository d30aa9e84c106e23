"""SparkXGBRanker's known failure mode (query groups split across partitions), and the fix.

XGBoost's ranking objectives take a partition's rows as its query groups: a group split over two
partitions trains as two smaller groups on two workers, silently. ``group_partitions`` keeps each
group whole and position-sorted; these tests show the failure, the fix, and that the XGBoost
wrapper's own sort on top keeps the position order that ``lambdarank_unbiased`` reads.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from retrieval.ranking import evaluation
from retrieval.ranking.spark_ranker import check_groups, fit_xgb, group_partitions, prepare_groups, with_qid


def ltr_rows(queries: int = 80, per_query: int = 24, seed: int = 0) -> list[tuple[Any, ...]]:
    """Groups of offers whose grade follows feature a (plus noise), listed in a noisy order."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(queries):
        a = rng.normal(size=per_query)
        grade = np.clip(np.round(a + 0.5 * rng.normal(size=per_query) + 1), 0, 3).astype(int)
        order = np.argsort(-(a + rng.normal(size=per_query)))
        for pos, i in enumerate(order, start=1):
            rows.append((f"q{q}", pos, int(grade[i]), float(a[i]), float(rng.normal())))
    return rows


@pytest.fixture(scope="module")
def frame(spark: Any) -> Any:
    df = spark.createDataFrame(ltr_rows(), "query_id string, position int, label int, a double, b double")
    return with_qid(df).cache()


CFG = SimpleNamespace(xgb_workers=2, xgb_rounds=20, xgb_depth=3, xgb_eta=0.3, xgb_pairs=8)


def test_group_partitions_keeps_groups_whole_and_sorted(frame: Any) -> None:
    from xgboost.spark import SparkXGBRanker

    grouped = group_partitions(frame, 2)
    check_groups(grouped)
    # What SparkXGBRanker feeds XGBoost (its own select and sort by qid, position kept as a feature
    # here to see it): over prepare_groups' cached frame the position order survives.
    est = SparkXGBRanker(features_col=["position", "a"], label_col="label", qid_col="qid", num_workers=2)
    prepared = prepare_groups(frame, 2)
    fed, _ = est._prepare_input(prepared)
    check_groups(fed)
    prepared.unpersist()
    with pytest.raises(ValueError, match="prepare_groups"):
        fit_xgb(grouped, ["a"], "p", False, CFG, seed=0)
    assert frame.select("qid").distinct().count() == 80 == frame.select("query_id").distinct().count()
    with pytest.raises(ValueError, match="split across partitions"):
        check_groups(frame.repartition(2).sortWithinPartitions("qid", "position"))


def ndcg_of(model: Any, frame: Any) -> float:
    pdf = model.transform(frame).select("qid", "position", "label", "p").toPandas()
    pdf = pdf.sort_values(["qid", "position"])
    groups = pdf.groupby("qid", sort=False).size().to_numpy()
    s = evaluation.pad_groups(pdf["p"].to_numpy(), groups, -np.inf)
    y = evaluation.pad_groups(pdf["label"].to_numpy(), groups, -1)
    return evaluation.mean(evaluation.ndcg(s, y, 10))


def test_split_groups_train_a_different_model(frame: Any) -> None:
    """The failure mode, reproduced: the same rows with groups split across the two partitions (which
    the wrapper does not repartition, as their count equals num_workers) train a different model;
    whole groups train the one single-process XGBoost trains."""
    import xgboost as xgb
    from xgboost.spark import SparkXGBRanker

    prepared = prepare_groups(frame, 2)
    whole = fit_xgb(prepared, ["a", "b"], "p", False, CFG, seed=0)
    prepared.unpersist()
    split_input = frame.repartition(2).sortWithinPartitions("qid", "position")
    split = SparkXGBRanker(
        features_col=["a", "b"],
        label_col="label",
        qid_col="qid",
        prediction_col="p",
        num_workers=2,
        objective="rank:ndcg",
        n_estimators=CFG.xgb_rounds,
        max_depth=CFG.xgb_depth,
        learning_rate=CFG.xgb_eta,
        lambdarank_pair_method="topk",
        lambdarank_num_pair_per_sample=CFG.xgb_pairs,
        random_state=0,
    ).fit(split_input)
    pdf = frame.toPandas().sort_values(["qid", "position"])
    single = xgb.XGBRanker(
        objective="rank:ndcg",
        n_estimators=CFG.xgb_rounds,
        max_depth=CFG.xgb_depth,
        learning_rate=CFG.xgb_eta,
        lambdarank_pair_method="topk",
        lambdarank_num_pair_per_sample=CFG.xgb_pairs,
        random_state=0,
    ).fit(pdf[["a", "b"]], pdf["label"], qid=pdf["qid"])
    p_whole = whole.transform(frame).sort("qid", "position").select("p").toPandas()["p"].to_numpy()
    p_split = split.transform(frame).sort("qid", "position").select("p").toPandas()["p"].to_numpy()
    p_single = single.predict(pdf[["a", "b"]])
    assert np.abs(p_whole - p_split).max() > 1e-3  # split groups: other pairs, other gradients
    assert np.corrcoef(p_whole, p_single)[0, 1] > 0.99
    assert ndcg_of(whole, frame) > 0.8


def test_slate_metrics_break_ties_by_the_logged_position(spark: Any) -> None:
    """Slates are stored in first-stage order; a method whose scores tie everywhere must score as the
    logged order, not inherit the first stage's order."""
    from retrieval.ranking.spark_ranker import slate_metrics

    # logged positions 3, 1, 2 (first-stage order), grades 3, 0, 1
    rows = [("q0", [3, 1, 2], [1, 0, 0], [3, 0, 1], [0.0, 0.0, 0.0], [9.0, 1.0, 5.0])]
    df = spark.createDataFrame(
        rows,
        "query_id string, position array<int>, label array<int>, grade array<int>, flat array<float>, fs array<float>",
    )
    got = slate_metrics(df, ["production", "flat", "fs"])
    truth = got["truth"]["ndcg_at_10"]
    assert truth["flat"] == truth["production"] < truth["fs"] == 1.0
