"""Sharded faiss indices (pure numpy + faiss, no Spark): train once, add per shard, search, merge.

An index is a directory: ``quantizer.faiss`` (the trained, empty index: coarse quantizer and any
PQ/OPQ codebooks), one ``shard-NNNNN.faiss`` per partition of the embeddings (a copy of the trained
index with that partition's vectors added), optional ``delta-NNNNN.faiss`` shards from incremental
updates, and ``manifest.json`` listing them with counts and checksums. Every shard shares the
quantizer, so searching each shard and merging the per-shard top-K (:func:`merge_top_k`) gives the
same answer as one index holding every vector.

The index type is a faiss factory string (``Flat``, ``IVF4096,Flat``, ``OPQ16,IVF65536,PQ16x8``,
``IVF4096,PQ16x8,RFlat`` for a refine step); vectors are unit length and the metric is inner product.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
QUANTIZER = "quantizer.faiss"


def _faiss() -> Any:
    import faiss

    return faiss


def make_index(dim: int, factory: str) -> Any:
    """An empty inner-product index of type ``factory`` that stores ids: IVF indices do; others
    (``Flat``, ``HNSW32``, ``PQ16``...) are wrapped in ``IDMap2``."""
    faiss = _faiss()
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if faiss.try_extract_index_ivf(index) is None and not factory.startswith("IDMap"):
        index = faiss.index_factory(dim, f"IDMap2,{factory}", faiss.METRIC_INNER_PRODUCT)
    return index


def train_index(sample: np.ndarray, factory: str, seed: int = 0, threads: int = 0) -> bytes:
    """Trains the index type on ``sample`` [n, d] float32 and returns the serialised empty index."""
    faiss = _faiss()
    if threads:
        faiss.omp_set_num_threads(threads)
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    index = make_index(sample.shape[1], factory)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        if len(sample) < ivf.nlist:
            raise ValueError(
                f"{factory}: {ivf.nlist} lists need at least that many training vectors; got {len(sample)}"
            )
        ivf.cp.seed = seed  # k-means initialisation
        ivf.cp.max_points_per_centroid = max(ivf.cp.max_points_per_centroid, len(sample) // ivf.nlist + 1)
    if not index.is_trained:
        index.train(sample)
    return bytes(faiss.serialize_index(index))


def from_bytes(data: bytes) -> Any:
    return _faiss().deserialize_index(np.frombuffer(data, dtype=np.uint8))


def to_bytes(index: Any) -> bytes:
    return bytes(_faiss().serialize_index(index))


def build_shard(trained: bytes, vectors: np.ndarray, ids: np.ndarray) -> Any:
    """A copy of the trained index with ``vectors`` [n, d] added under ``ids`` [n] int64."""
    index = from_bytes(trained)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
    return index


def set_search_params(index: Any, nprobe: int = 0, k_factor: float = 0.0) -> None:
    """``nprobe`` for IVF indices, ``k_factor`` for a refine step (``RFlat``); 0 leaves a setting alone."""
    faiss = _faiss()
    ps = faiss.ParameterSpace()
    if nprobe and faiss.try_extract_index_ivf(index) is not None:
        ps.set_index_parameter(index, "nprobe", nprobe)
    if k_factor and "Refine" in type(index).__name__:
        ps.set_index_parameter(index, "k_factor", k_factor)


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss search, with -inf scores where faiss pads with id -1."""
    if index.ntotal == 0 or k == 0:
        return (np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64))
    d, i = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    d = np.where(i < 0, -np.inf, d).astype(np.float32)
    return d, i.astype(np.int64)


def merge_top_k(
    parts: Iterable[tuple[np.ndarray, np.ndarray]],
    k: int,
    exclude: Sequence[set[int] | frozenset[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Merges per-shard results (D [Q, k_s], I [Q, k_s]) into the global top-``k`` per query.

    Best score first; ties broken by the smaller id, so the result does not depend on shard order.
    An id found in several parts (a vector re-added by an update) counts once, with its best score.
    ``exclude[q]``: ids dropped for query q (tombstones, the query itself). Fewer than k results are
    padded with id -1 and score -inf.
    """
    ds, is_ = [], []
    for d, i in parts:
        ds.append(np.asarray(d, dtype=np.float32))
        is_.append(np.asarray(i, dtype=np.int64))
    if not ds:
        raise ValueError("merge_top_k needs at least one part")
    d = np.concatenate(ds, axis=1)
    i = np.concatenate(is_, axis=1)
    out_d = np.full((len(d), k), -np.inf, dtype=np.float32)
    out_i = np.full((len(d), k), -1, dtype=np.int64)
    for q in range(len(d)):
        valid = i[q] >= 0
        if exclude is not None and exclude[q]:
            valid &= ~np.isin(i[q], np.fromiter(exclude[q], dtype=np.int64, count=len(exclude[q])))
        dq, iq = d[q][valid], i[q][valid]
        order = np.lexsort((iq, -dq))  # score descending, then id ascending
        dq, iq = dq[order], iq[order]
        _, first = np.unique(iq, return_index=True)  # an id once: its best (first in order) score
        keep = np.sort(first)[:k]
        out_d[q, : len(keep)] = dq[keep]
        out_i[q, : len(keep)] = iq[keep]
    return out_d, out_i


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ShardEntry:
    file: str  # name inside the index directory
    count: int  # vectors in it
    sha256: str
    generation: int = 0  # 0 = base shards; n = the n-th incremental delta


@dataclass
class Manifest:
    """What ``manifest.json`` holds: enough to load, verify and search every shard."""

    version: str
    model_version: str
    factory: str
    metric: str
    dim: int
    quantizer_sha256: str
    shards: list[ShardEntry] = field(default_factory=list)
    # ids superseded at each generation (changed or deleted offers): hits on them from an older shard
    # are dropped at search time. Keyed by generation (as a string, for JSON).
    tombstones: dict[str, list[int]] = field(default_factory=dict)
    since: dict[str, str] = field(default_factory=dict)  # generation -> the recs.since it was built from

    @property
    def vectors(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def generation(self) -> int:
        return max((s.generation for s in self.shards), default=0)

    def excluded_for(self, shard: ShardEntry) -> frozenset[int]:
        """Ids whose vector in ``shard`` is superseded by a later generation."""
        out: set[int] = set()
        for g, ids in self.tombstones.items():
            if int(g) > shard.generation:
                out.update(ids)
        return frozenset(out)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Manifest:
        d = dict(d)
        d["shards"] = [ShardEntry(**s) for s in d.get("shards", [])]
        return Manifest(**d)


def search_shards(
    shards: Iterable[tuple[Any, frozenset[int]]],
    queries: np.ndarray,
    k: int,
    exclude: Sequence[set[int] | frozenset[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Searches every (index, superseded ids) shard for ``k`` + slack and merges to the global top-k.

    The slack per shard is the number of ids the shard may not return (its superseded ids and the
    query's own exclusions), capped, so dropping them still leaves k candidates where they exist.
    """
    parts = []
    extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
    for index, superseded in shards:
        kk = k + extra + min(len(superseded), 4 * k)
        d, i = search(index, queries, min(kk, max(index.ntotal, 1)))
        if superseded:
            dead = np.isin(i, np.fromiter(superseded, dtype=np.int64, count=len(superseded)))
            i = np.where(dead, -1, i)
            d = np.where(dead, -np.inf, d).astype(np.float32)
        parts.append((d, i))
    if not parts:
        return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    return merge_top_k(parts, k, exclude)
