"""train_ranker on the tiny marketplace: every method scored on the same test searches, in one run."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import TEST_CONFIG, make_config


@pytest.fixture(scope="module")
def ranked(spark: Any, trained: dict[str, Any]) -> dict[str, Any]:
    from jobs import train_ranker
    from retrieval.cli import run_stage

    return run_stage(spark, trained["cfg"], "train_ranker", train_ranker.run, TEST_CONFIG)


@pytest.mark.slow
def test_learned_rankers_beat_the_logged_order(ranked: dict[str, Any], trained: dict[str, Any]) -> None:
    from retrieval.stage_metrics import missing_keys, read_stage_metrics

    assert missing_keys("train_ranker", read_stage_metrics(trained["root"], "train_ranker")) == []
    truth = ranked["ndcg_at_10"]
    methods = {"production", "bm25", "xgb", "xgb_unbiased", "dnn_ndcg_loss2pp", "dnn_neural_ndcg"}
    assert set(truth) == methods == set(ranked["mrr"])
    # against the logged labels, the generator's own click model ranks too: the ceiling of that metric
    labels = ranked["ndcg_at_10_labels"]
    assert set(labels) == methods | {"ceiling"}
    assert labels["ceiling"] > max(v for m, v in labels.items() if m != "ceiling")
    assert ranked["against"] == "true grades"
    # honest margins, all measured on the same test searches in this run
    assert truth["xgb"] > truth["production"] + 0.05
    assert truth["xgb_unbiased"] > truth["production"] + 0.05
    assert min(truth["dnn_ndcg_loss2pp"], truth["dnn_neural_ndcg"]) > truth["production"] + 0.03
    ev = ranked["evaluation"]["truth"]
    assert set(ev) == {"ndcg_at_5", "ndcg_at_10", "ndcg_at_30", "mrr", "slates"}
    assert ev["slates"]["production"] == ev["slates"]["dnn_neural_ndcg"] > 300


@pytest.mark.slow
def test_slates_hold_whole_listings_and_the_dnn_runs_alone(
    spark: Any, trained: dict[str, Any], ranked: dict[str, Any]
) -> None:
    """Test slates keep every offer of a listing; `ranker.stage=dnn` retrains on the slates the xgb
    stage wrote and reports every method again."""
    from jobs import train_ranker
    from retrieval import tables
    from retrieval.cli import run_stage
    from retrieval.spark_tables import read_table

    root = trained["root"]
    test = read_table(spark, root, tables.RANKER_TEST_SCORED)
    listings = read_table(spark, root, tables.LISTINGS)
    row = test.orderBy("query_id").first()
    shown = listings.where(listings.query_id == row["query_id"]).count()
    assert row["n"] == shown == len(row["offer_id"]) == len(row["dnn_ndcg_loss2pp"])
    assert sorted(row["position"]) == list(range(1, shown + 1))
    cfg = make_config(root, "ranker.stage=dnn", "ranker.losses=[listnet]", "ranker.ablate_ips=true")
    again = run_stage(spark, cfg, "train_ranker", train_ranker.run, TEST_CONFIG)
    methods = {"production", "bm25", "xgb", "xgb_unbiased", "dnn_listnet", "dnn_listnet_no_ips"}
    assert set(again["ndcg_at_10"]) == methods
    assert "dnn_listnet_minus_no_ips" in again["position_bias_correction"]
    assert again["ndcg_at_10"]["xgb"] == ranked["ndcg_at_10"]["xgb"]
