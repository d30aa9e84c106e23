"""Building a sharded index on Spark (the offer index of build_index, the image index of embed_images):
train the quantizer once on a bounded sample, write one shard per partition, a manifest, then the
pointer; and the incremental path (a delta shard and tombstones) and the recall check against exact
search. The per-shard work is ``spark_index``'s; the index logic itself is ``shards.py``'s.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval import storage
from retrieval.evaluation import NO_ITEM, recall_at_k
from retrieval.index import shards
from retrieval.index.spark_index import exact_neighbours, sample_vectors, search_neighbours, write_shards

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from retrieval.config.sections import IndexSection

log = logging.getLogger(__name__)


def train_quantizer(vectors: DataFrame, factory: str, sample: int, seed: int) -> bytes:
    """The index type ``factory`` trained on up to ``sample`` vectors (a hash sample) on the driver."""
    return shards.train_index(sample_vectors(vectors, sample, seed), factory, seed=seed, threads=0)


def write_index(
    vectors: DataFrame,
    index_uri: str,
    trained: bytes,
    n_shards: int,
    version: str,
    model_version: str,
    factory: str,
    threads: int = 1,
) -> shards.Manifest:
    """A new index version in the fresh directory ``index_uri`` (``commit.stage``) from every
    (offer_id, vector) row: the quantizer, one shard per partition; returns its manifest, not yet
    written (:func:`commit` does: an index without its manifest is incomplete, and nothing points at
    it before then)."""
    storage.write_bytes_atomic(storage.join(index_uri, shards.QUANTIZER), trained)
    return shards.Manifest(
        version=version,
        model_version=model_version,
        factory=factory,
        metric="inner_product",
        dim=int(shards.from_bytes(trained).d),
        quantizer_sha256=shards.checksum(trained),
        shards=write_shards(vectors, trained, index_uri, n_shards, threads=threads),
    )


def add_delta(
    delta: DataFrame, index_uri: str, manifest: shards.Manifest, since: str, threads: int = 1
) -> shards.Manifest:
    """The live index plus one generation: the delta's new vectors as a delta shard (the live quantizer),
    and its offers' ids as tombstones of the older generations (changed or deleted offers)."""
    from pyspark.sql import functions as F

    from retrieval.index.spark_index import write_tombstones

    trained = storage.read_bytes(storage.join(index_uri, shards.QUANTIZER))
    gen = manifest.generation + 1
    manifest.shards += write_shards(
        delta.where(~F.col("deleted")),
        trained,
        index_uri,
        1,
        prefix=f"delta{gen:03d}",
        generation=gen,
        threads=threads,
    )
    manifest.tombstones[str(gen)] = write_tombstones(delta, index_uri, gen)
    manifest.since[str(gen)] = since
    return manifest


def commit(root: str, name: str, index_uri: str, manifest: shards.Manifest) -> None:
    """The manifest, then the pointer ``<root>/<name>/CURRENT`` naming this version (what readers
    resolve), with the stage's other outputs when a stage transaction is open. The version replaced
    stays until retention (``commit.clean``) removes it one commit later. An incremental generation
    rewrites the live version's manifest in place (its delta shards have new names): that one atomic
    write is its commit."""
    from retrieval import commit as commits
    from retrieval import runlock

    commits.crash_point("after_data")
    runlock.assert_held(root)  # an incremental generation's manifest write is its commit: fenced too
    storage.write_json_atomic(storage.join(index_uri, shards.MANIFEST), manifest.to_dict())
    commits.crash_point("between_manifest_and_pointer")
    commits.register(root, name, index_uri)


def _ann_recall(
    vectors: DataFrame,
    index_uri: str,
    manifest: shards.Manifest,
    ids: np.ndarray,
    vecs: np.ndarray,
    exact: np.ndarray,
    nprobe: int,
    k_factor: float,
    threads: int,
) -> float:
    """Recall@10 of the sharded index at ``nprobe`` for the query vectors ``vecs`` (ids ``ids``),
    against their exact top-10 ``exact``."""
    spark = vectors.sparkSession
    qdf = spark.createDataFrame(
        [(int(i), v.tolist()) for i, v in zip(ids, vecs, strict=True)], "offer_id bigint, vector array<float>"
    ).coalesce(1)
    found = search_neighbours(qdf, manifest, index_uri, 10, nprobe, k_factor, threads)
    ann = {r["offer_id"]: list(r["neighbours"]) for r in found.collect()}
    ranked = np.array([(ann.get(int(i), []) + [NO_ITEM] * 10)[:10] for i in ids], dtype=np.int64)
    return recall_at_k(ranked, [set(row[row != NO_ITEM].tolist()) for row in exact], 10)


def recall_vs_exact(
    vectors: DataFrame,
    index_uri: str,
    manifest: shards.Manifest,
    queries: int,
    seed: int,
    nprobe: int,
    k_factor: float,
    threads: int,
) -> float:
    """Recall@10 of the sharded index against exact search, on a hash sample of ``queries`` offers."""
    ids, vecs = sample_vectors(vectors, queries, seed, with_ids=True)
    if len(ids) == 0:
        return float("nan")
    exact = exact_neighbours(vectors, ids, vecs, 10)
    return _ann_recall(vectors, index_uri, manifest, ids, vecs, exact, nprobe, k_factor, threads)


def tune_nprobe(
    vectors: DataFrame, index_uri: str, manifest: shards.Manifest, ix: IndexSection, seed: int
) -> dict[str, Any]:
    """The smallest nprobe (a power of two) whose recall@10 against exact search reaches
    ``ix.target_recall`` on half of a sample of 2 x ``ix.eval_queries`` offers, and the recall at that
    nprobe on the other half (the figure reported: not the one it was chosen on). One exact pass over
    every vector, then one small search job per nprobe tried."""
    from retrieval.index.planning import choose_nprobe, nprobe_candidates

    queries, target, k_factor, threads = ix.eval_queries, ix.target_recall, ix.k_factor, ix.threads

    ids, vecs = sample_vectors(vectors, 2 * queries, seed, with_ids=True)
    if len(ids) < 2:
        return {"nprobe": 1, "recall_at_10_vs_exact": float("nan"), "tried": {}}
    exact = exact_neighbours(vectors, ids, vecs, 10)
    half = len(ids) // 2
    lists = shards.nlist(storage.read_bytes(storage.join(index_uri, shards.QUANTIZER)))
    tried: dict[int, float] = {}
    for p in nprobe_candidates(lists):
        tried[p] = round(
            _ann_recall(
                vectors, index_uri, manifest, ids[:half], vecs[:half], exact[:half], p, k_factor, threads
            ),
            4,
        )
        log.info("nprobe %d of %d lists: recall@10 %.4f (target %.2f)", p, lists, tried[p], target)
        if tried[p] >= target:
            break
    nprobe = choose_nprobe(tried, target)
    check = _ann_recall(
        vectors, index_uri, manifest, ids[half:], vecs[half:], exact[half:], nprobe, k_factor, threads
    )
    return {"nprobe": nprobe, "recall_at_10_vs_exact": check, "tried": {str(p): r for p, r in tried.items()}}


def merge_for_serving(index_uri: str, manifest: shards.Manifest) -> str:
    """Merges the IVF shards into one memory-mapped on-disk index (merged.faiss + merged.ivfdata) for
    serving; returns its path. Needs a local index directory."""
    from retrieval.config import ConfigError

    if not storage.is_local(index_uri):
        raise ConfigError("index.merge writes an on-disk (memory-mapped) index: it needs a local paths.root")
    local = storage.local_path(index_uri)
    log.info(
        "merging %d shards (%s vectors) into one on-disk index ...",
        len(manifest.shards),
        f"{manifest.vectors:,}",
    )
    t0 = time.perf_counter()
    trained = storage.read_bytes(storage.join(index_uri, shards.QUANTIZER))
    merged = os.path.join(local, "merged.faiss")
    ntotal = shards.merge_on_disk(
        trained,
        [os.path.join(local, e.file) for e in manifest.shards],
        merged,
        os.path.join(local, "merged.ivfdata"),
    )
    log.info("merged %s vectors in %.1f s: %s", f"{ntotal:,}", time.perf_counter() - t0, merged)
    assert ntotal == manifest.vectors, (ntotal, manifest.vectors)
    return merged


def summary_of(manifest: shards.Manifest) -> dict[str, Any]:
    """The manifest's figures every index stage reports."""
    return {
        "shards": len(manifest.shards),
        "vectors": manifest.vectors,
        "index_factory": manifest.factory,
        "index_version": manifest.version,
        "generation": manifest.generation,
    }


def build_planned(
    vectors: DataFrame,
    root: str,
    name: str,
    n_shards: int,
    model_version: str,
    seed: int,
    sample: int = 100_000,
) -> tuple[str, shards.Manifest]:
    """A new committed index ``<root>/<name>`` of every (offer_id, vector) row, its type planned for
    their number (``planning.factory_for``): (its uri, its manifest)."""
    from retrieval import commit as commits
    from retrieval.index.planning import factory_for

    n = vectors.count()
    factory = factory_for(n)
    trained = train_quantizer(vectors, factory, min(n, sample), seed)
    uri, _ = commits.stage(root, name)
    manifest = write_index(vectors, uri, trained, n_shards, commits.version_of(uri), model_version, factory)
    commit(root, name, uri, manifest)
    return uri, manifest


def full_build(
    embeddings: DataFrame, ix: Any, root: str, mode: str, model_version: str, seed: int
) -> tuple[str, shards.Manifest]:
    """A new index version of every embedding (``mode`` full or compact), not yet committed: (its uri,
    its manifest). The factory is ``ix.factory``, or planned from the number of
    vectors and ``ix.memory_gb`` (``planning.plan_index``); the quantizer trained on a hash sample,
    read from ``ix.quantizer``, or (compact) the live one's."""
    from retrieval import commit as commits
    from retrieval.index.planning import plan_index
    from retrieval.index.spark_index import INDEX, current

    first = embeddings.first()
    dim = len(first["vector"]) if first is not None else 1
    plan = plan_index(
        max(embeddings.count(), 1), dim, int(ix.memory_gb * 2**30), ix.train_size, ix.lists_per_sqrt
    )
    factory, source = ix.factory or plan.factory, ""
    if mode == "compact":
        previous, old = current(root)
        trained, factory = storage.read_bytes(storage.join(previous, shards.QUANTIZER)), old.factory
        source = f"compacted from {old.version} (generation {old.generation})"
    elif ix.quantizer:
        trained = storage.read_bytes(ix.quantizer)
        given = shards.check_quantizer(trained, ix.quantizer, dim, ix.quantizer_sha256)
        factory = ix.factory or f"{shards.describe(given)} given as index.quantizer"
    else:
        trained = train_quantizer(embeddings, factory, ix.train_size, seed)  # a plan never asks for more
    uri, _ = commits.stage(root, INDEX)
    manifest = write_index(
        embeddings, uri, trained, ix.shards, commits.version_of(uri), model_version, factory, ix.threads
    )
    manifest.plan = {"planned": not ix.factory, "reason": "index.factory" if ix.factory else plan.reason}
    if source:
        manifest.plan["source"] = source
    return uri, manifest


def set_nprobe(
    embeddings: DataFrame, uri: str, manifest: shards.Manifest, ix: IndexSection, seed: int
) -> float:
    """Sets ``manifest.nprobe``: ``ix.nprobe`` when pinned, the live one's on an incremental update
    (already in ``manifest``), else the smallest reaching ``ix.target_recall`` (:func:`tune_nprobe`).
    Returns recall@10 against exact search at that nprobe, on sampled offers it was not chosen on."""
    if ix.nprobe or manifest.nprobe:
        manifest.nprobe = ix.nprobe or manifest.nprobe
        args = (ix.eval_queries, seed, manifest.nprobe, ix.k_factor, ix.threads)
        return recall_vs_exact(embeddings, uri, manifest, *args)
    tuned = tune_nprobe(embeddings, uri, manifest, ix, seed)
    manifest.nprobe = tuned["nprobe"]
    manifest.plan.update({"target_recall": ix.target_recall, "recall_at_10_by_nprobe": tuned["tried"]})
    return float(tuned["recall_at_10_vs_exact"])
