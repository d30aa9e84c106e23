"""NeuralNDCG (Pobrotyn & Białobrzeski, "NeuralNDCG: Direct Optimisation of a Ranking Metric via
Differentiable Relaxation of Sorting", 2021): NDCG computed through NeuralSort's relaxed permutation
matrix (Grover et al., "Stochastic Optimization of Sorting Networks via Continuous Relaxations",
2019) made doubly stochastic by Sinkhorn scaling; the temperature sets how close the relaxation is to
the hard sort, ``k`` the cutoff of the metric it stands for (NeuralNDCG@k).
"""

from __future__ import annotations

import torch

from retrieval.ranking.losses.common import EPS, PAD, discounts, ideal_dcg, mask


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
    valid = mask(y_true, padded_value_indicator)
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
