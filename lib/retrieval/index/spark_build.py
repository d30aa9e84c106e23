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
from retrieval.evaluation import recall_at_k
from retrieval.index import shards
from retrieval.index.spark_index import exact_neighbours, sample_vectors, search_neighbours, write_shards

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

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
    """A new index version under ``index_uri`` from every (offer_id, vector) row: the quantizer, one shard
    per partition; returns its manifest, not yet written (:func:`commit` does). Any manifest already
    there goes first: an index without its manifest is incomplete."""
    storage.remove(storage.join(index_uri, shards.MANIFEST))
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


def commit(index_root: str, index_uri: str, manifest: shards.Manifest, previous: str | None = None) -> None:
    """The manifest, then ``<index_root>/CURRENT`` naming this version (what readers resolve); then the
    ``previous`` version's directory goes, when it is another one."""
    storage.write_json_atomic(storage.join(index_uri, shards.MANIFEST), manifest.to_dict())
    storage.write_text_atomic(storage.join(index_root, "CURRENT"), manifest.version + "\n")
    if previous and previous.rstrip("/") != index_uri.rstrip("/"):
        storage.remove_tree(previous)


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
    spark = vectors.sparkSession
    qdf = spark.createDataFrame(
        [(int(i), v.tolist()) for i, v in zip(ids, vecs, strict=True)], "offer_id bigint, vector array<float>"
    ).coalesce(1)
    found = search_neighbours(qdf, manifest, index_uri, 10, nprobe, k_factor, threads)
    ann = {r["offer_id"]: list(r["neighbours"]) for r in found.collect()}
    ranked = np.array([(ann.get(int(i), []) + [-1] * 10)[:10] for i in ids])
    return recall_at_k(ranked, [set(row[row >= 0].tolist()) for row in exact], 10)


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
    vectors: DataFrame, index_root: str, n_shards: int, model_version: str, seed: int, sample: int = 100_000
) -> tuple[str, shards.Manifest]:
    """A new committed index of every (offer_id, vector) row, its type planned for their number
    (``planning.factory_for``): (its uri, its manifest)."""
    from retrieval.artifacts import content_version
    from retrieval.index.planning import factory_for

    n = vectors.count()
    factory = factory_for(n)
    trained = train_quantizer(vectors, factory, min(n, sample), seed)
    version = content_version({"model": model_version, "factory": factory, "shards": n_shards, "n": n})
    uri = storage.join(index_root, version)
    manifest = write_index(vectors, uri, trained, n_shards, version, model_version, factory)
    commit(index_root, uri, manifest)
    return uri, manifest
