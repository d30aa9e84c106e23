"""Metric-learning losses of the image encoder (pure torch), one module per loss, chosen by name from
config (``visual.loss: {name: batch_all, args: {margin: 0.2}}``): every loss takes ``emb`` [B, d]
unit vectors and ``labels`` [B] (the product of each image) and returns a scalar to minimise.

- :mod:`.triplet` — the triplet loss with the triplets mined inside the batch: ``batch_all``,
  ``batch_hard``, ``batch_hard_soft`` (Hermans et al. 2017) and ``semi_hard`` (Schroff et al. 2015).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from retrieval.visual.losses.triplet import (
    batch_all,
    batch_hard,
    batch_hard_soft,
    pairwise_distances,
    semi_hard,
)

LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "batch_all": batch_all,
    "batch_hard": batch_hard,
    "batch_hard_soft": batch_hard_soft,
    "semi_hard": semi_hard,
}

__all__ = ["LOSSES", "batch_all", "batch_hard", "batch_hard_soft", "pairwise_distances", "semi_hard"]
