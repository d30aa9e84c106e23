"""mine_pairs and mine_listings on conf/test.yaml: planted structure recovered, Spark equal to the pure code."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import pytest

from retrieval import stage_metrics, storage, tables
from retrieval.mining.pairs import Pair, mine_pairs, top_partner_share
from retrieval.spark_tables import read_table

pytestmark = pytest.mark.spark


def test_pairs_recover_products_and_clusters(mined: dict[str, Any]) -> None:
    m = mined["mine_pairs"]
    # an offer's top-10 co-click partners are its product's other sellers and its cluster's substitutes
    # far more often than random partners
    assert m["same_product_at_10"] > 0.1 and m["same_product_at_10"] > 30 * m["random_same_product"]
    assert m["same_cluster_at_10"] > 0.4 and m["same_cluster_at_10"] > 30 * m["random_same_cluster"]
    assert (
        stage_metrics.missing_keys(
            "mine_pairs", stage_metrics.read_stage_metrics(mined["root"], "mine_pairs")
        )
        == []
    )


def test_spark_pairs_equal_the_pure_ones_on_the_marketplace(spark: Any, mined: dict[str, Any]) -> None:
    root, cfg = mined["root"], mined["cfg"]
    events = [
        r.asDict()
        for r in read_table(spark, root, tables.EVENTS)
        .select("session_id", "ts", "event", "offer_id")
        .collect()
    ]
    expected = mine_pairs(events, cfg.pairs, mined["mine_pairs"]["test_start"])
    got = sorted(Pair(*r) for r in read_table(spark, root, tables.PAIRS).collect())
    assert len(got) == len(expected) > 1000
    assert [(p.query_offer_id, p.item_offer_id, p.split) for p in got] == [
        (p.query_offer_id, p.item_offer_id, p.split) for p in expected
    ]
    assert [p.weight for p in got] == pytest.approx([p.weight for p in expected])
    # and the structure metric agrees with the pure computation
    truth = {r.offer_id: r.product_id for r in read_table(spark, root, tables.TRUTH_OFFER_PRODUCT).collect()}
    train = [p for p in got if p.split == "train"]
    assert top_partner_share(train, truth) == pytest.approx(
        mined["mine_pairs"]["same_product_at_10"], abs=1e-4
    )


def test_listings_are_graded_and_complete(spark: Any, mined: dict[str, Any]) -> None:
    """Test listings whole; of a training listing every click and the top keep_top rows, and the
    unclicked rest thinned with weight 1 / rate, so weights sum to the rows shown."""
    from pyspark.sql import functions as F

    root, cfg = mined["root"], mined["cfg"].listings
    listings = read_table(spark, root, tables.LISTINGS)
    events = read_table(spark, root, tables.EVENTS)
    searches = events.where("event = 'search'")
    shown = searches.select("query_id", F.size("listing").alias("shown"))
    per_search = (
        listings.groupBy("query_id", "split")
        .agg(F.count(F.lit(1)).alias("kept"), F.sum("weight").alias("weights"))
        .join(shown, "query_id")
    )
    assert per_search.count() == searches.count() == listings.select("query_id").distinct().count()
    assert per_search.where("split = 'test' and kept != shown").count() == 0
    assert listings.where("split = 'test' and weight != 1.0").count() == 0
    train = per_search.where("split = 'train'").agg(F.sum("kept"), F.sum("weights"), F.sum("shown")).first()
    assert train is not None
    kept, weights, shown_train = (float(v) for v in train)
    if cfg.negative_rate < 1.0:
        assert kept < 0.9 * shown_train
    assert weights == pytest.approx(shown_train, rel=0.02)
    top = listings.where(f"split = 'train' and position <= {cfg.keep_top}").count()
    assert (
        top
        == searches.join(listings.where("split = 'train'").select("query_id").distinct(), "query_id")
        .selectExpr(f"sum(least(size(listing), {cfg.keep_top}))")
        .first()[0]
    )
    # every click on a listed offer became a label >= 1; grades only 0..3
    clicks = events.where("event = 'click'").select("query_id", "offer_id").distinct()
    labelled = listings.where("label >= 1").select("query_id", "offer_id")
    assert clicks.subtract(labelled).count() == 0
    assert {r.label for r in listings.select("label").distinct().collect()} == {0, 1, 2, 3}
    assert listings.where("propensity <= 0 or propensity > 1.0001 or price_rank < 1").count() == 0
    m = stage_metrics.read_stage_metrics(root, "mine_listings")
    assert stage_metrics.missing_keys("mine_listings", m) == []


def test_propensity_estimate_is_close_to_the_true_examination_curve(mined: dict[str, Any]) -> None:
    m = mined["mine_listings"]
    saved = storage.read_json(m["outputs"]["position_bias model"])
    assert saved["examination"][:30] == pytest.approx(m["propensity"]["estimated"], abs=1e-5)
    assert m["propensity_mae"] < 0.10
    est = m["propensity"]["estimated"]
    assert est[0] == 1.0 and all(a >= b for a, b in itertools.pairwise(est))  # monotone fit


def test_priors_do_not_leak_test_outcomes(spark: Any, mined: dict[str, Any]) -> None:
    """Priors come from the training split only: relabelling test rows does not change any prior."""
    root = mined["root"]
    listings = read_table(spark, root, tables.LISTINGS)
    clicks_by_offer: dict[int, int] = defaultdict(int)
    for r in listings.where("split = 'test' and label > 0").select("offer_id").collect():
        clicks_by_offer[r.offer_id] += 1
    # an offer clicked a lot in the test period but never shown in training has the global prior only
    # shown in training: every row of a training search's listing, thinned away or not
    train_queries = listings.where("split = 'train'").select("query_id").distinct()
    shown = (
        read_table(spark, root, tables.EVENTS)
        .where("event = 'search'")
        .join(train_queries, "query_id")
        .selectExpr("explode(listing) as offer_id")
        .distinct()
    )
    train_offers = {r.offer_id for r in shown.collect()}
    unseen = [o for o in clicks_by_offer if o not in train_offers]
    if unseen:
        priors = {
            r.ctr_prior
            for r in listings.where(listings.offer_id.isin(unseen[:50])).select("ctr_prior").collect()
        }
        assert len(priors) == 1
