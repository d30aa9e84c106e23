"""Behaviour that no feature shows, planted in the generator, and the oracle that knows it: the oracle's
probabilities are the simulator's, checked against draws of the simulator itself."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from retrieval.config import SynthSection
from retrieval.synth.catalog import Catalog
from retrieval.synth.oracle import Oracle, search_click_rates
from retrieval.synth.sessions import DRIFT, SessionSimulator

HIDDEN = dict(latent_strength=2.0, link_share=0.5, seller_quality=0.5)
NONE = dict(latent_strength=0.0, link_share=0.0, seller_quality=0.0)


def small(**kw: object) -> SynthSection:
    """A small catalogue, with no hidden behaviour unless ``kw`` says."""
    base = dict(
        products=900, sessions=300, listing_min=30, listing_max=60, sellers=200, bad_row_rate=0.0, **NONE
    )
    base.update(kw)
    return SynthSection(**base)  # type: ignore[arg-type]


def test_offer_product_inverts_offer_id() -> None:
    cat = Catalog(small(), seed=3)
    p = np.arange(900).repeat(3)
    k = np.tile(np.arange(3), 900)
    got_p, got_k = cat.offer_product(cat.offer_id(p, k))
    assert (got_p == p).all() and (got_k == k).all()


def test_links_point_into_the_complement_leaves_and_are_stable() -> None:
    cat = Catalog(small(**HIDDEN), seed=3)
    p = np.arange(0, 900, 7)
    links = cat.links(p)
    assert (links == Catalog(small(**HIDDEN), seed=3).links(p)).all()
    for q, row in zip(p, links, strict=True):
        comps = cat.complements[int(cat.leaf(np.array([q]))[0])]
        assert (row[len(comps) :] == -1).all()
        assert [int(cat.leaf(np.array([x]))[0]) for x in row[: len(comps)]] == [
            cat.leaves.index(next(lf for lf in cat.leaves if lf.noun == cat.leaves[c].noun)) for c in comps
        ]


def test_seller_quality_has_mean_one_and_spreads_with_its_strength() -> None:
    flat = Catalog(small(sellers=5000), seed=1).seller_quality(np.arange(5000))
    spread = Catalog(small(sellers=5000, seller_quality=0.5), seed=1).seller_quality(np.arange(5000))
    assert (flat == 1.0).all()
    assert spread.mean() == pytest.approx(1.0, abs=0.03) and spread.std() > 0.4


def test_offer_traffic_is_a_distribution_over_each_products_offers() -> None:
    cat = Catalog(small(seller_quality=0.5), seed=2)
    p = np.arange(200)
    traffic, quality = cat.offer_traffic(p)
    n = cat.n_offers(p)
    np.testing.assert_allclose(traffic.sum(axis=1), 1.0)
    assert ((traffic > 0) == (np.arange(traffic.shape[1])[None, :] < n[:, None])).all()
    assert (quality[traffic == 0] == 0).all()
    sellers = cat.sellers(p)
    assert all(len(set(row[:c].tolist())) == c for row, c in zip(sellers, n, strict=True))


@pytest.mark.parametrize("hidden", [{}, HIDDEN])
def test_the_oracles_drift_kernel_is_the_simulators(hidden: dict[str, float]) -> None:
    """Drift moves drawn from the simulator land where the oracle's kernel says, product by product."""
    cat = Catalog(small(**hidden), seed=5)
    sim, oracle = SessionSimulator(cat), Oracle(cat, rates=search_click_rates(cat, searches=50))
    rng = np.random.default_rng(0)
    for p in (3, 101, 517):
        draws = 40_000
        counts = Counter(sim._drift(rng, p) for _ in range(draws))
        want = np.zeros(cat.n_products)
        start = np.zeros(cat.n_products)
        start[p] = 1.0
        oracle._cluster_moves(start, [int(oracle.leaf[p])], want)
        oracle._complement_moves(p, 1.0, want)
        want += DRIFT[3] * oracle.popularity / oracle.popularity.sum()
        assert want.sum() == pytest.approx(1.0)
        got = np.zeros(cat.n_products)
        for q, c in counts.items():
            got[q] = c / draws
        assert 0.5 * np.abs(got - want).sum() < 0.04, p  # total variation: sampling noise only


def test_without_the_hidden_behaviour_both_oracles_agree() -> None:
    cat = Catalog(small(), seed=4)
    rates = search_click_rates(cat, searches=200)
    full, content = Oracle(cat, True, rates), Oracle(cat, False, rates)
    for o in cat.offer_id(np.array([5, 77, 400]), np.zeros(3, dtype=np.int64)):
        a, b = full.next_offers(int(o), 30), content.next_offers(int(o), 30)
        assert (a[0] == b[0]).all()
        assert int(o) not in a[0].tolist()


def test_taste_saturates_at_certain_clicks() -> None:
    cat = Catalog(small(**HIDDEN), seed=4)
    rates = search_click_rates(cat, searches=300)
    for kind in range(5):
        curve = rates.per_slot(kind, rates.log_taste)
        assert (np.diff(curve) >= -1e-12).all() and curve[-1] <= 1.0
    assert rates.slots.sum() == pytest.approx((30 + 60) / 2, rel=0.25)


def test_the_oracle_ranks_fresh_co_interactions_better_than_popularity_and_content() -> None:
    """On sessions simulated afresh, the next interaction after an offer is found by the full oracle's
    top 10 more often than by the content oracle's (which cannot see tastes and links) or popularity's
    (measured: 0.64 and 0.545)."""
    cat = Catalog(small(**HIDDEN, sessions=3000), seed=6)
    events = SessionSimulator(cat).simulate(0, 0, 3000).events.to_pylist()
    follows: list[tuple[int, int]] = []
    last: dict[str, int] = {}
    for e in events:
        if e["event"] in ("view", "click") and e["offer_id"] is not None:
            prev = last.get(e["session_id"])
            if prev is not None and prev != e["offer_id"]:
                follows.append((prev, e["offer_id"]))
            last[e["session_id"]] = e["offer_id"]
    rng = np.random.default_rng(0)
    sample = [follows[i] for i in rng.choice(len(follows), 400, replace=False)]
    rates = search_click_rates(cat, searches=300)
    hits = {}
    for name, oracle in (("full", Oracle(cat, True, rates)), ("content", Oracle(cat, False, rates))):
        hits[name] = np.mean([b in oracle.next_offers(a, 10)[0] for a, b in sample])
    popular = Counter(b for _, b in follows).most_common(11)
    hits["popularity"] = np.mean([b in [x for x, _ in popular if x != a][:10] for a, b in sample])
    assert hits["full"] > hits["content"] + 0.05 and hits["content"] > 5 * hits["popularity"], hits
