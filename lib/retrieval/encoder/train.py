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
from retrieval.encoder.model import make_optimizers, to_tensors
from retrieval.encoder.negatives import NEGATIVES, CandidateQueue, MomentumCopy, UniformPool
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


def features_of(table: pa.Table, prefix: str = "") -> OfferFeatures:
    """The offer features in ``table``'s columns ``<prefix>word_ids`` ... ``<prefix>offer``."""

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
        features_of(table, "q_"),
        features_of(table, "c_"),
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


@dataclass
class StepNegatives:
    """What a training step adds to its batch's in-batch negatives (``encoder.negatives``, module
    ``negatives``): uniform draws from a pool (``mixed``), or a queue per tower (``queue``), filled from
    a momentum copy of the model when one is given."""

    pool: UniformPool | None = None
    queues: dict[str, CandidateQueue] | None = None
    momentum: MomentumCopy | None = None


def make_negatives(
    kind: str,
    towers: Sequence[str],
    dim: int,
    device: str,
    model: Any = None,
    queue_size: int = 0,
    queue_momentum: float = 0.0,
    pool: UniformPool | None = None,
) -> StepNegatives:
    """The :class:`StepNegatives` of ``encoder.negatives`` = ``kind`` for a model with ``towers``."""
    if kind == "in_batch":
        return StepNegatives()
    if kind == "mixed":
        if pool is None:
            raise ValueError("mixed negatives need a UniformPool")
        return StepNegatives(pool=pool)
    if kind == "queue":
        if queue_size < 1:
            raise ValueError(f"queue negatives need queue_size >= 1; got {queue_size}")
        momentum = MomentumCopy(model, queue_momentum) if queue_momentum > 0 and model is not None else None
        return StepNegatives(
            queues={t: CandidateQueue(queue_size, dim, device) for t in towers}, momentum=momentum
        )
    raise ValueError(f"encoder.negatives must be one of {NEGATIVES}; got {kind!r}")


def _by_tower(out: Any) -> dict[str, torch.Tensor]:
    """A model's output as {tower: [B, dim]}: a :class:`TowerSet`'s dict, or one tower's tensor."""
    return out if isinstance(out, dict) else {"encoder": out}


def train_step(
    model: Any,
    optimizers: Sequence[torch.optim.Optimizer],
    batch: PairBatch,
    temperature: float,
    device: str,
    negatives: StepNegatives | None = None,
    sync: Callable[[], None] | None = None,
) -> float:
    """One step of sampled softmax over the batch's candidates (and ``negatives``'), for every tower of
    ``model`` (an :class:`OfferTower`, a :class:`TowerSet`, either in DDP): their losses add up (the
    towers share no weights, so each learns as if alone); returns the first tower's loss.
    ``sync``: called after the backward pass, before the optimizers step (averaging gradients across
    ranks where DDP does not: ``training.run.TrainingRun.sync_gradients``)."""
    neg = negatives or StepNegatives()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    candidates = to_tensors(batch.candidate, device)
    q, c = _by_tower(model(to_tensors(batch.query, device))), _by_tower(model(candidates))
    ids = torch.as_tensor(batch.candidate_ids, device=device)
    log_q = torch.as_tensor(batch.log_q, device=device)
    extra: dict[str, dict[str, Any]] = {name: {} for name in q}
    if neg.pool is not None:
        feats, drawn, unigram = neg.pool.sample()
        u = _by_tower(model(to_tensors(feats, device)))
        u_ids = torch.as_tensor(drawn, device=device)
        u_log_q = neg.pool.mixture_log_q(torch.as_tensor(unigram, dtype=torch.float32, device=device))
        log_q = neg.pool.mixture_log_q(log_q)
        extra = {name: {"extra": u[name], "extra_ids": u_ids, "extra_log_q": u_log_q} for name in q}
    if neg.queues is not None:
        extra = {name: neg.queues[name].negatives() for name in q}
    query_ids = torch.as_tensor(batch.query_ids, device=device)
    losses = [
        sampled_softmax(q[name], c[name], ids, log_q, temperature, query_ids=query_ids, **extra[name])
        for name in q
    ]
    torch.stack(losses).sum().backward()
    if sync is not None:
        sync()
    for opt in optimizers:
        opt.step()
    if neg.queues is not None:
        pushed = c
        if neg.momentum is not None:
            neg.momentum.update(getattr(model, "module", model))
            pushed = _by_tower(neg.momentum(candidates))
        for name in q:
            neg.queues[name].push(pushed[name], ids, log_q)
    return float(losses[0].detach())


def train(
    model: Any,
    epochs: int,
    batches: Callable[[int], Iterable[PairBatch]],
    lr: float = 0.005,
    temperature: float = 0.05,
    device: str = "cpu",
    progress_s: float = 30.0,
    negatives: StepNegatives | None = None,
) -> list[dict[str, Any]]:
    """Trains ``model`` (an :class:`OfferTower` or a :class:`TowerSet`) in this process for ``epochs``
    over ``batches(epoch)``; returns the history (per epoch: loss, steps, examples_per_s)."""
    model.to(device).train()
    optimizers = make_optimizers(model, lr)

    def step(batch: PairBatch) -> tuple[float, dict[str, float]]:
        loss = train_step(model, optimizers, batch, temperature, device, negatives)
        return loss, {"examples": len(batch.query_ids)}

    return run_epochs("encoder", epochs, batches, step, units=("examples",), progress_s=progress_s)
