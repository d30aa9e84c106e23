"""embed_images: every catalogue photo -> its embedding (distributed batch inference), and a sharded
image index built with the offer index's code (one trained quantizer, one shard per partition, a manifest).

    ./submit.sh embed_images [--set visual.model=<models/visual/VARIANT/VERSION>]

The model is the `street` variant that train_visual trained last, unless visual.model names one; it is
broadcast once and built once per Python worker (on the task's GPU when Spark assigned one). Writes
visual/embeddings (image_id, label, split, vector, model_version) and visual_index/<version>/ with
visual_index/CURRENT. As a check of the whole path a user's photo takes, every test street query is
searched through the sharded index and its accuracy@5 set beside exact search's.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from pyspark.sql import functions as F

from retrieval import storage, tables
from retrieval.artifacts import content_version, visual_models
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.encoder.spark_embed import broadcast_model
from retrieval.index import shards as sh
from retrieval.index.spark_index import sample_vectors, search_neighbours, write_shards
from retrieval.spark_tables import read_table, write_table
from retrieval.visual import spark_visual as sv
from retrieval.visual.model import top_k
from retrieval.visual.train import load


def factory_for(n: int) -> str:
    """Flat for small sets; IVF with ~4 sqrt(n) lists (at least 39 training vectors per list) above."""
    nlist = int(2 ** round(math.log2(max(1.0, 4 * math.sqrt(n)))))
    return "Flat" if n < 39 * 64 else f"IVF{min(nlist, n // 39)},Flat"


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, v = cfg.paths.root, cfg.visual
    path = v.model
    if not path:
        models = visual_models(root)
        if "street" not in models:
            raise FileNotFoundError(
                "no street model: run train_visual with 'street' in visual.variants, or set visual.model"
            )
        path = models["street"]
    model = load(path)
    version = os.path.basename(path.rstrip("/"))
    images = read_table(spark, root, tables.VISUAL_IMAGES)
    bc = broadcast_model(spark, model)
    vectors = sv.featurize(
        images, "model", v.size, bc, threads=v.threads, use_gpu=v.use_gpu, keep=("image_id", "label", "split")
    ).withColumn("model_version", F.lit(version))
    uri = write_table(vectors, root, tables.VISUAL_EMBEDDINGS)
    emb = read_table(spark, root, tables.VISUAL_EMBEDDINGS)
    n = emb.count()

    # the image index: the offer index's code on (id, vector) rows
    rows = emb.select(F.col("image_id").alias("offer_id"), "vector")
    factory = factory_for(n)
    sample = sample_vectors(rows, min(n, 100_000), cfg.seed)
    trained = sh.train_index(sample, factory, seed=cfg.seed)
    index_version = content_version({"model": version, "factory": factory, "shards": v.index_shards, "n": n})
    index_root = storage.join(root, "visual_index")
    index_uri = storage.join(index_root, index_version)
    storage.remove(storage.join(index_uri, sh.MANIFEST))
    storage.write_bytes_atomic(storage.join(index_uri, sh.QUANTIZER), trained)
    manifest = sh.Manifest(
        version=index_version,
        model_version=version,
        factory=factory,
        metric="inner_product",
        dim=int(model.cfg.dim),
        quantizer_sha256=sh.checksum(trained),
        shards=write_shards(rows, trained, index_uri, v.index_shards),
    )
    storage.write_json_atomic(storage.join(index_uri, sh.MANIFEST), manifest.to_dict())
    storage.write_text_atomic(storage.join(index_root, "CURRENT"), index_version + "\n")

    # the street queries through the index: the gallery is the held-out photos, so search the test
    # split's part of the index by asking for enough neighbours and keeping test photos only
    queries = read_table(spark, root, tables.VISUAL_QUERIES)
    qv = sv.featurize(queries.select(F.col("label").alias("image_id"), "label", "image"), "model", v.size, bc)
    q_ids, q_labels, q = sv.collect_vectors(qv)
    bc.unpersist()
    test = {
        int(r["image_id"]): int(r["label"])
        for r in emb.where(F.col("split") == "test").select("image_id", "label").collect()
    }
    qdf = spark.createDataFrame(
        [(-(i + 1), vec.tolist()) for i, vec in enumerate(q)], "offer_id bigint, vector array<float>"
    )
    k_all = 5 * max(1, round(n / max(len(test), 1))) + 20
    found = {
        -int(r["offer_id"]) - 1: [int(x) for x in r["neighbours"] if int(x) in test][:5]
        for r in search_neighbours(qdf, manifest, index_uri, k_all, nprobe=16).collect()
    }
    hits_index = np.mean([any(test[g] == q_labels[i] for g in found.get(i, [])) for i in range(len(q_ids))])
    g = emb.where(F.col("split") == "test").orderBy("image_id").collect()
    g_labels = np.asarray([r["label"] for r in g])
    g_vecs = np.asarray([r["vector"] for r in g], np.float32)
    hits_exact = float((g_labels[top_k(q, g_vecs, 5)] == q_labels[:, None]).any(1).mean())
    return {
        "images_embedded": n,
        "model_version": version,
        "shards": len(manifest.shards),
        "index_factory": factory,
        "index_version": index_version,
        "accuracy_at_5_index": round(float(hits_index), 4),
        "accuracy_at_5_exact": round(hits_exact, 4),
        "rows_out": n,
        "outputs": {"visual/embeddings": uri, "visual_index": index_uri},
        "summary": [
            f"{n:,} catalogue photos embedded with the street model {version}",
            f"image index {factory} in {len(manifest.shards)} shards: {index_uri}",
            f"street queries through the index: accuracy@5 {hits_index:.4f} (exact search {hits_exact:.4f})",
        ],
    }


if __name__ == "__main__":
    job_main("embed_images", run, __doc__)
