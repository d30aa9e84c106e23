"""RankNet (Burges et al., "Learning to Rank using Gradient Descent", ICML 2005): the pairwise logistic
loss over all ordered pairs, a reference loss."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from retrieval.ranking.losses.common import PAD, mask


def ranknet(
    y_pred: torch.Tensor, y_true: torch.Tensor, padded_value_indicator: int = PAD, sigma: float = 1.0
) -> torch.Tensor:
    """Mean pairwise logistic loss log(1 + exp(-sigma (s_i - s_j))) over real pairs with y_i > y_j."""
    valid = mask(y_true, padded_value_indicator)
    y = y_true.float()
    pairs = valid[:, :, None] & valid[:, None, :] & (y[:, :, None] > y[:, None, :])
    if not bool(pairs.any()):
        return y_pred.sum() * 0.0
    diff = y_pred[:, :, None] - y_pred[:, None, :]
    return -F.logsigmoid(sigma * diff)[pairs].mean()
