"""Listing labels, features and the position-bias model: pure references, then Spark against them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from retrieval.config import ListingsSection
from retrieval.mining.listings import (
    PositionBias,
    bm25,
    bm25_idf,
    fit_position_bias,
    label_of,
    listing_features,
    propensity_mae,
    query_key,
    token_overlap,
    tokenize,
)


def test_tokenize_and_query_key() -> None:
    assert tokenize("iPhone-15 Pro, 128GB") == ["iphone", "15", "pro", "128gb"]
    assert tokenize(None) == [] and query_key("  Red  SHOES ") == "red shoes"


def test_label_grades() -> None:
    assert label_of([]) == 0 and label_of(["click"]) == 1 and label_of(["click", "cart"]) == 2
    assert label_of(["cart", "purchase", "click"]) == 3


def test_bm25_against_a_hand_computation() -> None:
    idf = {"red": bm25_idf(1, 3), "shoe": bm25_idf(2, 3)}
    title = ["red", "shoe", "shoe", "sale"]
    k1, b, avgdl = 1.2, 0.75, 3.0
    norm = k1 * (1 - b + b * 4 / avgdl)
    expected = idf["red"] * 1 * 2.2 / (1 + norm) + idf["shoe"] * 2 * 2.2 / (2 + norm)
    assert bm25(["red", "shoe", "shoe", "blue"], title, idf, avgdl, k1, b) == pytest.approx(expected)
    assert bm25(["blue"], title, idf, avgdl, k1, b) == 0.0
    assert bm25_idf(1, 3) == pytest.approx(math.log(1 + 2.5 / 1.5))


def test_token_overlap() -> None:
    assert token_overlap(["a", "b", "b"], ["b", "c"]) == 0.5 and token_overlap([], ["a"]) == 0.0


def simulate_pbm(theta: np.ndarray, pairs: int, seed: int, shown: int = 40) -> tuple[np.ndarray, ...]:
    """Clicks of a position-based model where each (query, offer) pair is shown ``shown`` times at random positions."""
    rng = np.random.default_rng(seed)
    gamma = rng.beta(1, 3, size=pairs)
    g = np.repeat(np.arange(pairs), shown)
    pos = rng.integers(1, len(theta) + 1, size=len(g))
    clicks = (rng.random(len(g)) < theta[pos - 1] * gamma[g]).astype(int)
    return g, pos, np.ones(len(g)), clicks


def test_em_recovers_a_known_examination_curve() -> None:
    theta = 0.9 * np.arange(1, 21) ** -0.7
    # EM's per-pair relevance is an incidental parameter: with few impressions per pair it biases the
    # curve (MAE 0.034 at 8 per pair in this set-up), with 40 it is consistent (0.0075).
    model = fit_position_bias(*simulate_pbm(theta, 4000, seed=1), max_position=20, iterations=100)
    assert propensity_mae(model.examination, theta) < 0.02
    assert model.eta == pytest.approx(0.7, abs=0.1)


def test_decreasing_fit_pools_violators() -> None:
    from retrieval.mining.listings import decreasing_fit

    np.testing.assert_allclose(
        decreasing_fit(np.array([3.0, 1.0, 2.0, 0.5]), np.ones(4)), [3.0, 1.5, 1.5, 0.5]
    )
    np.testing.assert_allclose(decreasing_fit(np.array([1.0, 2.0]), np.array([3.0, 1.0])), [1.25, 1.25])
    y = np.array([5.0, 4.0, 4.0, 1.0])
    np.testing.assert_allclose(decreasing_fit(y, np.ones(4)), y)


def test_em_ignores_pairs_seen_at_one_position() -> None:
    g, pos, n, c = simulate_pbm(np.arange(1, 11) ** -1.0, 2000, seed=2)
    # a pair always shown at position 1 and always clicked would pull theta_1 up if it were used
    g2 = np.concatenate([g, np.full(500, 10**6)])
    pos2 = np.concatenate([pos, np.ones(500, dtype=int)])
    n2, c2 = np.concatenate([n, np.ones(500)]), np.concatenate([c, np.ones(500)])
    a = fit_position_bias(g, pos, n, c, 10).examination
    b = fit_position_bias(g2, pos2, n2, c2, 10).examination
    np.testing.assert_allclose(a, b)


def test_em_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="clicks <= impressions"):
        fit_position_bias(np.array([0, 0]), np.array([1, 2]), np.array([1, 1]), np.array([2, 0]), 5)
    with pytest.raises(ValueError, match="no clicks"):
        fit_position_bias(np.array([0, 0]), np.array([1, 2]), np.array([1, 1]), np.array([0, 0]), 5)


def test_propensity_beyond_the_fitted_range_follows_the_power_law() -> None:
    model = PositionBias(np.array([1.0, 0.5, 0.25]), eta=1.0)
    np.testing.assert_allclose(model.propensity(np.array([1, 3, 6])), [1.0, 0.25, 0.125])


def test_listing_features_by_hand() -> None:
    offers = [
        {"price": 10.0, "title": "red shoe", "category_id": 1},
        {"price": None, "title": "blue shoe", "category_id": 1},
        {"price": 5.0, "title": "red hat", "category_id": 2},
        {"price": 10.0, "title": None, "category_id": None},
    ]
    f = listing_features("red shoe", offers, {"red": 1.0, "shoe": 0.5}, avgdl=2.0, top=2)
    assert [x["price_rank"] for x in f] == [2, 4, 1, 2]
    z = np.array([10.0, 5.0, 10.0])
    assert f[0]["price_z"] == pytest.approx((10 - z.mean()) / z.std(ddof=1)) and f[1]["price_z"] == 0.0
    assert [x["category_share"] for x in f] == [1.0, 1.0, 0.0, 0.0]
    assert [x["token_overlap"] for x in f] == [1.0, 0.5, 0.5, 0.0]
    assert f[3]["bm25"] == 0.0 and f[0]["bm25"] > f[1]["bm25"] > 0 and all(x["listing_size"] == 4 for x in f)


@pytest.mark.spark
def test_spark_listing_features_equal_the_pure_ones(spark: Any) -> None:
    from retrieval.mining import spark_listings
    from retrieval.mining.listings import bm25_idf as idf_of

    t0 = datetime(2026, 10, 1, 10)
    offers_rows = [
        (1, "Red Shoe sale", 1, 10.0),
        (2, "blue shoe", 1, None),
        (3, "red hat", 2, 5.0),
        (4, None, None, 10.0),
        (5, "green shoe shoe", 1, 7.5),
    ]
    offers = spark.createDataFrame(
        offers_rows, "offer_id bigint, title string, category_id int, price double"
    )
    listing = [1, 2, 3, 4, 5]
    events = spark.createDataFrame(
        [
            ("s1", t0, "search", None, "q1", "red shoe", listing, None),
            ("s1", t0 + timedelta(seconds=5), "click", 3, "q1", None, None, 3),
            ("s1", t0 + timedelta(seconds=9), "purchase", 3, "q1", None, None, None),
            ("s2", t0 + timedelta(days=1), "search", None, "q2", "shoe", [5, 1], None),
            ("s2", t0 + timedelta(days=1, seconds=5), "view", 5, None, None, None, None),
        ],
        "session_id string, ts timestamp, event string, offer_id bigint, query_id string, query_text string, "
        "listing array<bigint>, position int",
    )
    splits = spark.createDataFrame([("s1", "train"), ("s2", "test")], "session_id string, split string")
    rows = spark_listings.shown(events, splits)
    model = PositionBias(np.array([1.0, 0.6, 0.4, 0.3, 0.25]), eta=1.0)
    got = {
        (r.query_id, r.offer_id): r.asDict()
        for r in spark_listings.add_features(
            rows, events, offers, splits, model, ListingsSection(), 5
        ).collect()
    }
    # the pure reference
    titles = {o: tokenize(t) for o, t, _, _ in offers_rows}
    docs = [t for o, t, _, _ in offers_rows]
    n_docs = len(docs)
    df: dict[str, int] = {}
    for t in titles.values():
        for tok in set(t):
            df[tok] = df.get(tok, 0) + 1
    idf = {t: idf_of(d, n_docs) for t, d in df.items()}
    avgdl = sum(len(t) for t in titles.values()) / n_docs
    by_id = {o: {"price": p, "title": t, "category_id": c} for o, t, c, p in offers_rows}
    for qid, text, ids in (("q1", "red shoe", listing), ("q2", "shoe", [5, 1])):
        ref = listing_features(text, [by_id[i] for i in ids], idf, avgdl)
        for pos, (oid, expected) in enumerate(zip(ids, ref, strict=True), start=1):
            row = got[(qid, oid)]
            assert row["position"] == pos and row["propensity"] == pytest.approx(model.examination[pos - 1])
            for key, value in expected.items():
                assert row[key] == pytest.approx(value), (qid, oid, key)
    assert got[("q1", 3)]["label"] == 3 and got[("q1", 1)]["label"] == 0
    # a training row's priors count the other folds only (s1 is alone: the global rate); test rows
    # see every training count
    mu_c = 1 / sum(model.examination)  # one click over the expected examinations of q1
    assert got[("q1", 3)]["ctr_prior"] == pytest.approx((0 + 20 * mu_c) / (0 + 20))
    assert got[("q2", 5)]["ctr_prior"] == pytest.approx((0 + 20 * mu_c) / (model.examination[4] + 20))
    assert got[("q1", 5)]["pop_log"] == 0.0  # the view of offer 5 happened in the test period


@pytest.mark.spark
def test_thinning_keeps_clicks_the_top_and_test_listings_and_their_whole_listing_features(spark: Any) -> None:
    from retrieval.mining import spark_listings

    t0 = datetime(2026, 10, 1, 10)
    offers = spark.createDataFrame(
        [(i, f"thing {i % 7}", i % 3, float(i)) for i in range(1, 301)],
        "offer_id bigint, title string, category_id int, price double",
    )
    train_list, test_list = list(range(1, 201)), list(range(101, 301))
    events = spark.createDataFrame(
        [
            ("s1", t0, "search", None, "q1", "thing 3", train_list, None),
            ("s1", t0 + timedelta(seconds=5), "click", 150, "q1", None, None, 150),
            ("s2", t0 + timedelta(days=1), "search", None, "q2", "thing 4", test_list, None),
        ],
        "session_id string, ts timestamp, event string, offer_id bigint, query_id string, query_text string, "
        "listing array<bigint>, position int",
    )
    splits = spark.createDataFrame([("s1", "train"), ("s2", "test")], "session_id string, split string")
    rows = spark_listings.shown(events, splits)
    model = PositionBias(np.array([1.0, 0.6, 0.4, 0.3, 0.25]), eta=1.0)

    def table(cfg: ListingsSection) -> dict[tuple[str, int], dict[str, Any]]:
        out = spark_listings.add_features(rows, events, offers, splits, model, cfg, 300, seed=3)
        return {(r.query_id, r.offer_id): r.asDict() for r in out.collect()}

    whole, thin = (
        table(ListingsSection(negative_rate=1.0)),
        table(ListingsSection(negative_rate=0.25, keep_top=10)),
    )
    assert len(whole) == 400 and all(r["weight"] == 1.0 for r in whole.values())
    train = {k: r for k, r in thin.items() if k[0] == "q1"}
    assert sum(1 for k in thin if k[0] == "q2") == 200  # the test listing stays whole
    assert all(("q1", o) in train for o in train_list[:10]) and ("q1", 150) in train  # the top, the click
    drawn = [r for r in train.values() if r["position"] > 10 and r["label"] == 0]
    assert 0.15 * 189 < len(drawn) < 0.35 * 189 and all(r["weight"] == 4.0 for r in drawn)
    assert all(r["weight"] == 1.0 for r in train.values() if r["position"] <= 10 or r["label"] > 0)
    for key, row in thin.items():  # a kept row's features are its place in the whole listing
        assert {k: v for k, v in row.items() if k != "weight"} == {
            k: v for k, v in whole[key].items() if k != "weight"
        }
    assert sum(r["weight"] for r in train.values()) == pytest.approx(
        200, rel=0.3
    )  # weights estimate the count
