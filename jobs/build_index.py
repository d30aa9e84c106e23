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

from typing import Any

from retrieval import storage, tables
from retrieval.artifacts import content_version
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.index import shards, spark_build
from retrieval.index.spark_index import current, index_root, single_model_version
from retrieval.spark_tables import read_table


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, ix, mode = cfg.paths.root, cfg.index, cfg.recs.mode
    embeddings = read_table(spark, root, tables.EMBEDDINGS)
    model_version = single_model_version(embeddings)
    previous = None
    if mode == "incremental":
        uri, live = current(root)
        delta = read_table(spark, root, tables.EMBEDDINGS_DELTA)
        manifest = spark_build.add_delta(delta, uri, live, cfg.recs.since, ix.threads)
    else:
        if mode == "compact":
            previous, old = current(root)
            trained = storage.read_bytes(storage.join(previous, shards.QUANTIZER))
            source = f"compacted from {old.version} (generation {old.generation})"
        elif ix.quantizer:
            trained, source = storage.read_bytes(ix.quantizer), ""
        else:
            trained, source = spark_build.train_quantizer(embeddings, ix.factory, ix.train_size, cfg.seed), ""
        version = content_version(
            {"model_version": model_version, "factory": ix.factory, "shards": ix.shards}
            | {"quantizer": shards.checksum(trained), "source": source}
        )
        uri = storage.join(index_root(root), version)
        manifest = spark_build.write_index(
            embeddings, uri, trained, ix.shards, version, model_version, ix.factory, ix.threads
        )
    recall = spark_build.recall_vs_exact(
        embeddings, uri, manifest, ix.eval_queries, cfg.seed + 1, ix.nprobe, ix.k_factor, ix.threads
    )
    merged = spark_build.merge_for_serving(uri, manifest) if ix.merge and mode != "incremental" else None
    spark_build.commit(index_root(root), uri, manifest, previous)
    deltas = [s for s in manifest.shards if s.generation > 0]
    return {
        **spark_build.summary_of(manifest),
        "recall_at_10_vs_exact": round(recall, 4),
        "nprobe": ix.nprobe,
        "mode": mode,
        "rows_out": manifest.vectors,
        "outputs": {"index": uri, **({"merged index": merged} if merged else {})},
        "summary": [
            f"{manifest.vectors:,} vectors ({manifest.dim}-d) in {len(manifest.shards)} shards "
            f"({len(deltas)} delta) of {manifest.factory}, nprobe {ix.nprobe}",
            f"recall@10 vs exact search: {recall:.4f} ({ix.eval_queries} sampled queries)",
        ],
    }


if __name__ == "__main__":
    job_main("build_index", run, __doc__)
