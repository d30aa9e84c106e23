"""train_encoder on conf/test.yaml: TorchDistributor training, a saved model, and the baselines beaten."""

from __future__ import annotations

import os
from typing import Any

import pytest

from retrieval import stage_metrics
from retrieval.encoder.model import OfferTower
from retrieval.training.models import load_model, saved_config

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_encoder_beats_cooccurrence_on_warm_and_popularity_on_cold(trained: dict[str, Any]) -> None:
    m = trained["train_encoder"]
    warm, cold = m["recall_at_50"], m["cold_recall_at_50"]
    # margins measured on this config: warm 0.50 vs 0.21 (co-occurrence), cold 0.41 vs 0.22 (popularity)
    assert warm["encoder"] > 1.3 * warm["cooccurrence"], warm
    assert cold["encoder"] > 1.5 * cold["popularity"], cold
    assert cold["cooccurrence"] == 0.0  # cold offers have no training pairs by definition
    assert (
        stage_metrics.missing_keys(
            "train_encoder", stage_metrics.read_stage_metrics(trained["root"], "train_encoder")
        )
        == []
    )


def test_a_model_and_a_checkpoint_per_epoch_are_saved(trained: dict[str, Any]) -> None:
    m = trained["train_encoder"]
    path = m["outputs"]["encoder model"]
    assert load_model(OfferTower, path).cfg.dim == trained["cfg"].encoder.dim
    epochs = trained["cfg"].encoder.epochs
    # a checkpoint per epoch in the run's directory (models/encoder/runs/<config hash>; each tower it
    # trains is saved in a directory of its own there), the last two kept (KEEP_CHECKPOINTS: each holds
    # the optimizers' state too); the published weights have none
    trained_in = saved_config(path)["provenance"]["trained_in"]
    assert trained_in.endswith("/encoder") and not os.path.exists(os.path.join(path, "checkpoints"))
    run = os.path.dirname(trained_in)
    assert "/runs/" in run and os.path.exists(os.path.join(run, "content_trained", "config.json"))
    assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == [
        f"epoch-{e:04d}.pt" for e in (epochs - 2, epochs - 1)
    ]
    assert epochs == len(m["training"]["history"])
    assert m["training"]["world"] == 2 and m["feed"] == "arrow" and m["examples_per_s"] > 0
