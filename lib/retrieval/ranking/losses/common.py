"""What the ranking losses share: the padding mask, DCG discounts, ideal DCG (pure torch).

Conventions (allRank's): ``y_pred`` [B, L] scores, ``y_true`` [B, L] graded labels of B slates padded
to length L with ``padded_value_indicator`` (:data:`PAD`, -1) in ``y_true``.
"""

from __future__ import annotations

import torch

PAD = -1
EPS = 1e-10


def mask(y_true: torch.Tensor, padded_value_indicator: int) -> torch.Tensor:
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
