"""Negatives beyond the batch's own candidates, chosen by name (``encoder.negatives``).

- ``in_batch``: the other candidates of the batch, logQ-corrected by their share of the positives
  (Yi et al., RecSys 2019). Popular offers dominate them; offers nobody clicked never appear.
- ``mixed``: in-batch plus ``uniform_negatives`` offers drawn uniformly from the catalogue every
  step (Mixed Negative Sampling, Yang et al., WWW 2020), so the tail and the never-clicked offers
  are pushed away too. Every candidate's correction is then the log of its probability under the
  mixture, ``log((B p_i + M / N) / (B + M))`` (``p_i`` its share of the positives, ``M`` uniform
  draws from ``N`` offers). The uniform draws come from a bounded pool: a uniform sample of the
  catalogue that train_encoder writes (``encoder.uniform_pool`` offers), which every process holds.
- ``queue``: in-batch plus the candidate vectors of the last ``queue_size`` pairs. Vectors of the live
  tower go stale while SparseAdam moves the id embeddings (``CandidateQueue``: on our data such a
  queue hurt), so they come from a momentum copy of the tower (``queue_momentum``: its weights an
  exponential moving average of the tower's, MoCo, He et al. CVPR 2020), which moves slowly.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from retrieval.encoder.features import OfferFeatures, take

NEGATIVES = ("in_batch", "mixed", "queue")


class CandidateQueue:
    """Cross-batch negatives: the candidate embeddings of the last ``size`` training pairs (detached,
    so they cost no backward pass), with their ids and log Q, first in first out."""

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
        """Keyword arguments of ``sampled_softmax`` (none while the queue is empty)."""
        if len(self.ids) == 0:
            return {}
        return {"extra": self.vectors, "extra_ids": self.ids, "extra_log_q": self.log_q}


class MomentumCopy:
    """A copy of a model whose weights follow the model's as an exponential moving average:
    ``w <- m w + (1 - m) w_model`` after every step (no gradients, never in DDP)."""

    def __init__(self, model: nn.Module, momentum: float) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}")
        self.momentum = momentum
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        mine: list[torch.Tensor] = list(self.model.parameters())
        theirs: list[torch.Tensor] = list(model.parameters())
        torch._foreach_mul_(mine, self.momentum)
        torch._foreach_add_(mine, theirs, alpha=1.0 - self.momentum)

    @torch.no_grad()
    def __call__(self, x: dict[str, torch.Tensor]) -> Any:
        return self.model(x)


class UniformPool:
    """Offers drawn uniformly from the catalogue for mixed negatives: a pool of ``features`` (a
    uniform sample of the catalogue's offers, ``ids`` [P] and ``unigram`` [P] their log share of the
    positives, -inf for offers no pair names), ``catalogue`` offers in all."""

    def __init__(
        self,
        features: OfferFeatures,
        ids: np.ndarray,
        unigram: np.ndarray,
        catalogue: int,
        draws: int,
        batch_size: int,
        seed: int,
    ) -> None:
        if len(ids) == 0:
            raise ValueError("mixed negatives need a non-empty pool of offers (encoder.uniform_pool)")
        self.features, self.ids, self.unigram = features, ids, unigram
        self.draws, self.rng = draws, np.random.default_rng(seed)
        # the mixture of B in-batch draws (by positives' share) and M uniform draws from N offers
        self._b, self._m_over_n = batch_size, draws / max(catalogue, 1)
        self._log_total = math.log(batch_size + draws)

    def mixture_log_q(self, unigram_log_q: torch.Tensor) -> torch.Tensor:
        """log of each offer's probability under the mixture, from its log share of the positives."""
        return torch.log(self._b * torch.exp(unigram_log_q) + self._m_over_n) - self._log_total

    def sample(self) -> tuple[OfferFeatures, np.ndarray, np.ndarray]:
        """This step's uniform draws: their features, ids [M] and log shares of the positives [M]."""
        rows = self.rng.integers(0, len(self.ids), size=self.draws)
        return take(self.features, rows), self.ids[rows], self.unigram[rows]
