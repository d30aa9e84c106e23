"""The two-tower encoder (one tower, shared weights) for offers and sessions.

An offer is embedded from its content (title words and character n-grams, category, price bucket,
seller) plus a hashed offer-id embedding for what co-clicks say that content cannot (the hybrid; how
the halves combine is ``combine``: summed, gated or concatenated); the id part is zeroed for cold
offers (and randomly during training, so the content part learns to stand alone).
A session is the recency-weighted mean of its last offers' embeddings, so the same tower answers
"offers like this one" and "next offer for this session". Outputs are L2-normalised.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from retrieval.config import EncoderHyper
from retrieval.encoder.features import OfferFeatures, Vocab, take


@dataclass
class TowerConfig(EncoderHyper):
    """The tower's whole configuration: the hyper-parameters of the ``encoder`` config section
    (:class:`~retrieval.config.EncoderHyper`), the hashing vocabulary and the input mode."""

    content: bool = True  # content features; False = id-only mode (catalogues with ids only, e.g. Diginetica)
    sparse: bool = True  # sparse embedding gradients + SparseAdam (CPU/gloo); dense for nccl
    vocab: Vocab = field(default_factory=Vocab)

    @staticmethod
    def from_section(section: EncoderHyper, **kw: Any) -> TowerConfig:
        """The hyper-parameters of ``section`` (any :class:`EncoderHyper`), plus ``kw``."""
        hyper = {f.name: getattr(section, f.name) for f in fields(EncoderHyper)}
        return TowerConfig(**{**hyper, **kw})

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TowerConfig:
        d = dict(d)
        v = dict(d.pop("vocab", {}))
        if "char_n" in v:
            v["char_n"] = tuple(v["char_n"])
        return TowerConfig(**d, vocab=Vocab(**v))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_tensors(f: OfferFeatures, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    return {
        k: torch.as_tensor(getattr(f, k), device=device)
        for k in ("words", "chars", "category", "price", "seller", "offer")
    }


class OfferTower(nn.Module):
    """Offer features -> [B, dim] unit vectors."""

    CONFIG_KEY = "encoder"  # its config's key in a saved model's config.json (training.models)

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> OfferTower:
        return cls(TowerConfig.from_dict(d))

    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        v, e = cfg.vocab, cfg.embed_dim
        # Sparse gradients: a step touches a few thousand rows of tables with 10^5-10^6 rows, so the
        # embeddings get SparseAdam and only the MLP a dense optimizer (see make_optimizers).
        sp = cfg.sparse
        if not cfg.content:  # id-only mode: the id embedding and its projection are the whole tower
            if not cfg.use_id:
                raise ValueError("an id-only encoder (content=False) needs use_id=True")
            self.offer = nn.Embedding(v.ids, e, padding_idx=0, sparse=sp)
            self.id_proj = nn.Linear(e, cfg.dim, bias=False)
            nn.init.normal_(self.offer.weight, std=0.05)
            return
        self.words = nn.EmbeddingBag(v.words, e, mode="mean", padding_idx=0, sparse=sp)
        self.chars = nn.EmbeddingBag(v.chars, e, mode="mean", padding_idx=0, sparse=sp)
        self.category = nn.Embedding(v.categories, e, padding_idx=0, sparse=sp)
        self.price = nn.Embedding(v.prices, e, padding_idx=0, sparse=sp)
        self.seller = nn.Embedding(v.sellers, e, padding_idx=0, sparse=sp)
        ie = cfg.id_dim or e
        concat = cfg.use_id and cfg.combine == "concat"
        self.mlp = nn.Sequential(
            nn.Linear(5 * e + (ie if concat else 0), cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.dim)
        )
        if cfg.use_id:  # no id modules in a content-only tower: DDP refuses parameters without gradients
            self.offer = nn.Embedding(v.ids, ie, padding_idx=0, sparse=sp)
            nn.init.normal_(self.offer.weight, std=0.05)
            if not concat:
                self.id_proj = nn.Linear(ie, cfg.dim, bias=False)
            if cfg.combine == "gate":
                self.gate = nn.Linear(2 * cfg.dim, cfg.dim)
        for emb in (self.words, self.chars, self.category, self.price, self.seller):
            nn.init.normal_(emb.weight, std=0.05)

    def forward(self, x: dict[str, torch.Tensor], use_id: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            x: tensors of ``to_tensors`` ([B, L] padded bags, [B] ids).
            use_id: [B] bool, whether each offer's id embedding counts (False for cold offers);
                None = as ``cfg.use_id`` says, with ``id_dropout`` applied while training.
        Returns: [B, dim] float32, L2-normalised.
        """
        if not self.cfg.content:  # id-only: the id embedding is all there is (no id dropout)
            return F.normalize(self.id_proj(self.offer(x["offer"])), dim=1)
        content = torch.cat(
            [
                self.words(x["words"]),  # [B, L] input: one bag per row, padding (0) ignored
                self.chars(x["chars"]),
                self.category(x["category"]),
                self.price(x["price"]),
                self.seller(x["seller"]),
            ],
            dim=1,
        )
        if not self.cfg.use_id:
            return F.normalize(self.mlp(content), dim=1)
        keep = torch.ones(len(content), dtype=torch.bool, device=content.device) if use_id is None else use_id
        if self.training and use_id is None and self.cfg.id_dropout > 0:
            keep = keep & (torch.rand(len(content), device=content.device) >= self.cfg.id_dropout)
        ids = self.offer(x["offer"]) * keep.unsqueeze(1).to(content.dtype)  # [B, id_dim], 0 where off
        if self.cfg.combine == "concat":
            return F.normalize(self.mlp(torch.cat([content, ids], dim=1)), dim=1)
        out, collaborative = self.mlp(content), self.id_proj(ids)
        if self.cfg.combine == "gate":  # per dimension, how much of the id half to take, from both halves
            collaborative = torch.sigmoid(self.gate(torch.cat([out, collaborative], dim=1))) * collaborative
        return F.normalize(out + collaborative, dim=1)


@dataclass
class TowerSetConfig:
    """The configs of a :class:`TowerSet`'s towers, by name."""

    towers: dict[str, TowerConfig]

    def to_dict(self) -> dict[str, Any]:
        return {name: c.to_dict() for name, c in self.towers.items()}


class TowerSet(nn.Module):
    """Several towers trained side by side on the same batches (the encoder and its ``content_trained``
    baseline): one module for DDP, the optimizers, the checkpoints and a broadcast to executors; each
    tower is saved on its own (:meth:`tower`)."""

    CONFIG_KEY = "towers"

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> TowerSet:
        return cls({name: TowerConfig.from_dict(c) for name, c in d.items()})

    def __init__(self, cfgs: dict[str, TowerConfig]) -> None:
        super().__init__()
        self.cfg = TowerSetConfig(dict(cfgs))
        self.towers = nn.ModuleDict({name: OfferTower(c) for name, c in cfgs.items()})

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{name: [B, dim] unit vectors} of every tower."""
        return {name: tower(x) for name, tower in self.towers.items()}

    def tower(self, name: str) -> OfferTower:
        tower = self.towers[name]
        assert isinstance(tower, OfferTower)
        return tower

    @classmethod
    def of(cls, towers: dict[str, OfferTower]) -> TowerSet:
        """A set holding (copies of the weights of) trained ``towers``."""
        out = cls({name: t.cfg for name, t in towers.items()})
        for name, t in towers.items():
            out.tower(name).load_state_dict(t.state_dict())
        return out


def make_optimizers(model: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
    """SparseAdam for the embedding tables that have sparse gradients, AdamW for everything else.

    Dense embeddings (``TowerConfig.sparse=False``, what the GPU / nccl path uses) go to AdamW:
    SparseAdam refuses dense gradients.
    """
    sparse = [
        p
        for m in model.modules()
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse
        for p in m.parameters()
    ]
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in sparse_ids]
    optimizers: list[torch.optim.Optimizer] = [torch.optim.AdamW(dense, lr=lr, weight_decay=1e-5)]
    if sparse:
        optimizers.insert(0, torch.optim.SparseAdam(sparse, lr=lr))
    return optimizers


def pool_sessions(item_vectors: torch.Tensor, lengths: torch.Tensor, decay: float) -> torch.Tensor:
    """Recency-weighted mean of each session's offer vectors (weight ``decay ** age``), re-normalised.

    Args:
        item_vectors: [B, N, dim] the last N offers of each session, oldest first, right-aligned
            (padding at the front).
        lengths: [B] number of real offers per session (1..N).
    Returns: [B, dim] unit vectors.
    """
    n = item_vectors.shape[1]
    age = torch.arange(n - 1, -1, -1, device=item_vectors.device, dtype=item_vectors.dtype)  # newest = 0
    return _pool(item_vectors, lengths, age * math.log(decay))


def _pool(item_vectors: torch.Tensor, lengths: torch.Tensor, age_logits: torch.Tensor) -> torch.Tensor:
    """Softmax(age_logits) over each session's real positions as weights; [N] logits, newest last."""
    n = item_vectors.shape[1]
    age = torch.arange(n - 1, -1, -1, device=item_vectors.device)
    real = age.unsqueeze(0) < lengths.unsqueeze(1)  # [B, N]
    logits = age_logits[-n:].unsqueeze(0).masked_fill(~real, float("-inf"))
    weights = torch.softmax(logits, dim=1)
    return F.normalize((weights.unsqueeze(2) * item_vectors).sum(dim=1), dim=1)


class SessionPool(nn.Module):
    """The session query: a weighted mean of the last ``cfg.session_len`` offer vectors by recency.

    One weight per recency position, learned, starting at ``session_decay ** age`` (where it equals
    :func:`pool_sessions`). Kept apart from :class:`OfferTower` so pair training (which never pools)
    leaves no unused parameters in DDP.
    """

    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        age = torch.arange(cfg.session_len - 1, -1, -1, dtype=torch.float32)
        self.age_logits = nn.Parameter(age * math.log(cfg.session_decay))

    def forward(self, item_vectors: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if item_vectors.shape[1] > len(self.age_logits):
            raise ValueError(
                f"sessions of {item_vectors.shape[1]} offers; this pool holds {len(self.age_logits)}"
            )
        return _pool(item_vectors, lengths, self.age_logits)


def load_pool(path_dir: str, cfg: TowerConfig) -> SessionPool:
    """The model's trained session pool, or the fixed recency decay if it was trained on pairs only."""
    from retrieval.training.models import load_part

    pool = SessionPool(cfg)
    load_part(pool, path_dir, "session_pool")
    return pool


def embed(
    model: OfferTower,
    feats: OfferFeatures,
    batch_size: int = 4096,
    use_id: np.ndarray | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Embeds offers in batches without gradients: [B, dim] float32."""
    model.eval()
    out = []
    with torch.no_grad():
        for lo in range(0, len(feats), batch_size):
            part = take(feats, slice(lo, lo + batch_size))
            mask = None if use_id is None else torch.as_tensor(use_id[lo : lo + batch_size], device=device)
            out.append(model(to_tensors(part, device), mask).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.dim), np.float32)


def text_vectors(model: OfferTower, words: torch.Tensor, chars: torch.Tensor) -> torch.Tensor:
    """The tower's text part alone: unit vectors of the word bag + the character n-gram bag, [B, embed_dim].

    One space for any text (a title, a query): what the reranker compares query and title in.
    """
    if not model.cfg.content:
        raise ValueError("an id-only encoder (content=False) has no text bags")
    with torch.no_grad():
        return F.normalize(model.words(words) + model.chars(chars), dim=1)
