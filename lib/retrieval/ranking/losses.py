"""Listwise ranking losses for the DNN reranker (pure torch), with allRank's calling convention.

Every loss takes ``y_pred`` [B, L] scores and ``y_true`` [B, L] graded labels of B slates (listings)
padded to length L with ``padded_value_indicator`` (-1) in ``y_true``, and returns a scalar to
minimise. Padded items take no part; a slate whose labels are all zero has nothing to rank and
contributes nothing to the metric-driven losses.

- :func:`ndcg_loss2pp` — NDCGLoss2++ of the LambdaLoss framework (Wang et al., CIKM 2018): a
  pairwise logistic loss over pairs with different labels, weighted by
  |G_i - G_j| * (mu * |1/D(|i-j|) - 1/D(|i-j|+1)| + |1/D_i - 1/D_j|), with gains G = (2^y - 1) / IDCG
  and discounts D_i = log2(1 + i) at the positions of the current predicted order.
- :func:`neural_ndcg` — NeuralNDCG (Pobrotyn & Białobrzeski, 2021): NDCG computed through NeuralSort's
  relaxed permutation matrix (Grover et al., 2019) made doubly stochastic by Sinkhorn scaling; the
  temperature sets how close the relaxation is to the hard sort.
- :func:`listnet` and :func:`ranknet` — references: top-one softmax cross-entropy, and the pairwise
  logistic loss over all ordered pairs.

``LOSSES`` maps the config names (``ranker.loss``) to the functions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

PAD = -1
EPS = 1e-10


def _mask(y_true: torch.Tensor, padded_value_indicator: int) -> torch.Tensor:
    """[B, L] True where an item is real."""
    return y_true != padded_value_indicator


def discounts(length: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """D_i = log2(1 + i) for positions i = 1..length."""
    return torch.log2(1.0 + torch.arange(1, length + 1, device=device, dtype=torch.float32))


def ideal_dcg(y_true: torch.Tensor, valid: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """[B] DCG@k of each slate's labels in their ideal order, gains 2^y - 1."""
    gains = torch.where(
        valid, torch.pow(2.0, y_true.float()) - 1.0, torch.zeros_like(y_true, dtype=torch.float32)
    )
    ideal, _ = gains.sort(dim=1, descending=True)
    disc = 1.0 / discounts(y_true.shape[1], y_true.device)
    if k is not None:
        disc = torch.where(torch.arange(len(disc), device=disc.device) < k, disc, torch.zeros_like(disc))
    return (ideal * disc).sum(dim=1)


def ndcg_loss2pp(
    y_pred: torch.Tensor,
    y_true: torch.Tensor,
    padded_value_indicator: int = PAD,
    mu: float = 10.0,
    sigma: float = 1.0,
    reduction: str = "sum",
) -> torch.Tensor:
    """NDCGLoss2++ (see the module docstring); ``reduction`` over the weighted pairs: sum or mean."""
    valid = _mask(y_true, padded_value_indicator)
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


def neural_sort(scores: torch.Tensor, valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """NeuralSort's relaxed permutation [B, L, L] (row r = the r-th place, soft one-hot over items).

    Row r of slate b: softmax_j(((n_b + 1 - 2r) s_j - sum_k |s_j - s_k|) / temperature) over the real
    items j (n_b of them); rows beyond n_b and padded columns are zero.
    """
    n = valid.sum(dim=1, keepdim=True).float()  # [B, 1]
    s = scores.masked_fill(~valid, 0.0)
    abs_diff = (s[:, :, None] - s[:, None, :]).abs() * (valid[:, :, None] & valid[:, None, :])
    spread = abs_diff.sum(dim=2)  # [B, L]: sum_k |s_j - s_k| over real k
    r = torch.arange(1, scores.shape[1] + 1, device=scores.device, dtype=torch.float32)
    coef = n[:, :, None] + 1.0 - 2.0 * r[None, :, None]  # [B, L(rows), 1]
    logits = (coef * s[:, None, :] - spread[:, None, :]) / temperature
    logits = logits.masked_fill(~valid[:, None, :], float("-inf"))
    p = torch.softmax(logits, dim=2)
    return p * valid[:, :, None]  # rows past n_b (places that do not exist) are zero


def sinkhorn(p: torch.Tensor, valid: torch.Tensor, iterations: int = 50, tol: float = 1e-6) -> torch.Tensor:
    """Alternate row and column normalisation of the real block of ``p`` until doubly stochastic."""
    block = (valid[:, :, None] & valid[:, None, :]).float()
    p = p * block
    for _ in range(iterations):
        p = p / p.sum(dim=2, keepdim=True).clamp(min=EPS) * block
        p = p / p.sum(dim=1, keepdim=True).clamp(min=EPS) * block
        rows = (p.sum(dim=2) - valid.float()).abs().max()
        cols = (p.sum(dim=1) - valid.float()).abs().max()
        if float(torch.maximum(rows, cols).detach()) < tol:
            break
    return p


def neural_ndcg(
    y_pred: torch.Tensor,
    y_true: torch.Tensor,
    padded_value_indicator: int = PAD,
    temperature: float = 1.0,
    k: int | None = None,
    sinkhorn_iterations: int = 50,
) -> torch.Tensor:
    """-(mean NeuralNDCG@k) over slates with a positive IDCG (0 if there are none)."""
    valid = _mask(y_true, padded_value_indicator)
    p = sinkhorn(neural_sort(y_pred, valid, temperature), valid, sinkhorn_iterations)
    gains = torch.where(valid, torch.pow(2.0, y_true.float()) - 1.0, torch.zeros_like(y_pred))
    sorted_gains = torch.bmm(p, gains.unsqueeze(2)).squeeze(2)  # [B, L]: expected gain at each place
    disc = 1.0 / discounts(y_true.shape[1], y_pred.device)
    if k is not None:
        disc = torch.where(torch.arange(len(disc), device=disc.device) < k, disc, torch.zeros_like(disc))
    idcg = ideal_dcg(y_true, valid, k)
    has = idcg > 0
    if not bool(has.any()):
        return y_pred.sum() * 0.0
    ndcg = (sorted_gains * disc).sum(dim=1) / idcg.clamp(min=EPS)
    return -ndcg[has].mean()


def listnet(y_pred: torch.Tensor, y_true: torch.Tensor, padded_value_indicator: int = PAD) -> torch.Tensor:
    """Top-one probability cross-entropy: softmax(labels) against log_softmax(scores), real items only."""
    valid = _mask(y_true, padded_value_indicator)
    neg = torch.finfo(y_pred.dtype).min
    target = torch.softmax(y_true.float().masked_fill(~valid, neg), dim=1)
    log_p = torch.log_softmax(y_pred.masked_fill(~valid, neg), dim=1)
    return -(target * log_p).masked_fill(~valid, 0.0).sum(dim=1).mean()


def ranknet(
    y_pred: torch.Tensor, y_true: torch.Tensor, padded_value_indicator: int = PAD, sigma: float = 1.0
) -> torch.Tensor:
    """Mean pairwise logistic loss log(1 + exp(-sigma (s_i - s_j))) over real pairs with y_i > y_j."""
    valid = _mask(y_true, padded_value_indicator)
    y = y_true.float()
    pairs = valid[:, :, None] & valid[:, None, :] & (y[:, :, None] > y[:, None, :])
    if not bool(pairs.any()):
        return y_pred.sum() * 0.0
    diff = y_pred[:, :, None] - y_pred[:, None, :]
    return -F.logsigmoid(sigma * diff)[pairs].mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "ndcg_loss2pp": ndcg_loss2pp,
    "neural_ndcg": neural_ndcg,
    "listnet": listnet,
    "ranknet": ranknet,
}
