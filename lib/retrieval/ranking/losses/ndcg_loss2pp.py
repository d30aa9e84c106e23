"""NDCGLoss2++ of the LambdaLoss framework (Wang et al., "The LambdaLoss Framework for Ranking Metric
Optimization", CIKM 2018): a pairwise logistic loss over pairs with different labels, weighted by

    |G_i - G_j| * (mu * |1/D(|i-j|) - 1/D(|i-j|+1)| + |1/D_i - 1/D_j|),

with gains G = (2^y - 1) / IDCG and discounts D_i = log2(1 + i) at the positions of the current
predicted order. Padded items take no part; a slate whose labels are all zero contributes nothing.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from retrieval.ranking.losses.common import EPS, PAD, discounts, ideal_dcg, mask


def ndcg_loss2pp(
    y_pred: torch.Tensor,
    y_true: torch.Tensor,
    padded_value_indicator: int = PAD,
    mu: float = 10.0,
    sigma: float = 1.0,
    reduction: str = "sum",
) -> torch.Tensor:
    """NDCGLoss2++ (see the module docstring); ``reduction`` over the weighted pairs: sum or mean."""
    valid = mask(y_true, padded_value_indicator)
    length = y_pred.shape[1]
    # the current predicted order: padded items last
    scores = y_pred.masked_fill(~valid, float("-inf"))
    order = scores.argsort(dim=1, descending=True)
    s = torch.gather(y_pred, 1, order)
    y = torch.gather(y_true.float(), 1, order)
    v = torch.gather(valid, 1, order)
    idcg = ideal_dcg(y_true, valid).clamp(min=EPS)
    g = torch.where(v, (torch.pow(2.0, y) - 1.0) / idcg[:, None], torch.zeros_like(y))  # [B, L]
    d = discounts(length + 1, y_pred.device)  # D_1..D_{L+1}
    pos = torch.arange(length, device=y_pred.device)
    inv_d = 1.0 / d[:length]
    lambdarank = (inv_d[:, None] - inv_d[None, :]).abs()  # |1/D_i - 1/D_j|
    gap = (pos[:, None] - pos[None, :]).abs()  # |i - j| (0 on the diagonal)
    # delta_ij = |1/D(|i-j|) - 1/D(|i-j|+1)|, with 1/D(0) taken as 0 on the (unused) diagonal
    inv_gap = torch.where(gap > 0, 1.0 / d[(gap - 1).clamp(min=0)], torch.zeros_like(lambdarank))
    delta = (inv_gap - 1.0 / d[gap]).abs() * (gap > 0)
    weights = (g[:, :, None] - g[:, None, :]).abs() * (mu * delta + lambdarank)[None]
    pairs = v[:, :, None] & v[:, None, :] & (y[:, :, None] > y[:, None, :])  # i above j in truth
    diff = (s[:, :, None] - s[:, None, :]).clamp(-1e8, 1e8)
    losses = -weights * F.logsigmoid(sigma * diff) / torch.log(torch.tensor(2.0))  # log2
    picked = losses[pairs]
    if picked.numel() == 0:
        return y_pred.sum() * 0.0
    return picked.sum() if reduction == "sum" else picked.mean()
