"""build_index: sharded faiss index of the offer embeddings (one trained quantizer, one shard per partition).

    ./submit.sh build_index [--set index.shards=8] [--set index.factory=IVF1024,Flat] [--set index.nprobe=32]
    ./submit.sh build_index --set recs.mode=incremental     # add embeddings_delta as a delta shard
    ./submit.sh build_index --set recs.mode=compact         # fold the deltas back into the shards

Full: the index type is index.factory, or planned from the number of vectors (index.planning: IVF with
~4 sqrt(n) lists, product quantisation beyond index.memory_gb); index.train_size vectors (a hash
sample) train it once on the driver, broadcast as bytes; each of index.shards partitions adds its
vectors to a copy and writes shard-NNNNN.faiss. Then nprobe: index.nprobe, or the smallest that
reaches index.target_recall against exact search on sampled offers; recall@10 is reported on other
sampled offers. Every build writes a new version directory; manifest.json (shards, counts, checksums,
factory, nprobe, plan) is written last, then index/CURRENT names the new version (the one it replaces
stays until the next build's retention). index.merge=true also merges IVF shards into one on-disk index.
"""

from __future__ import annotations

from typing import Any

from retrieval import tables
from retrieval.cli import job_main
from retrieval.config import Config, ConfigError
from retrieval.encoder.spark_embed import mixed_models
from retrieval.index import spark_build
from retrieval.index.spark_index import INDEX, current, single_model_version
from retrieval.spark_tables import read_table


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, ix, mode = cfg.paths.root, cfg.index, cfg.recs.mode
    embeddings = read_table(spark, root, tables.EMBEDDINGS)
    model_version = single_model_version(embeddings)
    if mode == "incremental":
        uri, live = current(root)
        if live.model_version != model_version:  # the delta's vectors would not share the live space
            raise ConfigError(
                mixed_models(f"the live index's vectors ({uri})", live.model_version, model_version)
            )
        delta = read_table(spark, root, tables.EMBEDDINGS_DELTA)
        manifest = spark_build.add_delta(delta, uri, live, cfg.recs.since, ix.threads)
    else:
        uri, manifest = spark_build.full_build(embeddings, ix, root, mode, model_version, cfg.seed)
    recall = spark_build.set_nprobe(embeddings, uri, manifest, ix, cfg.seed + 1)
    merged = spark_build.merge_for_serving(uri, manifest) if ix.merge and mode != "incremental" else None
    spark_build.commit(root, INDEX, uri, manifest)
    deltas = sum(1 for s in manifest.shards if s.generation > 0)
    return {
        **spark_build.summary_of(manifest),
        "recall_at_10_vs_exact": round(recall, 4),
        "nprobe": manifest.nprobe,
        "plan": manifest.plan,
        "mode": mode,
        "rows_out": manifest.vectors,
        "outputs": {"index": uri, **({"merged index": merged} if merged else {})},
        "summary": [
            f"{manifest.vectors:,} vectors ({manifest.dim}-d) in {len(manifest.shards)} shards ({deltas} delta) "
            f"of {manifest.factory}, nprobe {manifest.nprobe}{'' if ix.nprobe else ' (chosen)'}",
            f"recall@10 vs exact search: {recall:.4f} ({ix.eval_queries} sampled queries)",
        ],
    }


if __name__ == "__main__":
    job_main("build_index", run, __doc__)
