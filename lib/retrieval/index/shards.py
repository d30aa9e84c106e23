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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrieval.config.loader import ConfigError
from retrieval.evaluation import NO_ITEM

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


class QuantizerError(ConfigError):
    """A stored quantizer given by path (``index.quantizer``) is not one this index can use: a config
    error, a one-line message naming the file."""


def check_quantizer(data: bytes, source: str, dim: int, sha256: str = "") -> Any:
    """The trained, empty index in ``data`` (read from ``source``), checked before use: its checksum
    (when ``sha256`` is given), that faiss reads it as an index, that it is trained and empty, and
    that its dimension is ``dim``.

    Raises:
        QuantizerError: naming ``source`` and what is wrong.
    """
    if sha256 and checksum(data) != sha256.lower():
        raise QuantizerError(f"{source}: sha256 {checksum(data)} is not index.quantizer_sha256 {sha256}")
    try:
        index = from_bytes(data)
    except Exception as e:  # faiss raises RuntimeError with its C++ message
        raise QuantizerError(f"{source}: not a faiss index ({str(e).splitlines()[0][:200]})") from None
    if not index.is_trained or index.ntotal:
        raise QuantizerError(
            f"{source}: a quantizer must be trained and empty (trained {index.is_trained}, {index.ntotal} vectors)"
        )
    if index.d != dim:
        raise QuantizerError(f"{source}: a {index.d}-d quantizer for {dim}-d embeddings")
    faiss = _faiss()
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise QuantizerError(
            f"{source}: its metric is {_METRICS.get(index.metric_type, index.metric_type)}; embeddings are "
            "unit vectors compared by inner product (build it with faiss.METRIC_INNER_PRODUCT)"
        )
    if faiss.try_extract_index_ivf(index) is None and not isinstance(
        index, (faiss.IndexIDMap, faiss.IndexIDMap2)
    ):
        raise QuantizerError(
            f"{source}: a {type(index).__name__} stores no offer ids (wrap it: IDMap2,<factory>)"
        )
    return index


def describe(index: Any) -> str:
    """What a given index is, for the manifest (faiss has no factory string of an index): its class,
    and its number of lists when it is an IVF."""
    ivf = _faiss().try_extract_index_ivf(index)
    return f"{type(index).__name__}" + (f"(nlist={ivf.nlist})" if ivf is not None else "")


_METRICS = {0: "inner product", 1: "L2"}


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
    ivf = faiss.try_extract_index_ivf(index) if nprobe else None
    if ivf is not None:
        ps.set_index_parameter(index, "nprobe", min(nprobe, ivf.nlist))
    if k_factor and "Refine" in type(index).__name__:
        ps.set_index_parameter(index, "k_factor", k_factor)


def search(
    index: Any, queries: np.ndarray, k: int, assigned: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """faiss search; where faiss pads (id -1 with score -FLT_MAX) the score is -inf and the id ``NO_ITEM``
    (a real offer may have id -1: what marks padding is the score).

    ``assigned``: the queries' coarse assignment (D, I of the IVF quantizer, ``nprobe`` lists), to skip
    assigning them again (IVF indices only).
    """
    if index.ntotal == 0 or k == 0:
        return (
            np.full((len(queries), k), -np.inf, np.float32),
            np.full((len(queries), k), NO_ITEM, np.int64),
        )
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if assigned is not None:
        d, i = index.search_preassigned(queries, k, assigned[1], assigned[0])
    else:
        d, i = index.search(queries, k)
    pad = (i == -1) & (d < -1e38)  # faiss's padding: -FLT_MAX (inner product), no real score is near it
    return np.where(pad, -np.inf, d).astype(np.float32), np.where(pad, NO_ITEM, i).astype(np.int64)


def merge_top_k(
    parts: Iterable[tuple[np.ndarray, np.ndarray]],
    k: int,
    exclude: np.ndarray | None = None,
    unique: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Merges per-shard results (D [Q, k_s], I [Q, k_s]) into the global top-``k`` per query (vectorised).

    Best score first; ties broken by the smaller id, so the result does not depend on shard order.
    An id found in several parts (a vector re-added by an update) counts once, with its best score.
    ``exclude``: [Q, m] ids dropped per query (the query itself). Fewer than k results are padded
    with id ``NO_ITEM`` and score -inf; a -inf score is what marks padding, so any other id is an offer.
    ``unique=True`` promises that no id appears twice in a row (shards partition the ids, and superseded
    copies are already dropped), which skips the de-duplication.
    """
    ds, is_ = [], []
    for d_, i_ in parts:
        ds.append(np.asarray(d_, dtype=np.float32))
        is_.append(np.asarray(i_, dtype=np.int64))
    if not ds:
        raise ValueError("merge_top_k needs at least one part")
    d = np.concatenate(ds, axis=1)
    i = np.concatenate(is_, axis=1)
    dead = ~np.isfinite(d)
    if exclude is not None and exclude.size:
        ex = np.asarray(exclude, dtype=np.int64).reshape(len(i), -1)
        dead |= (i[:, :, None] == ex[:, None, :]).any(axis=2)
    d = np.where(dead, -np.inf, d)
    i = np.where(dead, NO_ITEM, i)
    if not unique:  # the same id twice (from two parts, or added twice): keep its best score only
        order = np.lexsort((-d, i), axis=-1)  # by id, then best score first
        i_s, d_s = np.take_along_axis(i, order, -1), np.take_along_axis(d, order, -1)
        repeat = np.zeros_like(dead)
        repeat[:, 1:] = (i_s[:, 1:] == i_s[:, :-1]) & np.isfinite(d_s[:, 1:])
        d, i = np.where(repeat, -np.inf, d_s), np.where(repeat, NO_ITEM, i_s)
    out_d, out_i = _best_k(d, i, k)
    if out_i.shape[1] < k:  # fewer candidates than k in all parts together
        pad = k - out_i.shape[1]
        out_d = np.pad(out_d, ((0, 0), (0, pad)), constant_values=-np.inf)
        out_i = np.pad(out_i, ((0, 0), (0, pad)), constant_values=NO_ITEM)
    out_i = np.where(np.isfinite(out_d), out_i, NO_ITEM)
    return out_d.astype(np.float32), out_i


def _sorted_k(d: np.ndarray, i: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's first k by (score descending, id ascending; padding last)."""
    order = np.lexsort((np.where(np.isfinite(d), i, np.iinfo(np.int64).max), -d), axis=-1)[:, :k]
    return np.take_along_axis(d, order, -1), np.take_along_axis(i, order, -1)


def _best_k(d: np.ndarray, i: np.ndarray, k: int, slack: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_sorted_k`, without sorting every column: a partial partition keeps each row's best
    k + slack, which decides the order unless the boundary is a tie (those rows get the full sort)."""
    kk = k + slack
    if d.shape[1] <= kk:
        return _sorted_k(d, i, k)
    part = np.argpartition(-d, kk - 1, axis=1)[:, :kk]
    dp, ip = np.take_along_axis(d, part, -1), np.take_along_axis(i, part, -1)
    desc = -np.sort(-dp, axis=1)
    tie = (desc[:, kk - 1] == desc[:, k - 1]) & np.isfinite(desc[:, k - 1])  # ties may reach past kk
    out_d, out_i = _sorted_k(dp, ip, k)
    if tie.any():
        out_d[tie], out_i[tie] = _sorted_k(d[tie], i[tie], k)
    return out_d, out_i


def merge_on_disk(trained: bytes, shard_paths: Sequence[str], index_path: str, ivfdata_path: str) -> int:
    """Merges IVF shards (local files) into one index whose inverted lists live in ``ivfdata_path``
    (faiss ``OnDiskInvertedLists``, memory-mapped at search time): one file to serve. Returns ntotal."""
    faiss = _faiss()
    from faiss.contrib.ondisk import merge_ondisk

    index = from_bytes(trained)
    if faiss.try_extract_index_ivf(index) is None:
        raise ValueError("only IVF indices can be merged on disk; keep the shards for other types")
    merge_ondisk(index, list(shard_paths), ivfdata_path)
    faiss.write_index(index, index_path)
    return int(index.ntotal)


def nlist(trained: bytes) -> int:
    """Inverted lists of a trained index (0 when it is not an IVF index)."""
    ivf = _faiss().try_extract_index_ivf(from_bytes(trained))
    return int(ivf.nlist) if ivf is not None else 0


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
    # are dropped at search time. Generation (as a string, for JSON) -> a parquet file of offer_id
    # inside the index directory, written by the executors (the driver never holds the ids).
    tombstones: dict[str, str] = field(default_factory=dict)
    since: dict[str, str] = field(default_factory=dict)  # generation -> the recs.since it was built from
    nprobe: int = 0  # the lists a search probes, chosen at build time for the target recall (0 = not chosen)
    plan: dict[str, Any] = field(default_factory=dict)  # how the factory and nprobe were chosen (planning.py)

    @property
    def vectors(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def generation(self) -> int:
        return max((s.generation for s in self.shards), default=0)

    def excluded_for(self, shard: ShardEntry, tombstones: Mapping[str, frozenset[int]]) -> frozenset[int]:
        """Ids whose vector in ``shard`` is superseded by a later generation (``tombstones``: the loaded
        id sets of :attr:`tombstones`, by generation)."""
        out: set[int] = set()
        for g, ids in tombstones.items():
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
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Searches every (index, superseded ids) shard for ``k`` + slack and merges to the global top-k.

    Plain IVF shards (one trained quantizer, the same nprobe) share one coarse assignment of the queries.

    ``exclude``: [Q, m] ids to leave out per query (e.g. the query offer itself). The slack per shard
    covers them and the shard's superseded ids (capped at 4k), so dropping them still leaves k
    candidates where the shard has them.
    """
    faiss = _faiss()
    parts = []
    extra = 0 if exclude is None else int(np.asarray(exclude).reshape(len(queries), -1).shape[1])
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    assigned: tuple[np.ndarray, np.ndarray] | None = None
    for index, superseded in shards:
        kk = min(k + extra + min(len(superseded), 4 * k), max(index.ntotal, 1))
        ivf = isinstance(index, faiss.IndexIVF) and index.ntotal > 0
        if ivf and assigned is None:
            # every shard shares the trained quantizer: assign the queries to lists once, not per shard
            assigned = index.quantizer.search(queries, index.nprobe)
        d, i = search(index, queries, kk, assigned if ivf else None)
        if superseded:
            dead = np.isin(i, np.fromiter(superseded, dtype=np.int64, count=len(superseded)))
            i = np.where(dead, NO_ITEM, i)
            d = np.where(dead, -np.inf, d).astype(np.float32)
        parts.append((d, i))
    if not parts:
        return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), NO_ITEM, np.int64)
    return merge_top_k(parts, k, exclude, unique=True)  # superseded copies are dropped above
