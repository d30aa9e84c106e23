"""The hybrid encoder's collaborative half earns its place where behaviour drives the co-clicks, and costs
little where nothing but content does: conf/test.yaml's marketplace, generated in-process, with the
planted behaviour (synth.latent_strength, link_share) turned up and turned off."""

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


def test_with_behaviour_turned_up_the_hybrid_beats_the_content_model(tmp_path: Any) -> None:
    got = hybrid_against_content(tmp_path, "synth.latent_strength=3.0", "synth.link_share=0.8")
    # measured: encoder 0.XX, content_trained 0.XX
    assert got["encoder"]["warm"] > got["content_trained"]["warm"] + 0.03, got


def test_with_no_behaviour_the_hybrid_loses_little_to_the_content_model(tmp_path: Any) -> None:
    got = hybrid_against_content(tmp_path, "synth.latent_strength=0", "synth.link_share=0")
    # measured: encoder 0.XX, content_trained 0.XX
    assert got["encoder"]["warm"] > got["content_trained"]["warm"] - 0.02, got
