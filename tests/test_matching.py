"""Offers without a product_id matched to the catalogue's products (retrieval.index.matching): by photo,
by title within the category and price band, never when two products fit; measured against the
synthetic generator's truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import make_config
from retrieval.index.matching import (
    Listing,
    Offer,
    collapse_keys,
    look_distance,
    match,
    near_duplicate_key,
    normalise,
    photo_look,
    unmatched_key,
)
from retrieval.visual.render import render, render_ref


def test_normalise_drops_marketing_words_years_case_order_and_swapped_letters() -> None:
    a = normalise("FREE SHIPPING Kirova Smartphone Pro 14 128GB Black 2026 - best")
    b = normalise("kirova smartphone pro 14 black 128gb")
    c = normalise("Kriova Smartphone Pro 14 128GB Black")  # two letters swapped
    assert a == b == c
    assert normalise(None) == frozenset()


def offer(
    i: int, product: int | None, title: str, price: float = 100.0, photo: str | None = None, cat: int = 1
) -> Offer:
    return Offer(i, product, cat, price, normalise(title), photo)


def test_a_title_that_fits_one_product_matches_it_and_one_that_fits_two_does_not() -> None:
    offers = [
        offer(1, 10, "kirova phone pro 14 128gb black"),
        offer(2, 11, "kirova phone pro 14 256gb black"),
        offer(3, None, "Kirova Phone Pro 14 256GB Black sale"),  # product 11's words, and a marketing one
        offer(4, None, "kirova phone pro 14"),  # fits both: stays unmatched
        offer(5, None, "kirova phone pro 14 256gb"),  # fits only 11, but leaves a word out: a variant?
        offer(6, None, "kirova phone pro 14 256gb black", price=400.0),  # out of the price band
        offer(7, None, "kirova phone pro 14 256gb black", cat=2),  # another category
    ]
    got = match(offers, price_band=1.5)
    assert {o: m.product_id for o, m in got.items()} == {3: 11}
    assert got[3].by == "title"


def test_a_photo_shown_by_one_products_offers_matches_before_the_title() -> None:
    offers = [
        offer(1, 10, "kirova phone pro 14 black", photo="img/a"),
        offer(2, 11, "kirova phone pro 14 white", photo="img/b"),
        offer(3, 12, "kirova phone pro 14 white", photo="img/b"),  # a photo two products show
        offer(4, None, "kirova phone", photo="img/a"),
        offer(5, None, "kirova phone pro 14 white", photo="img/b"),  # photo ambiguous, title too
    ]
    got = match(offers)
    assert {o: (m.product_id, m.by) for o, m in got.items()} == {4: (10, "photo")}


def test_another_shot_of_a_product_looks_near_and_another_product_far() -> None:
    """photo_look on the synthetic catalogue's photos: two shots of one product (scale, offset,
    rotation, light, background differ) against the first shot of another product, 60 products.
    Measured: median 0.041 against 1.23; 59 of 60 shot pairs within 0.1, no other product within 0.1."""
    keys = np.random.default_rng(0).integers(1, 2**62, size=60)
    same, other = [], []
    for i, k in enumerate(keys):
        a, b = photo_look(render(int(k), 0)), photo_look(render(int(k), 1))
        c = photo_look(render(int(keys[(i + 1) % len(keys)]), 0))
        assert a is not None and b is not None and c is not None
        same.append(look_distance(a, b))
        other.append(look_distance(a, c))
    assert np.mean(np.array(same) <= 0.1) >= 0.9 and np.mean(np.array(other) <= 0.1) <= 0.05
    assert np.median(same) * 5 < np.median(other)
    assert photo_look(np.full((64, 64, 3), 0.8, np.float32)) is None  # a blank photo shows nothing


def test_what_the_photo_shows_decides_among_the_products_a_title_fits() -> None:
    def ref(key: int, shot: int) -> str:
        return f"synth://img/{key:016x}/{shot}"

    red, blue = 0x1111222233334444, 0x5555666677778888  # two products that look different
    offers = [
        offer(1, 10, "kirova bag pro red", photo=ref(red, 0)),
        offer(2, 11, "kirova bag pro blue", photo=ref(blue, 0)),
        offer(3, None, "kirova bag pro", photo=ref(blue, 2)),  # fits both: another shot of 11
        offer(4, None, "kirova bag pro red", photo=ref(blue, 1)),  # 10's words, 11's look: no match
        offer(5, None, "kirova bag pro", photo=ref(0x0123456789ABCDEF, 0)),  # looks like neither
    ]

    def look(r: str) -> np.ndarray | None:
        return photo_look(render_ref(r))

    assert look_distance(look(ref(red, 0)), look(ref(blue, 0))) > 0.3  # type: ignore[arg-type]
    got = match(offers, look=look, max_look_distance=0.1)
    assert {o: (m.product_id, m.by) for o, m in got.items()} == {3: (11, "look")}
    assert {o: m.product_id for o, m in match(offers).items()} == {4: 10}  # titles alone


def test_collapse_keys_use_the_product_else_the_category_and_title_whoever_sells() -> None:
    offers = [
        offer(1, 10, "kirova phone pro 14 black"),
        offer(2, None, "kirova phone pro 14 black sale"),
        offer(3, None, "lumo kettle 1.7l steel"),
        offer(4, None, "Lumo Kettle Steel 1.7L"),  # another seller's listing of the same
    ]
    found = match(offers)
    keys = collapse_keys(offers, found)
    assert keys[1] == keys[2] == "p10" and 2 in found
    assert keys[3] == keys[4] == unmatched_key(1, normalise("lumo kettle 1.7l steel"))


def test_an_unmatched_offer_takes_the_key_of_a_near_duplicate_that_looks_the_same() -> None:
    """near_duplicate_key over an offer's nearest offers: one whose photo is another shot of the same
    object, at a price in the band, with words of the title in common, lends its key, the catalogue's
    product before another unmatched offer's; a title whose model words contradict the product's does
    not stop it, a photo of another product, a price out of the band or a second product that looks
    the same does."""

    def ref(key: int, shot: int) -> str:
        return f"synth://img/{key:016x}/{shot}"

    def look(r: str) -> np.ndarray | None:
        return photo_look(render_ref(r))

    bag, other = 0x1111222233334444, 0x5555666677778888
    mine = Listing(1, "t1:bag kirova pro", 100.0, normalise("kirova bag pro 6 pink"), ref(bag, 3))
    lookalike_product = Listing(2, "p20", 104.0, normalise("Kirova Bag 10 Pack Pink"), ref(bag, 0))
    unknown_twin = Listing(3, "t1:bag kirova", 98.0, normalise("kirova bag"), ref(bag, 1))
    other_product = Listing(4, "p21", 100.0, normalise("kirova bag pro 6 pink"), ref(other, 0))
    too_dear = Listing(5, "p22", 190.0, normalise("kirova bag pro 6 pink"), ref(bag, 2))
    no_words = Listing(6, "p23", 100.0, normalise("lumo kettle"), ref(bag, 2))
    assert (
        near_duplicate_key(mine, [other_product, too_dear, no_words, unknown_twin, lookalike_product], look)
        == "p20"
    )
    assert near_duplicate_key(mine, [other_product, unknown_twin], look) == "t1:bag kirova"  # the lesser key
    assert near_duplicate_key(unknown_twin, [mine], look) == "t1:bag kirova"  # its own is the lesser
    assert near_duplicate_key(mine, [other_product, too_dear, no_words], look) is None
    assert near_duplicate_key(mine, [lookalike_product], look, max_look_distance=0.0) is None
    # two products that both look like it: no match (the photo does not say which)
    another_lookalike = Listing(7, "p24", 101.0, normalise("kirova bag pro"), ref(bag, 4))
    assert near_duplicate_key(mine, [lookalike_product, another_lookalike], look) is None
    # a price of 0 or unknown (ingest lets 0 through) is no price: the photo and words decide
    free, unpriced = (
        dataclasses.replace(lookalike_product, price=0.0),
        dataclasses.replace(lookalike_product, price=None),
    )
    assert near_duplicate_key(mine, [free], look) == near_duplicate_key(mine, [unpriced], look) == "p20"
    assert (
        near_duplicate_key(dataclasses.replace(mine, price=float("nan")), [lookalike_product], look) == "p20"
    )


@pytest.mark.slow
def test_matching_on_the_test_marketplace_is_precise_and_finds_most() -> None:
    """conf/test.yaml's catalogue (generated in-process), graded by the generator's truth: the issue's
    bars are precision >= 0.95 and recall >= 0.8 on offers without product_id whose product the
    catalogue knows. Measured: 1.0 and 0.948 (403 matched: 347 by the photo itself, 39 by what it shows,
    17 by title and photo; 425 matchable); by photo identity and title alone, 0.978 and 0.856."""
    from retrieval.synth.local import generate

    cfg = make_config("unused")
    cfg = dataclasses.replace(cfg, synth=dataclasses.replace(cfg.synth, sessions=10))
    rows = generate(cfg).offers.to_pylist()
    offers = [
        Offer(
            r["offer_id"],
            r["product_id"],
            r["category_id"],
            r["price"],
            normalise(r["title"]),
            r["image_ref"],
        )
        for r in rows
    ]
    truth, rc = {r["offer_id"]: r["true_product_id"] for r in rows}, cfg.recs
    known = {r["product_id"] for r in rows if r["product_id"] is not None}
    matchable = [r["offer_id"] for r in rows if r["product_id"] is None and r["true_product_id"] in known]

    def look(ref: str) -> np.ndarray | None:
        return photo_look(render_ref(ref))

    got = match(offers, rc.match_price_band, rc.match_min_tokens, look, rc.match_look_distance)
    right = sum(truth[o] == m.product_id for o, m in got.items())
    assert right / len(got) >= 0.95 and right / len(matchable) >= 0.8, (right, len(got), len(matchable))
