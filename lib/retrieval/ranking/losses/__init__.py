"""Listwise ranking losses for the DNN reranker (pure torch), one module per loss, allRank's calling
convention: every loss takes ``y_pred`` [B, L] scores and ``y_true`` [B, L] graded labels of B slates
(listings) padded to length L with ``padded_value_indicator`` (-1) in ``y_true``, and returns a
scalar to minimise. Padded items take no part; a slate whose labels are all zero has nothing to rank
and contributes nothing to the metric-driven losses.

- :mod:`.ndcg_loss2pp` — NDCGLoss2++ of the LambdaLoss framework (Wang et al., CIKM 2018).
- :mod:`.neural_ndcg` — NeuralNDCG (Pobrotyn & Białobrzeski, 2021).
- :mod:`.listnet` and :mod:`.ranknet` — references.

``LOSSES`` maps the config names (``ranker.losses[].name``) to the functions; a loss's config
``args`` are its keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from retrieval.ranking.losses.common import EPS, PAD, discounts, ideal_dcg
from retrieval.ranking.losses.listnet import listnet
from retrieval.ranking.losses.ndcg_loss2pp import ndcg_loss2pp
from retrieval.ranking.losses.neural_ndcg import neural_ndcg, neural_sort, sinkhorn
from retrieval.ranking.losses.ranknet import ranknet

LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "ndcg_loss2pp": ndcg_loss2pp,
    "neural_ndcg": neural_ndcg,
    "listnet": listnet,
    "ranknet": ranknet,
}

__all__ = [
    "EPS",
    "LOSSES",
    "PAD",
    "discounts",
    "ideal_dcg",
    "listnet",
    "ndcg_loss2pp",
    "neural_ndcg",
    "neural_sort",
    "ranknet",
    "sinkhorn",
]
