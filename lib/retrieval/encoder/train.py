"""The encoder's training step in plain torch (any device): pair batches in, a trained tower out.

The step does not care where batches come from: in-memory pairs (:func:`in_memory_batches`), or
parquet rows read by a feed (``training.feed``) and turned into a :class:`PairBatch` by
:func:`pair_batch`. :func:`train` runs it in this process; the encoder's worker (``encoder.worker``)
runs the same step under DDP. Training examples (``spark_encoder.training_examples``) have columns
query_offer_id, item_offer_id, log_q, and per side (prefix ``q_`` / ``c_``) word_ids, char_ids
(list<int>), category, price_bucket, seller, offer (int).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from retrieval.encoder.features import OfferFeatures, take
from retrieval.encoder.losses import sampled_softmax
from retrieval.encoder.model import OfferTower, make_optimizers, to_tensors
from retrieval.training.loop import run_epochs

if TYPE_CHECKING:
    import pyarrow as pa


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


def _side(table: pa.Table, prefix: str) -> OfferFeatures:
    def bag(name: str) -> np.ndarray:
        col = table.column(f"{prefix}{name}").combine_chunks()
        offsets = col.offsets.to_numpy()
        values = col.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
        return values.astype(np.int64).reshape(len(col), -1)  # fixed-length lists (padded by the featurizer)

    def ints(name: str) -> np.ndarray:
        return table.column(f"{prefix}{name}").to_numpy().astype(np.int64)

    return OfferFeatures(
        bag("word_ids"),
        bag("char_ids"),
        ints("category"),
        ints("price_bucket"),
        ints("seller"),
        ints("offer"),
    )


def pair_batch(table: pa.Table) -> PairBatch:
    """One :class:`PairBatch` from a table of training examples (all its rows): the feeds' batch builder."""
    return PairBatch(
        _side(table, "q_"),
        _side(table, "c_"),
        table.column("query_offer_id").to_numpy().astype(np.int64),
        table.column("item_offer_id").to_numpy().astype(np.int64),
        table.column("log_q").to_numpy().astype(np.float32),
    )


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


class CandidateQueue:
    """Cross-batch negatives: the candidate embeddings of the last ``size`` training pairs (detached,
    so they cost no backward pass), with their ids and log Q, first in first out.

    Off by default (``train.queue_size: 0``): on the synthetic co-click data it hurt (Recall@10 of
    test_training_learns_co_clicks_better_than_popularity's setting, 12 epochs: 0.236 in-batch only,
    0.201 with 512 queued, 0.034 with 2048). The queued vectors are stale by up to size/batch steps
    while SparseAdam moves the id embeddings fast; cross-batch memory is known to need a trained,
    slowly moving model (Wang et al., CVPR 2020, start it after a warm-up)."""

    def __init__(self, size: int, dim: int, device: str = "cpu") -> None:
        self.size = size
        self.vectors = torch.zeros((0, dim), device=device)
        self.ids = torch.zeros(0, dtype=torch.int64, device=device)
        self.log_q = torch.zeros(0, device=device)

    def push(self, vectors: torch.Tensor, ids: torch.Tensor, log_q: torch.Tensor) -> None:
        self.vectors = torch.cat([vectors.detach(), self.vectors])[: self.size]
        self.ids = torch.cat([ids, self.ids])[: self.size]
        self.log_q = torch.cat([log_q, self.log_q])[: self.size]

    def negatives(self) -> dict[str, Any]:
        """Keyword arguments of :func:`sampled_softmax` (none while the queue is empty)."""
        if len(self.ids) == 0:
            return {}
        return {"extra": self.vectors, "extra_ids": self.ids, "extra_log_q": self.log_q}


def train_step(
    model: OfferTower,
    optimizers: Sequence[torch.optim.Optimizer],
    batch: PairBatch,
    temperature: float,
    device: str,
    queue: CandidateQueue | None = None,
    sync: Callable[[], None] | None = None,
) -> float:
    """One step of sampled softmax over the batch's candidates (plus the queue's, when given).
    ``sync``: called after the backward pass, before the optimizers step (averaging gradients across
    ranks where DDP does not: ``training.run.TrainingRun.sync_gradients``)."""
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    q = model(to_tensors(batch.query, device))
    c = model(to_tensors(batch.candidate, device))
    ids = torch.as_tensor(batch.candidate_ids, device=device)
    log_q = torch.as_tensor(batch.log_q, device=device)
    loss = sampled_softmax(
        q,
        c,
        ids,
        log_q,
        temperature,
        query_ids=torch.as_tensor(batch.query_ids, device=device),
        **(queue.negatives() if queue is not None else {}),
    )
    loss.backward()
    if sync is not None:
        sync()
    for opt in optimizers:
        opt.step()
    if queue is not None:
        queue.push(c, ids, log_q)
    return float(loss.detach())


def train(
    model: OfferTower,
    epochs: int,
    batches: Callable[[int], Iterable[PairBatch]],
    lr: float = 0.005,
    temperature: float = 0.05,
    device: str = "cpu",
    progress_s: float = 30.0,
    queue_size: int = 0,
) -> list[dict[str, Any]]:
    """Trains ``model`` in this process for ``epochs`` over ``batches(epoch)``; returns the history
    (per epoch: loss, steps, examples_per_s). ``queue_size`` > 0 adds that many cross-batch negatives
    (:class:`CandidateQueue`)."""
    model.to(device).train()
    optimizers = make_optimizers(model, lr)
    queue = CandidateQueue(queue_size, model.cfg.dim, device) if queue_size else None

    def step(batch: PairBatch) -> tuple[float, dict[str, float]]:
        loss = train_step(model, optimizers, batch, temperature, device, queue)
        return loss, {"examples": len(batch.query_ids)}

    return run_epochs("encoder", epochs, batches, step, units=("examples",), progress_s=progress_s)
