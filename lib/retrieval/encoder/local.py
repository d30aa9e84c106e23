"""The encoder trained and scored in one process on a marketplace held in memory (no Spark).

What ``train_encoder`` does on a cluster, reduced to what model selection and tests need: every
offer featurized (``features.offer_row_features``), the encoder and its ``content_trained`` baseline
trained on the same shuffled batches of training pairs (``train.train``, the negatives named by the
config), and Recall@K of each mode (the encoder with ids, with ids off, the baseline) by exact
search over every offer, for warm (with training pairs) and cold query offers apart.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from retrieval.evaluation import exact_search, recall_at_k


def train_and_score(
    offers: list[dict[str, Any]],
    train_pairs: np.ndarray,
    targets: dict[int, set[int]],
    queries: np.ndarray,
    encoder: Any,
    seed: int,
    epochs: int,
    k: int = 50,
    vectors: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Trains with the ``encoder`` config section's settings; Recall@``k`` on ``queries``.

    Args:
        offers: rows with the offers table's columns (offer_id, title, category_id, price, seller_id).
        train_pairs: [n, 2] int64 (query offer, item offer) training pairs.
        targets: each query offer's set of held-out partners.
        queries: [Q] int64 query offers (each in ``offers`` and ``targets``).
        vectors: if given, filled with each mode's offer vectors ([n, dim], rows as ``offers``).
    Returns: {"seconds", "loss", and per mode {"warm": recall, "cold": recall}}.
    """
    import torch

    from retrieval.encoder.features import collate, offer_row_features
    from retrieval.encoder.model import OfferTower, TowerConfig, TowerSet, embed
    from retrieval.encoder.negatives import UniformPool
    from retrieval.encoder.train import in_memory_batches, log_q_of, make_negatives, train

    tower = TowerConfig.from_section(encoder)
    ids = np.array([o["offer_id"] for o in offers], dtype=np.int64)
    every = collate([offer_row_features(o, tower.vocab) for o in offers])
    # ids only for offers with enough training pairs (encoder.min_id_pairs): the others' id bucket is
    # the padding bucket, whose embedding is zero, in training as in evaluation
    seen, count = np.unique(train_pairs[:, 0], return_counts=True)
    has_ids = np.isin(ids, seen[count >= encoder.min_id_pairs])
    every.offer[~has_ids] = 0
    shares = log_q_of(train_pairs[:, 1])
    floor = min(shares.values())
    lq = {int(i): shares.get(int(i), floor) for i in ids}
    torch.manual_seed(seed)
    towers = {"encoder": tower}
    if encoder.baseline:
        towers["content_trained"] = dataclasses.replace(tower, use_id=False)
    model = TowerSet(towers)
    pool = None
    if encoder.negatives == "mixed":
        unigram = np.array([shares.get(int(i), -np.inf) for i in ids], dtype=np.float32)
        pool = UniformPool(every, ids, unigram, len(ids), encoder.uniform_negatives, encoder.batch_size, seed)
    negatives = make_negatives(
        encoder.negatives,
        list(towers),
        tower.dim,
        "cpu",
        model,
        encoder.queue_size,
        encoder.queue_momentum,
        pool,
    )
    rng = np.random.default_rng(seed)
    started = time.time()
    history = train(
        model,
        epochs,
        lambda e: in_memory_batches(train_pairs, every, ids, lq, encoder.batch_size, rng),
        lr=encoder.lr,
        temperature=encoder.temperature,
        progress_s=0,
        negatives=negatives,
    )
    out: dict[str, Any] = {"seconds": round(time.time() - started, 1), "loss": round(history[-1]["loss"], 4)}
    warm_offer = np.isin(ids, np.unique(train_pairs))
    row = {int(i): r for r, i in enumerate(ids)}
    q_rows = np.array([row[int(q)] for q in queries], dtype=np.int64)
    wanted = [targets[int(q)] for q in queries]
    modes = {"encoder": ("encoder", True), "content_only": ("encoder", False)}
    if encoder.baseline:
        modes["content_trained"] = ("content_trained", False)
    for name, (t, ids_on) in modes.items():
        m: OfferTower = model.tower(t)
        v = embed(m, every, use_id=has_ids & ids_on)
        if vectors is not None:
            vectors[name] = v
        out[name] = recall_by_warmth(
            exact_search(v[q_rows], v, ids, k, exclude=queries)[1], wanted, warm_offer[q_rows], k
        )
    return out


def recall_by_warmth(
    ranked: np.ndarray, targets: list[set[int]], is_warm: np.ndarray, k: int
) -> dict[str, float]:
    """Recall@``k`` of [Q, k] rankings for warm and for cold queries apart, and for all."""
    return {
        subset: round(recall_at_k(ranked[mask], [targets[i] for i in np.flatnonzero(mask)], k), 4)
        for subset, mask in (("warm", is_warm), ("cold", ~is_warm), ("all", np.ones(len(ranked), bool)))
    }
