"""The DNN reranker (pure torch): scores every offer of a slate from its numeric features and the text
of query and title, trained with a listwise loss of ``losses.LOSSES``.

A slate is one listing's top ``rerank_k`` offers by the first-stage (XGBoost) score. Per offer the
model sees the numeric features (the first-stage scores among them, standardised with the training
set's mean and std, stored in the model) and the textual input: the query's and the title's vectors
from the encoder's hashed word and character n-gram bags (one embedding space for both), as their
element-wise product and cosine. Two scorers:

- ``mlp``: a wide-and-deep head, ``linear(z) + mlp(z)`` per offer, with the MLP's last layer starting
  at zero: training starts from a linear model of the inputs (in practice, the first-stage order)
  and the deep part learns what the linear part cannot;
- ``attention``: the same per-offer embedding, then self-attention across the slate's offers
  (context-aware scoring, as in allRank), padding masked.

Slates are stored one per row (``slate_columns``): flat list columns with each offer's values
consecutive, padded to the batch's longest slate here, labels padded with -1 (the losses' convention).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from retrieval.ranking.losses import PAD

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass
class RerankerConfig:
    features: list[str] = field(default_factory=list)  # numeric feature names, in the stored order
    text_dim: int = 0  # size of the query / title text vectors (0 = no textual input)
    kind: str = "mlp"  # mlp | attention
    hidden: int = 128
    heads: int = 2  # attention: heads and layers
    layers: int = 1
    dropout: float = 0.1

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RerankerConfig:
        return RerankerConfig(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SlateBatch:
    """B slates padded to length L: x [B, L, F] float32, q [B, D], t [B, L, D], y [B, L] int64 (-1 pad)."""

    x: np.ndarray
    q: np.ndarray
    t: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def _flat(table: pa.Table, name: str, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """Values and per-row offsets of a list column (one chunk)."""
    col = table.column(name).combine_chunks()
    off = col.offsets.to_numpy()
    # flatten() honours a sliced array's offsets (``.values`` would be the whole buffer)
    return col.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False), off - off[0]


def slate_batch(table: pa.Table, n_features: int, text_dim: int, label: str = "label") -> SlateBatch:
    """Slate rows -> one padded :class:`SlateBatch`.

    Columns: ``label`` list<int> [n], ``x`` list<float> [n * n_features], and when ``text_dim``:
    ``q_vec`` list<float> [text_dim], ``t_vec`` list<float> [n * text_dim].
    """
    y_flat, off = _flat(table, label, np.int64)
    sizes = np.diff(off)
    b, length = len(sizes), int(sizes.max()) if len(sizes) else 0
    row = np.repeat(np.arange(b), sizes)
    col = np.arange(len(y_flat)) - np.repeat(off[:-1], sizes)
    y = np.full((b, length), PAD, dtype=np.int64)
    y[row, col] = y_flat
    x = np.zeros((b, length, n_features), dtype=np.float32)
    xv, _ = _flat(table, "x", np.float32)
    if len(xv) != len(y_flat) * n_features:
        raise ValueError(f"x holds {len(xv)} values for {len(y_flat)} offers x {n_features} features")
    x[row, col] = xv.reshape(-1, n_features)
    q = np.zeros((b, text_dim), dtype=np.float32)
    t = np.zeros((b, length, text_dim), dtype=np.float32)
    if text_dim:
        qv, _ = _flat(table, "q_vec", np.float32)
        q[:] = qv.reshape(b, text_dim)
        tv, _ = _flat(table, "t_vec", np.float32)
        t[row, col] = tv.reshape(-1, text_dim)
    return SlateBatch(x, q, t, y)


class Reranker(nn.Module):
    """Slate -> [B, L] scores (padding scored -inf-safe by the losses' masks)."""

    CONFIG_KEY = "reranker"  # its config's key in a saved model's config.json (training.models)

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> Reranker:
        return cls(RerankerConfig.from_dict(d))

    def __init__(self, cfg: RerankerConfig, mean: np.ndarray | None = None, std: np.ndarray | None = None):
        super().__init__()
        self.cfg = cfg
        n = len(cfg.features)
        self.register_buffer(
            "mean", torch.as_tensor(mean if mean is not None else np.zeros(n), dtype=torch.float32)
        )
        self.register_buffer(
            "std", torch.as_tensor(std if std is not None else np.ones(n), dtype=torch.float32)
        )
        width = n + (cfg.text_dim + 1 if cfg.text_dim else 0)
        self.linear = nn.Linear(width, 1)
        self.embed = nn.Sequential(
            nn.Linear(width, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(),
        )
        if cfg.kind == "attention":
            layer = nn.TransformerEncoderLayer(
                cfg.hidden, cfg.heads, dim_feedforward=2 * cfg.hidden, dropout=cfg.dropout, batch_first=True
            )
            self.context: nn.Module | None = nn.TransformerEncoder(
                layer, cfg.layers, enable_nested_tensor=False
            )
        elif cfg.kind == "mlp":
            self.context = None
        else:
            raise ValueError(f"ranker.dnn_kind must be mlp or attention; got {cfg.kind!r}")
        self.head = nn.Linear(cfg.hidden, 1)
        nn.init.zeros_(self.head.weight)  # start as the linear model; the deep part learns the rest
        nn.init.zeros_(self.head.bias)

    def inputs(self, x: torch.Tensor, q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        z = (x - mean) / std
        if not self.cfg.text_dim:
            return z
        qt = q[:, None, :] * t  # [B, L, D]
        return torch.cat([z, qt, qt.sum(dim=2, keepdim=True)], dim=2)

    def forward(self, x: torch.Tensor, q: torch.Tensor, t: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        z = self.inputs(x, q, t)
        h = self.embed(z)
        if self.context is not None:
            h = self.context(h, src_key_padding_mask=~valid)
        return (self.linear(z) + self.head(h)).squeeze(2)


def to_tensors(b: SlateBatch, device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
    y = torch.as_tensor(b.y, device=device)
    return (
        torch.as_tensor(b.x, device=device),
        torch.as_tensor(b.q, device=device),
        torch.as_tensor(b.t, device=device),
        y,
        y != PAD,
    )


def score(model: Reranker, b: SlateBatch, device: str = "cpu") -> np.ndarray:
    """[B, L] scores of a batch without gradients (padding -inf)."""
    model.eval()
    x, q, t, _, valid = to_tensors(b, device)
    with torch.no_grad():
        s = model(x, q, t, valid)
    return s.masked_fill(~valid, float("-inf")).cpu().numpy()


def feature_stats(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (std >= 1e-6) of each feature over the real offers of slates [B, L, F]."""
    real = x[y != PAD]
    return real.mean(axis=0), np.maximum(real.std(axis=0), 1e-6)
