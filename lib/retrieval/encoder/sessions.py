"""Session queries: training the tower on "session so far -> next offer", and querying with sessions.

The same tower embeds offers on both sides; the query is :class:`SessionPool` over the embeddings of
the session's last ``session_len`` offers. Training examples are every prefix of every training
session with its next offer (the SR-GNN augmentation). The loss is the encoder's sampled softmax:
in-batch negatives with logQ correction, optionally mixed with negatives drawn uniformly from the
catalogue (mixed negative sampling, Yang et al. 2020), whose sampling probability enters the same
correction. Pure numpy/torch: the Spark job only reads tables and hands arrays over.

Items are dense indices 1..n (0 = padding); ``features(idx)`` maps an index array to the tower's
input tensors (id-only: just the ids; with content: that offer's hashed features).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from retrieval.encoder.losses import sampled_softmax
from retrieval.encoder.model import OfferTower, SessionPool, make_optimizers
from retrieval.training.loop import run_epochs

Features = Callable[[np.ndarray], dict[str, torch.Tensor]]


@dataclass
class SessionExamples:
    """history [n, N] item indices, oldest first, right-aligned (0 = padding); lengths [n]; target [n]."""

    history: np.ndarray
    lengths: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.target)


def histories(prefixes: Sequence[Sequence[int]], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``max_len`` items of each prefix, right-aligned: ([n, max_len] int64, [n] lengths)."""
    out = np.zeros((len(prefixes), max_len), dtype=np.int64)
    lengths = np.zeros(len(prefixes), dtype=np.int64)
    for i, p in enumerate(prefixes):
        tail = list(p)[-max_len:]
        if tail:
            out[i, max_len - len(tail) :] = tail
        lengths[i] = len(tail)
    return out, lengths


def session_examples(sessions: Sequence[Sequence[int]], max_len: int) -> SessionExamples:
    """Every prefix (length >= 1) of every session -> the item that follows it."""
    prefixes, targets = [], []
    for s in sessions:
        for t in range(1, len(s)):
            prefixes.append(s[max(0, t - max_len) : t])
            targets.append(s[t])
    history, lengths = histories(prefixes, max_len)
    return SessionExamples(history, lengths, np.asarray(targets, dtype=np.int64))


def id_features(device: str = "cpu") -> Features:
    """The feature function of an id-only catalogue: the tower's ``offer`` input is the dense index."""
    return lambda idx: {"offer": torch.as_tensor(idx, dtype=torch.int64, device=device)}


def query_vectors(
    tower: OfferTower, pool: SessionPool, features: Features, history: np.ndarray, lengths: np.ndarray
) -> torch.Tensor:
    b, n = history.shape
    items = tower(features(history.reshape(-1))).reshape(b, n, -1)
    return pool(items, torch.as_tensor(lengths, device=items.device))


def log_q_mixed(counts: np.ndarray, batch_size: int, uniform: int, n_items: int) -> np.ndarray:
    """log of each item's expected count among a step's negatives: in-batch (by its share of targets)
    plus ``uniform`` draws from the n items. Index = item; the constant matters once samplers mix."""
    share = counts / max(counts.sum(), 1)
    return np.log(batch_size * share + uniform / n_items + 1e-12).astype(np.float32)


def train_sessions(
    tower: OfferTower,
    pool: SessionPool,
    features: Features,
    examples: SessionExamples,
    n_items: int,
    epochs: int,
    batch_size: int = 1024,
    lr: float = 0.003,
    temperature: float = 0.07,
    uniform_negatives: int = 0,
    seed: int = 0,
    device: str = "cpu",
    progress_s: float = 30.0,
) -> list[dict[str, Any]]:
    """Trains tower and pool on ``examples``; the history (per epoch: loss, steps, examples_per_s).

    Each step: B session queries against their B next items plus ``uniform_negatives`` items drawn
    uniformly from 1..n_items, logits corrected by :func:`log_q_mixed`; accidental hits masked.
    """
    tower.to(device).train()
    pool.to(device).train()
    optimizers = [*make_optimizers(tower, lr), torch.optim.Adam(pool.parameters(), lr=lr)]
    counts = np.bincount(examples.target, minlength=n_items + 1).astype(np.float64)
    log_q = torch.as_tensor(log_q_mixed(counts, batch_size, uniform_negatives, n_items), device=device)
    rng = np.random.default_rng(seed)
    steps = len(examples) // batch_size
    if steps == 0:
        raise ValueError(f"{len(examples)} examples make no batch of {batch_size}")

    def batches(epoch: int) -> Iterator[np.ndarray]:
        order = rng.permutation(len(examples))
        for lo in range(0, len(order) - batch_size + 1, batch_size):
            yield order[lo : lo + batch_size]

    def step(part: np.ndarray) -> tuple[float, dict[str, float]]:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        q = query_vectors(tower, pool, features, examples.history[part], examples.lengths[part])
        target = torch.as_tensor(examples.target[part], device=device)
        c = tower(features(examples.target[part]))
        extra = {}
        if uniform_negatives:
            neg = rng.integers(1, n_items + 1, size=uniform_negatives)
            neg_t = torch.as_tensor(neg, device=device)
            extra = {"extra": tower(features(neg)), "extra_ids": neg_t, "extra_log_q": log_q[neg_t]}
        loss = sampled_softmax(q, c, target, log_q[target], temperature, **extra)
        loss.backward()
        for opt in optimizers:
            opt.step()
        return float(loss.detach()), {"examples": len(part)}

    return run_epochs(
        "session encoder", epochs, batches, step, units=("examples",), steps=steps, progress_s=progress_s
    )


@torch.no_grad()
def item_vectors(tower: OfferTower, features: Features, n_items: int, batch: int = 65536) -> np.ndarray:
    """Embeddings of items 1..n_items: [n_items, dim] float32 (row i-1 = item i)."""
    tower.eval()
    ids = np.arange(1, n_items + 1)
    return np.concatenate(
        [tower(features(ids[lo : lo + batch])).cpu().numpy() for lo in range(0, n_items, batch)]
    )


@torch.no_grad()
def session_vectors(
    tower: OfferTower,
    pool: SessionPool,
    features: Features,
    history: np.ndarray,
    lengths: np.ndarray,
    batch: int = 8192,
) -> np.ndarray:
    """Session query embeddings: [n, dim] float32."""
    tower.eval()
    pool.eval()
    return np.concatenate(
        [
            query_vectors(tower, pool, features, history[lo : lo + batch], lengths[lo : lo + batch])
            .cpu()
            .numpy()
            for lo in range(0, len(history), batch)
        ]
    )
