"""The image encoder, triplet loss with batch-hard / semi-hard mining, baselines and accuracy@K.

The encoder is a small CNN trained from scratch (no pre-trained weights exist inside a PyPI package
that imports beside our torch, and nothing may be fetched from a hub): four conv blocks, global
average and max pooling, a linear projection, L2-normalised output, so that cosine similarity
(inner product) ranks the gallery, as in the offer index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class VisualConfig:
    dim: int = 128  # embedding size
    width: int = 24  # channels of the stem (doubling per block)
    size: int = 64  # input images are size x size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ImageEncoder(nn.Module):
    """A stride-2 stem, then conv blocks at 1/2, 1/4 and 1/8 of the input size (widths w, 2w, 4w, 8w),
    global average + max pooling, a linear projection, unit length. About 55M multiply-adds per 64x64
    image at w=24: sized for CPU training (a GPU takes a wider one through ``width``)."""

    def __init__(self, cfg: VisualConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.features = nn.Sequential(
            _conv(3, w, stride=2),
            _conv(w, 2 * w),
            nn.MaxPool2d(2),
            _conv(2 * w, 4 * w),
            nn.MaxPool2d(2),
            _conv(4 * w, 8 * w),
            _conv(8 * w, 8 * w),
        )
        self.proj = nn.Linear(16 * w, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: float (B, 3, H, W) in [0, 1] -> (B, dim), unit length."""
        h = self.features((x - 0.5) / 0.25)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return F.normalize(self.proj(pooled), dim=1)


def to_tensor(imgs: np.ndarray | Sequence[np.ndarray], device: str | torch.device = "cpu") -> torch.Tensor:
    """(B, H, W, 3) float images -> (B, 3, H, W) tensor."""
    arr = np.ascontiguousarray(np.asarray(imgs, dtype=np.float32).transpose(0, 3, 1, 2))
    return torch.from_numpy(arr).to(device)


@torch.no_grad()
def embed(
    model: ImageEncoder, imgs: np.ndarray, batch_size: int = 256, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Unit-length embeddings (N, dim) float32 of (N, H, W, 3) images, in eval mode."""
    was_training = model.training
    model.eval()
    out = [
        model(to_tensor(imgs[i : i + batch_size], device)).float().cpu().numpy()
        for i in range(0, len(imgs), batch_size)
    ]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.cfg.dim), np.float32)


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between rows (numerically safe at 0)."""
    sq = (emb * emb).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * emb @ emb.T).clamp_min(0.0)
    return torch.sqrt(d2 + 1e-12) * (d2 > 0)


def triplet_loss(
    emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.2, mining: str = "batch_hard"
) -> torch.Tensor:
    """Triplet loss over every anchor of a batch, with the triplets mined inside the batch.

    - ``batch_hard`` (Hermans et al. 2017): per anchor, its farthest positive and nearest negative;
      the mean of ``relu(d(a, p) - d(a, n) + margin)`` over anchors that have both;
      ``batch_hard_soft``: the same triplets with the soft margin ``log(1 + exp(d(a, p) - d(a, n)))``;
      ``batch_all``: every valid (a, p, n) triplet of the batch, averaged over those with a positive
      loss (Hermans et al.'s BA+);
    - ``semi_hard`` (Schroff et al. 2015, FaceNet): per (anchor, positive) pair, the nearest negative
      farther than the positive (``d(a, p) < d(a, n)``); where no negative is farther, the farthest
      negative (as TensorFlow Addons does); the mean over all positive pairs.
    """
    d = pairwise_distances(emb)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos, neg = same & ~eye, ~same
    if mining in ("batch_hard", "batch_hard_soft"):
        has = pos.any(1) & neg.any(1)
        if not has.any():
            return emb.sum() * 0.0
        hardest_pos = torch.where(pos, d, torch.zeros_like(d)).amax(1)
        hardest_neg = torch.where(neg, d, torch.full_like(d, float("inf"))).amin(1)
        gap = (hardest_pos - hardest_neg)[has]
        # soft margin (Hermans et al.): log(1 + exp(gap)) never goes flat, which keeps a collapsed
        # embedding (every distance 0, loss = margin) from being a resting point
        return F.softplus(gap).mean() if mining == "batch_hard_soft" else F.relu(gap + margin).mean()
    if mining == "batch_all":
        valid = pos[:, :, None] & neg[:, None, :]  # (a, p, n)
        losses = F.relu(d[:, :, None] - d[:, None, :] + margin)[valid]
        active = losses > 1e-12
        return losses[active].mean() if active.any() else emb.sum() * 0.0
    if mining == "semi_hard":
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
    raise ValueError(f"mining must be batch_hard, batch_hard_soft, batch_all or semi_hard; got {mining!r}")


def pixel_features(imgs: np.ndarray, side: int = 16) -> np.ndarray:
    """Baseline: the image shrunk to side x side, centred and L2-normalised (raw pixels)."""
    n, h = imgs.shape[0], imgs.shape[1]
    f = h // side
    small = imgs[:, : side * f, : side * f].reshape(n, side, f, side, f, 3).mean(axis=(2, 4)).reshape(n, -1)
    small = small - small.mean(axis=1, keepdims=True)
    return (small / (np.linalg.norm(small, axis=1, keepdims=True) + 1e-9)).astype(np.float32)


def histogram_features(imgs: np.ndarray, bins: int = 8) -> np.ndarray:
    """Baseline: a joint RGB colour histogram (bins^3), square-rooted (Hellinger) and L2-normalised."""
    q = np.minimum((imgs * bins).astype(np.int64), bins - 1)
    codes = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    out = np.zeros((len(imgs), bins**3), np.float32)
    for i, c in enumerate(codes.reshape(len(imgs), -1)):
        out[i] = np.bincount(c, minlength=bins**3)
    out = np.sqrt(out / out.sum(axis=1, keepdims=True))
    return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-9)


def top_k(queries: np.ndarray, gallery: np.ndarray, k: int, block: int = 2048) -> np.ndarray:
    """Indices (Q, k) of the ``k`` gallery rows with the largest inner product, best first."""
    k = min(k, len(gallery))
    out = np.empty((len(queries), k), np.int64)
    for lo in range(0, len(queries), block):
        s = queries[lo : lo + block] @ gallery.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, 1), axis=1, kind="stable")
        out[lo : lo + block] = np.take_along_axis(part, order, 1)
    return out


def accuracy_at_k(
    query_labels: np.ndarray, gallery_labels: np.ndarray, ranked: np.ndarray, ks: Sequence[int] = (1, 5)
) -> dict[int, float]:
    """Share of queries whose label is among the labels of their top-k gallery results (``ranked``:
    gallery indices, best first); a product with several gallery images counts once."""
    hit_at = np.full(len(query_labels), np.inf)
    labels = gallery_labels[ranked]
    match = labels == np.asarray(query_labels)[:, None]
    first = np.where(match.any(1), match.argmax(1), np.inf)
    hit_at[:] = first
    return {k: float((hit_at < k).mean()) if len(hit_at) else 0.0 for k in ks}
