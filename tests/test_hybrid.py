"""The hybrid encoder (content + ids, the configured combine, id_dropout and negatives) against the
content-only tower trained on the same batches: conf/test.yaml's marketplace, generated in-process,
with the planted behaviour (synth.latent_strength, link_share) turned up and turned off.

What holds, and is asserted: the ids cost the hybrid little, whatever drives the co-clicks (with
pairs.min_support 1 and the earlier defaults they cost it 0.035 warm Recall@50 on validation pairs,
benchmarks/results/hybrid.json). What does not hold yet: that they earn their place. Even with the
behaviour turned up, at this many co-clicks per offer, the hybrid is level with the content model
(measured, warm Recall@50 of the hybrid vs content_trained: 0.4888 vs 0.5012 turned up, 0.4820 vs
0.4989 off; on the embedded default's pipeline run the hybrid leads by 0.016, README)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from conftest import make_config
from retrieval.encoder.local import train_and_score
from retrieval.synth.local import co_click_targets, generate

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
