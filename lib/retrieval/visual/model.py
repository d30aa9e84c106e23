"""The image encoder, the untrained baselines (raw pixels, colour histogram) and accuracy@K.

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
class ImageEncoderConfig:
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

    CONFIG_KEY = "model"  # its config's key in a saved model's config.json (training.models)

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> ImageEncoder:
        return cls(ImageEncoderConfig(**d))

    def __init__(self, cfg: ImageEncoderConfig) -> None:
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
