"""ListNet (Cao et al., "Learning to Rank: From Pairwise Approach to Listwise Approach", ICML 2007):
the top-one probability cross-entropy, a reference loss."""

from __future__ import annotations

import torch

from retrieval.ranking.losses.common import PAD, mask


def listnet(y_pred: torch.Tensor, y_true: torch.Tensor, padded_value_indicator: int = PAD) -> torch.Tensor:
    """Top-one probability cross-entropy: softmax(labels) against log_softmax(scores), real items only."""
    valid = mask(y_true, padded_value_indicator)
    neg = torch.finfo(y_pred.dtype).min
    target = torch.softmax(y_true.float().masked_fill(~valid, neg), dim=1)
    log_p = torch.log_softmax(y_pred.masked_fill(~valid, neg), dim=1)
    return -(target * log_p).masked_fill(~valid, 0.0).sum(dim=1).mean()
