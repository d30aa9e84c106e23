"""The encoder's training loop in plain torch (any device): batches in, a trained tower out.

The loop does not care where batches come from (in-memory tensors, Petastorm, a pyarrow feed): it
takes an iterable of :class:`PairBatch` per epoch. Distributed training wraps the same step in DDP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from retrieval.encoder.features import OfferFeatures, take
from retrieval.encoder.losses import sampled_softmax
from retrieval.encoder.model import OfferTower, make_optimizers, to_tensors

log = logging.getLogger(__name__)


@dataclass
class PairBatch:
    """A batch of (query offer, candidate offer) training pairs.

    query / candidate: per-offer features; query_ids / candidate_ids: [B] int64 offer ids;
    log_q: [B] float32 log sampling probability of each candidate.
    """

    query: OfferFeatures
    candidate: OfferFeatures
    query_ids: np.ndarray
    candidate_ids: np.ndarray
    log_q: np.ndarray


def log_q_of(candidate_ids: np.ndarray) -> dict[int, float]:
    """log of each item's share of positives: the in-batch sampling probability, up to a constant."""
    ids, counts = np.unique(candidate_ids, return_counts=True)
    return dict(zip(ids.tolist(), np.log(counts / counts.sum()).tolist(), strict=True))


def in_memory_batches(
    pairs: np.ndarray,
    features: OfferFeatures,
    offer_ids: np.ndarray,
    log_q: dict[int, float],
    batch_size: int,
    rng: np.random.Generator,
) -> Iterator[PairBatch]:
    """Shuffled batches of ``pairs`` [n, 2] (query id, candidate id); the remainder is dropped.

    Args:
        features: every offer's features, row i being offer ``offer_ids[i]``.
    """
    row = {int(o): i for i, o in enumerate(offer_ids)}
    q_rows = np.array([row[int(q)] for q in pairs[:, 0]], dtype=np.int64)
    c_rows = np.array([row[int(c)] for c in pairs[:, 1]], dtype=np.int64)
    lq = np.array([log_q[int(c)] for c in pairs[:, 1]], dtype=np.float32)
    order = rng.permutation(len(pairs))
    for lo in range(0, len(order) - batch_size + 1, batch_size):
        part = order[lo : lo + batch_size]
        yield PairBatch(
            take(features, q_rows[part]),
            take(features, c_rows[part]),
            pairs[part, 0].astype(np.int64),
            pairs[part, 1].astype(np.int64),
            lq[part],
        )


def train_step(
    model: OfferTower,
    optimizers: Sequence[torch.optim.Optimizer],
    batch: PairBatch,
    temperature: float,
    device: str,
) -> float:
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    q = model(to_tensors(batch.query, device))
    c = model(to_tensors(batch.candidate, device))
    loss = sampled_softmax(
        q,
        c,
        torch.as_tensor(batch.candidate_ids, device=device),
        torch.as_tensor(batch.log_q, device=device),
        temperature,
        query_ids=torch.as_tensor(batch.query_ids, device=device),
    )
    loss.backward()
    for opt in optimizers:
        opt.step()
    return float(loss.detach())


def train(
    model: OfferTower,
    epochs: int,
    batches: Callable[[int], Iterable[PairBatch]],
    lr: float = 0.005,
    temperature: float = 0.05,
    device: str = "cpu",
    log_every: int = 50,
) -> list[dict[str, float]]:
    """Trains ``model`` for ``epochs`` over ``batches(epoch)``; returns per-epoch loss and examples/s."""
    model.to(device).train()
    optimizers = make_optimizers(model, lr)
    history = []
    for epoch in range(epochs):
        start, seen, losses = time.perf_counter(), 0, []
        for step, batch in enumerate(batches(epoch)):
            losses.append(train_step(model, optimizers, batch, temperature, device))
            seen += len(batch.query_ids)
            if log_every and step % log_every == 0:
                log.info("epoch %d step %d loss %.4f", epoch, step, losses[-1])
        if not losses:
            raise ValueError(f"epoch {epoch} had no batches: the feed yielded nothing")
        seconds = time.perf_counter() - start
        history.append(
            {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "examples": seen,
                "examples_per_s": seen / max(seconds, 1e-9),
            }
        )
    return history
