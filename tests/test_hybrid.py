"""The hybrid encoder (content + ids, the configured combine, id_dropout and negatives) against the
content-only tower trained on the same batches: conf/test.yaml's marketplace, generated in-process,
with the planted behaviour (synth.latent_strength, link_share) turned up and turned off.

What holds, and is asserted: the ids cost the hybrid little, whatever drives the co-clicks (with
pairs.min_support 1 and the earlier defaults they cost it 0.035 warm Recall@50 on validation pairs,
benchmarks/results/hybrid.json). What does not hold yet: that they earn their place. Even with the
behaviour turned up, at this many co-clicks per offer, the hybrid is level with the content model
(measured, warm Recall@50 of the hybrid vs content_trained: 0.4888 vs 0.5012 turned up, 0.4820 vs
0.4989 off; on the embedded default's pipeline run the hybrid leads by 0.016, README). What limits
it is the co-clicks themselves: putting a query's training partners first in the content model's
ranking, what a hybrid that memorised them would do, adds about 0.01 (``benchmarks.hybrid``'s
co-click headroom, checked here to score what the benchmark scores)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from benchmarks.hybrid import co_click_headroom, score, validation_split

from conftest import make_config
from retrieval.encoder.local import train_and_score
from retrieval.synth.local import co_click_targets, generate, sample_queries

pytestmark = pytest.mark.slow

EPOCHS = 6


def hybrid_against_content(tmp_path: Any, *overrides: str) -> dict[str, Any]:
    cfg = make_config(tmp_path, *overrides)
    market = generate(cfg)
    train = np.array([(p.query_offer_id, p.item_offer_id) for p in market.pairs if p.split == "train"])
    targets = co_click_targets(market.pairs)
    warm = set(np.unique(train).tolist())
    queries = np.array(sorted(q for q in targets if q in warm), dtype=np.int64)
    offers = market.offers.select(["offer_id", "title", "category_id", "price", "seller_id"]).to_pylist()
    enc = dataclasses.replace(cfg.encoder, baseline=True)
    return train_and_score(offers, train, targets, queries, enc, cfg.seed, EPOCHS)


@pytest.mark.parametrize(
    "behaviour",
    [
        ("synth.latent_strength=3.0", "synth.link_share=0.8"),
        ("synth.latent_strength=0", "synth.link_share=0"),
    ],
    ids=["turned_up", "off"],
)
def test_the_ids_cost_the_hybrid_little_against_the_content_model(
    tmp_path: Any, behaviour: tuple[str, ...]
) -> None:
    got = hybrid_against_content(tmp_path, *behaviour)
    assert got["encoder"]["warm"] > got["content_trained"]["warm"] - 0.025, got
    assert got["content_trained"]["warm"] > 0.3, got  # and both learned something


def test_the_co_click_headroom_starts_from_the_content_models_own_ranking(tmp_path: Any) -> None:
    cfg = make_config(tmp_path, "synth.latent_strength=3.0", "synth.link_share=0.8")
    market = generate(cfg)
    split = validation_split(market, 3)
    queries = sample_queries(split.targets, 1000, cfg.seed)
    vectors: dict[str, np.ndarray] = {}
    enc = dataclasses.replace(cfg.encoder, baseline=True)
    got = score(market, split, enc, queries, cfg.seed, EPOCHS, vectors)
    headroom = co_click_headroom(market, split, queries, vectors["content_trained"])
    # the content model's own ranking, searched deeper, scores as the benchmark scored it
    assert headroom["content_trained"] == got["content_trained"], (headroom, got)
    # a cold query offer has no training partners, so none move to its front
    assert headroom["offer"]["cold"] == got["content_trained"]["cold"], headroom
    assert headroom["offer"]["warm"] != got["content_trained"]["warm"], headroom  # a warm one's do
