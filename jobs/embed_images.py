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

import os
from typing import Any

from pyspark.sql import functions as F

from retrieval import tables
from retrieval.artifacts import visual_models
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.index.spark_build import build_planned
from retrieval.spark_tables import read_table, write_table
from retrieval.training.models import load_model
from retrieval.training.spark_inference import broadcast_model
from retrieval.visual import spark_visual
from retrieval.visual.model import ImageEncoder
from retrieval.visual.spark_eval import index_accuracy


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, v = cfg.paths.root, cfg.visual
    path = v.model or visual_models(root).get("street")
    if not path:
        raise FileNotFoundError(
            "no street model: run train_visual with 'street' in visual.variants, or set visual.model"
        )
    version = os.path.basename(path.rstrip("/"))
    bc = broadcast_model(spark, load_model(ImageEncoder, path))
    images = read_table(spark, root, tables.VISUAL_IMAGES)
    keep = ("image_id", "label", "split")
    vectors = spark_visual.featurize(
        images, "model", v.size, bc, threads=v.threads, use_gpu=v.use_gpu, keep=keep
    )
    uri = write_table(vectors.withColumn("model_version", F.lit(version)), root, tables.VISUAL_EMBEDDINGS)
    emb = read_table(spark, root, tables.VISUAL_EMBEDDINGS)
    rows = emb.select(F.col("image_id").alias("offer_id"), "vector")  # the offer index's code on (id, vector)
    index_uri, manifest = build_planned(rows, root, "visual_index", v.index_shards, version, cfg.seed)
    queries = read_table(spark, root, tables.VISUAL_QUERIES)
    street = queries.select(F.col("label").alias("image_id"), "label", "image")
    _, q_labels, q = spark_visual.collect_vectors(spark_visual.featurize(street, "model", v.size, bc))
    bc.unpersist()
    hits_index, hits_exact = index_accuracy(emb, q, q_labels, manifest, index_uri)
    return {
        "images_embedded": manifest.vectors,
        "model_version": version,
        "shards": len(manifest.shards),
        "index_factory": manifest.factory,
        "index_version": manifest.version,
        "accuracy_at_5_index": round(hits_index, 4),
        "accuracy_at_5_exact": round(hits_exact, 4),
        "rows_out": manifest.vectors,
        "outputs": {"visual/embeddings": uri, "visual_index": index_uri},
        "summary": [
            f"{manifest.vectors:,} catalogue photos embedded with the street model {version}",
            f"image index {manifest.factory} in {len(manifest.shards)} shards: {index_uri}",
            f"street queries through the index: accuracy@5 {hits_index:.4f} (exact search {hits_exact:.4f})",
        ],
    }


if __name__ == "__main__":
    job_main("embed_images", run, __doc__)
