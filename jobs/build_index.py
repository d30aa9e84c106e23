"""build_index: sharded faiss index of the offer embeddings (one trained quantizer, one shard per partition).

    ./submit.sh build_index [--set index.factory=IVF1024,Flat] [--set index.shards=8] [--set index.nprobe=32]
    ./submit.sh build_index --set recs.mode=incremental     # add embeddings_delta as a delta shard
    ./submit.sh build_index --set recs.mode=compact         # fold the deltas back into the shards

Full: index.train_size vectors (a hash sample) are collected to the driver, the index type
(index.factory) is trained there once and broadcast as bytes; each of index.shards partitions adds its
vectors to a copy and writes shard-NNNNN.faiss; manifest.json (shards, counts, checksums, dim, metric,
factory, model version) is written last, then index/CURRENT names the new version. index.quantizer
reuses a stored quantizer.faiss instead of training. Recall@10 of the index against exact search is
measured on index.eval_queries sampled offers at every build. index.merge=true also merges IVF
shards into one on-disk index (merged.faiss + merged.ivfdata, memory-mapped) for serving.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
from pyspark.sql import functions as F

from retrieval import storage, tables
from retrieval.artifacts import content_version
from retrieval.cli import job_main
from retrieval.config import Config, ConfigError
from retrieval.evaluation import recall_at_k
from retrieval.index import shards as sh
from retrieval.index.spark_index import (
    current,
    exact_neighbours,
    index_root,
    sample_vectors,
    search_neighbours,
    write_shards,
    write_tombstones,
)
from retrieval.spark_tables import TableError, read_table

log = logging.getLogger(__name__)


def _commit(root: str, uri: str, manifest: sh.Manifest, previous: str | None) -> None:
    storage.write_json_atomic(storage.join(uri, sh.MANIFEST), manifest.to_dict())
    storage.write_text_atomic(storage.join(index_root(root), "CURRENT"), manifest.version + "\n")
    if previous and previous.rstrip("/") != uri.rstrip("/"):
        storage.remove_tree(previous)


def recall_vs_exact(spark: Any, cfg: Config, embeddings: Any, uri: str, manifest: sh.Manifest) -> float:
    """Recall@10 of the sharded index against exact search, on a hash sample of offers as queries."""
    q = sample_vectors(embeddings, cfg.index.eval_queries, cfg.seed + 1, with_ids=True)
    ids, vecs = q
    if len(ids) == 0:
        return float("nan")
    exact = exact_neighbours(embeddings, ids, vecs, 10)
    qdf = spark.createDataFrame(
        [(int(i), v.tolist()) for i, v in zip(ids, vecs, strict=True)], "offer_id bigint, vector array<float>"
    ).coalesce(1)
    ann = {
        r["offer_id"]: list(r["neighbours"])
        for r in search_neighbours(
            qdf, manifest, uri, 10, cfg.index.nprobe, cfg.index.k_factor, cfg.index.threads
        ).collect()
    }
    ranked = np.array([(ann.get(int(i), []) + [-1] * 10)[:10] for i in ids])
    return recall_at_k(ranked, [set(row[row >= 0].tolist()) for row in exact], 10)


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, ix, mode = cfg.paths.root, cfg.index, cfg.recs.mode
    embeddings = read_table(spark, root, tables.EMBEDDINGS)
    model_versions = [
        r["model_version"] for r in embeddings.select("model_version").distinct().limit(2).collect()
    ]
    if len(model_versions) != 1:
        raise TableError(f"embeddings must come from one model; found {model_versions or 'no rows'}")
    previous = None
    if mode == "incremental":
        uri, manifest = current(root)
        trained = storage.read_bytes(storage.join(uri, sh.QUANTIZER))
        delta = read_table(spark, root, tables.EMBEDDINGS_DELTA)
        gen = manifest.generation + 1
        added = write_shards(
            delta.where(~F.col("deleted")),
            trained,
            uri,
            1,
            prefix=f"delta{gen:03d}",
            generation=gen,
            threads=ix.threads,
        )
        manifest.shards += added
        manifest.tombstones[str(gen)] = write_tombstones(delta, uri, gen)
        manifest.since[str(gen)] = cfg.recs.since
    else:
        if mode == "compact":
            previous, old = current(root)
            trained = storage.read_bytes(storage.join(previous, sh.QUANTIZER))
            source = f"compacted from {old.version} (generation {old.generation})"
        elif ix.quantizer:
            trained = storage.read_bytes(ix.quantizer)
            source = f"quantizer {ix.quantizer}"
        else:
            sample = sample_vectors(embeddings, ix.train_size, cfg.seed)
            trained = sh.train_index(sample, ix.factory, seed=cfg.seed, threads=0)
            source = f"trained on {len(sample):,} sampled vectors"
        dim = sh.from_bytes(trained).d
        version = content_version(
            {
                "model_version": model_versions[0],
                "factory": ix.factory,
                "shards": ix.shards,
                "quantizer": sh.checksum(trained),
                "source": source if mode == "compact" else "",
            }
        )
        uri = storage.join(index_root(root), version)
        storage.remove(storage.join(uri, sh.MANIFEST))  # an index without its manifest is incomplete
        storage.write_bytes_atomic(storage.join(uri, sh.QUANTIZER), trained)
        manifest = sh.Manifest(
            version=version,
            model_version=model_versions[0],
            factory=ix.factory,
            metric="inner_product",
            dim=int(dim),
            quantizer_sha256=sh.checksum(trained),
            shards=write_shards(embeddings, trained, uri, ix.shards, threads=ix.threads),
        )
    recall = recall_vs_exact(spark, cfg, embeddings, uri, manifest)
    merged = None
    if ix.merge and mode != "incremental":
        if not storage.is_local(uri):
            raise ConfigError(
                "index.merge writes an on-disk (memory-mapped) index: it needs a local paths.root"
            )
        local = storage.local_path(uri)
        log.info(
            "merging %d shards (%s vectors) into one on-disk index ...",
            len(manifest.shards),
            f"{manifest.vectors:,}",
        )
        t0 = time.perf_counter()
        ntotal = sh.merge_on_disk(
            trained,
            [os.path.join(local, e.file) for e in manifest.shards],
            os.path.join(local, "merged.faiss"),
            os.path.join(local, "merged.ivfdata"),
        )
        merged = os.path.join(local, "merged.faiss")
        log.info("merged %s vectors in %.1f s: %s", f"{ntotal:,}", time.perf_counter() - t0, merged)
        assert ntotal == manifest.vectors, (ntotal, manifest.vectors)
    _commit(root, uri, manifest, previous)
    deltas = [s for s in manifest.shards if s.generation > 0]
    return {
        "shards": len(manifest.shards),
        "vectors": manifest.vectors,
        "index_factory": manifest.factory,
        "recall_at_10_vs_exact": round(recall, 4),
        "nprobe": ix.nprobe,
        "index_version": manifest.version,
        "generation": manifest.generation,
        "mode": mode,
        "rows_out": manifest.vectors,
        "outputs": {"index": uri, **({"merged index": merged} if merged else {})},
        "summary": [
            f"{manifest.vectors:,} vectors ({manifest.dim}-d) in {len(manifest.shards)} shards "
            f"({len(deltas)} delta) of {manifest.factory}, nprobe {ix.nprobe}",
            f"recall@10 vs exact search: {recall:.4f} ({cfg.index.eval_queries} sampled queries)",
        ],
    }


if __name__ == "__main__":
    job_main("build_index", run, __doc__)
