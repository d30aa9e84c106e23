"""The triplet loss over every anchor of a batch, with the triplets mined inside the batch (pure torch).

- ``batch_hard`` (Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification",
  2017): per anchor, its farthest positive and nearest negative; the mean of
  ``relu(d(a, p) - d(a, n) + margin)`` over anchors that have both;
- ``batch_hard_soft``: the same triplets with the soft margin ``log(1 + exp(d(a, p) - d(a, n)))``;
- ``batch_all``: every valid (a, p, n) triplet of the batch, averaged over those with a positive
  loss (Hermans et al.'s BA+);
- ``semi_hard`` (Schroff et al., "FaceNet", CVPR 2015): per (anchor, positive) pair, the nearest
  negative farther than the positive (``d(a, p) < d(a, n)``); where no negative is farther, the
  farthest negative (as TensorFlow Addons does); the mean over all positive pairs.

``emb`` [B, d] float, ``labels`` [B] int; d is the Euclidean distance. A batch without a valid
triplet gives a zero that still has a gradient.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between rows (numerically safe at 0)."""
    sq = (emb * emb).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * emb @ emb.T).clamp_min(0.0)
    return torch.sqrt(d2 + 1e-12) * (d2 > 0)


def _pairs(emb: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distances [B, B], and the positive (same label, not itself) and negative masks."""
    d = pairwise_distances(emb)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    return d, same & ~eye, ~same


def _hardest_gap(emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    """d(a, farthest positive) - d(a, nearest negative) of every anchor that has both (None: no anchor)."""
    d, pos, neg = _pairs(emb, labels)
    has = pos.any(1) & neg.any(1)
    if not has.any():
        return None
    hardest_pos = torch.where(pos, d, torch.zeros_like(d)).amax(1)
    hardest_neg = torch.where(neg, d, torch.full_like(d, float("inf"))).amin(1)
    return (hardest_pos - hardest_neg)[has]


def batch_hard(emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    gap = _hardest_gap(emb, labels)
    return emb.sum() * 0.0 if gap is None else F.relu(gap + margin).mean()


def batch_hard_soft(emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # soft margin (Hermans et al.): log(1 + exp(gap)) never goes flat, which keeps a collapsed
    # embedding (every distance 0, loss = margin) from being a resting point
    gap = _hardest_gap(emb, labels)
    return emb.sum() * 0.0 if gap is None else F.softplus(gap).mean()


def batch_all(emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    d, pos, neg = _pairs(emb, labels)
    valid = pos[:, :, None] & neg[:, None, :]  # (a, p, n)
    losses = F.relu(d[:, :, None] - d[:, None, :] + margin)[valid]
    active = losses > 1e-12
    return losses[active].mean() if active.any() else emb.sum() * 0.0


def semi_hard(emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    d, pos, neg = _pairs(emb, labels)
    a_idx, p_idx = torch.nonzero(pos & neg.any(1)[:, None], as_tuple=True)
    if len(a_idx) == 0:
        return emb.sum() * 0.0
    d_ap = d[a_idx, p_idx]
    d_an = d[a_idx]  # (pairs, B)
    negs = neg[a_idx]
    farther = negs & (d_an > d_ap[:, None])
    inf = torch.full_like(d_an, float("inf"))
    semi = torch.where(farther, d_an, inf).amin(1)
    fallback = torch.where(negs, d_an, torch.full_like(d_an, -float("inf"))).amax(1)
    chosen = torch.where(farther.any(1), semi, fallback)
    return F.relu(d_ap - chosen + margin).mean()
