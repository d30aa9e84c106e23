"""The synthetic marketplace's pure generators: deterministic, structured, and honest about bad rows."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from retrieval.config import SynthSection
from retrieval.synth.catalog import Catalog, format_ts, hash64, zipf_cdf
from retrieval.synth.offers import generate_offers
from retrieval.synth.sessions import INJECTED_KINDS, UNKNOWN_OFFER_BASE, SessionSimulator, examination


def small(**kw: object) -> SynthSection:
    base = dict(products=600, sessions=300, listing_min=30, listing_max=60, sellers=200, bad_row_rate=0.01)
    base.update(kw)
    return SynthSection(**base)  # type: ignore[arg-type]


def test_hash_is_deterministic_and_seed_dependent() -> None:
    a = hash64(1, 2, np.arange(5))
    assert (a == hash64(1, 2, np.arange(5))).all()
    assert (a != hash64(2, 2, np.arange(5))).all()
    assert len(set(a.tolist())) == 5


def test_zipf_cdf_matches_definition() -> None:
    cdf = zipf_cdf(4, 1.0)
    w = np.array([1, 1 / 2, 1 / 3, 1 / 4])
    np.testing.assert_allclose(cdf, np.cumsum(w) / w.sum())


def test_offer_ids_are_unique_and_hide_the_product() -> None:
    cat = Catalog(small(products=5000), seed=3)
    p = np.repeat(np.arange(5000), 40)
    k = np.tile(np.arange(40), 5000)
    ids = cat.offer_id(p, k)
    assert len(np.unique(ids)) == len(ids)
    assert ids.min() >= 0 and ids.max() < UNKNOWN_OFFER_BASE
    # consecutive offers of one product are not consecutive ids
    assert np.abs(np.diff(cat.offer_id(np.zeros(10, np.int64), np.arange(10)))).min() > 1000


def test_popularity_rank_is_a_permutation() -> None:
    cat = Catalog(small(products=997), seed=5)
    ranks = cat.rank(np.arange(997))
    assert sorted(ranks.tolist()) == list(range(997))
    assert (cat.product_at_rank(ranks) == np.arange(997)).all()


def test_sampled_popularity_follows_zipf() -> None:
    cfg = small(products=2000, zipf_a=1.2)
    cat = Catalog(cfg, seed=1)
    rng = np.random.default_rng(0)
    counts = Counter(cat.rank(cat.sample_products(rng, 200_000)).tolist())
    top = np.array([counts[r] for r in range(50)], dtype=float)
    slope = -np.polyfit(np.log(np.arange(1, 51)), np.log(top), 1)[0]
    assert slope == pytest.approx(1.2, abs=0.08)


def test_leaf_sampling_stays_in_leaf_and_follows_popularity() -> None:
    cat = Catalog(small(products=3000), seed=2)
    rng = np.random.default_rng(1)
    leaf = int(np.argmax(np.diff(cat.leaf_cluster_start)))
    got = cat.sample_in_leaf(rng, leaf, 20000)
    assert (cat.leaf(got) == leaf).all()
    # the most popular product of the leaf is drawn most often
    members = np.arange(3000)[cat.leaf(np.arange(3000)) == leaf]
    favourite = members[np.argmax(cat.popularity(members))]
    assert Counter(got.tolist()).most_common(1)[0][0] == favourite


def test_relation_grades() -> None:
    cat = Catalog(small(), seed=1)
    intent = 7
    same_cluster = cat.cluster_products(cat.cluster(np.array([intent]))[0])
    other = next(p for p in same_cluster if p != intent)
    same_leaf = next(
        p
        for p in range(600)
        if cat.leaf(np.array([p]))[0] == cat.leaf(np.array([intent]))[0]
        and cat.cluster(np.array([p]))[0] != cat.cluster(np.array([intent]))[0]
    )
    far = next(p for p in range(600) if cat.leaf(np.array([p]))[0] != cat.leaf(np.array([intent]))[0])
    assert cat.relation_grade(intent, np.array([intent, other, same_leaf, far])).tolist() == [3, 2, 1, 0]


def test_offers_block_is_deterministic_and_injects_extra_rows() -> None:
    cat = Catalog(small(products=400, bad_row_rate=0.02), seed=9)
    a = generate_offers(cat, 0, 400, block=0)
    assert a.to_pandas().equals(generate_offers(cat, 0, 400, block=0).to_pandas())  # NaN prices compare equal
    rows = a.to_pylist()
    clean = [r for r in rows if r["_injected"] is None]
    assert len(clean) == int(cat.n_offers(np.arange(400)).sum())
    assert len({r["offer_id"] for r in clean}) == len(clean)
    kinds = Counter(r["_injected"] for r in rows if r["_injected"])
    assert set(kinds) == {"null_key", "bad_price"}
    assert all(r["offer_id"] is None for r in rows if r["_injected"] == "null_key")
    assert all(np.isnan(r["price"]) or r["price"] < 0 for r in rows if r["_injected"] == "bad_price")
    # product_id is known for most offers, missing for some
    missing = np.mean([r["product_id"] is None for r in clean])
    assert 0.08 < missing < 0.25
    # titles of one product differ between sellers but share its words
    by_product: dict[int, list[str]] = {}
    for r in clean:
        by_product.setdefault(r["true_product_id"], []).append(r["title"].lower())
    multi = [t for t in by_product.values() if len(t) >= 3]
    assert multi and np.mean([len(set(t)) > 1 for t in multi]) > 0.8


def test_session_blocks_are_deterministic_and_independent_of_each_other() -> None:
    cat = Catalog(small(), seed=4)
    a = SessionSimulator(cat).simulate(2, 200, 260)
    b = SessionSimulator(cat).simulate(2, 200, 260)
    assert a.events.equals(b.events) and a.relevance.equals(b.relevance)
    # a fresh simulator (another task) reproduces a block without having seen the ones before
    sim = SessionSimulator(cat)
    sim.simulate(0, 0, 100)
    assert sim.simulate(2, 200, 260).events.equals(a.events)


def test_a_full_traffic_memo_restarts_without_losing_the_products_asked_for() -> None:
    """The memo of products' offer traffic is cleared when full; at 16x the embedded default (320k
    products) it was cleared between finding the products it lacked and reading them back, and
    generate failed with a KeyError. A memo of 5 products gives the same sessions as an unbounded one."""
    cat = Catalog(small(), seed=4)
    tight = SessionSimulator(cat)
    tight.memo_size = 5
    assert tight.simulate(2, 200, 260).events.equals(SessionSimulator(cat).simulate(2, 200, 260).events)


def test_injected_rows_are_marked_and_counted() -> None:
    cat = Catalog(small(bad_row_rate=0.01), seed=4)
    block = SessionSimulator(cat).simulate(0, 0, 300)
    rows = block.events.to_pylist()
    marks = Counter(r["_injected"] for r in rows if r["_injected"])
    assert {k: v for k, v in block.injected.items() if v} == dict(marks)
    assert set(block.injected) == set(INJECTED_KINDS)
    assert marks["bot_session"] >= 1200  # block 0 always has a bot
    for r in rows:
        if r["_injected"] == "unknown_offer":
            ids = [r["offer_id"]] if r["offer_id"] is not None else r["listing"]
            assert max(ids) >= UNKNOWN_OFFER_BASE
    clean = [r for r in rows if r["_injected"] is None]
    assert Counter(r["event"] for r in clean).keys() == {"view", "search", "click", "cart", "purchase"}
    # sessions' timestamps increase strictly: clean logs contain no natural exact duplicates
    by_session: dict[str, list[str]] = {}
    for r in clean:
        by_session.setdefault(r["session_id"], []).append(r["ts"])
    assert all(ts == sorted(ts) and len(set(ts)) == len(ts) for ts in by_session.values())


def test_clicks_fall_with_position_and_follow_relevance() -> None:
    cfg = small(products=1500, sessions=2000, bad_row_rate=0.0)
    block = SessionSimulator(Catalog(cfg, seed=8)).simulate(0, 0, 1500)
    rows = block.events.to_pylist()
    searches = [r for r in rows if r["event"] == "search"]
    clicks = Counter(r["position"] for r in rows if r["event"] == "click")
    ctr = np.array([clicks[p] / len(searches) for p in range(1, 31)])
    assert ctr[0] > 2 * ctr[4] > 0 and ctr[4] > ctr[19]
    # clicked offers are far more relevant than the listing average
    grade = {
        (q, o): g
        for q, o, g in zip(
            *(block.relevance[c].to_pylist() for c in ("query_id", "offer_id", "grade")), strict=True
        )
    }
    clicked = [grade[(r["query_id"], r["offer_id"])] for r in rows if r["event"] == "click"]
    assert np.mean(clicked) > np.mean(list(grade.values())) + 0.8
    # every listing is within the configured bounds and has distinct offers
    assert all(
        30 <= len(s["listing"]) <= 60 and len(set(s["listing"])) == len(s["listing"]) for s in searches
    )


def test_examination_curve() -> None:
    np.testing.assert_allclose(examination(np.array([1, 2, 4]), 1.0), [1.0, 0.5, 0.25])


def test_format_ts() -> None:
    assert format_ts(np.array([0.0, 86400.5]), "2026-10-01") == [
        "2026-10-01 00:00:00.000",
        "2026-10-02 00:00:00.500",
    ]
