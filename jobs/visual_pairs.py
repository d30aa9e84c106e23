"""visual_pairs: catalogue photos -> a filtered, de-duplicated gallery, training groups and test queries.

    ./submit.sh visual_pairs                                   # the synthetic catalogue (offers.image_ref)
    ./submit.sh visual_pairs --set visual.images=DIR --set visual.catalog=CSV   # real photos

Every photo is rendered (synthetic references) or read and resized to visual.size; blank photos and
photos whose object cannot be cut from the background are quarantined, and so are near-duplicates
(the same photo under several offers or ids: `duplicate_of:<kept id>`). Products are split into train
and test (visual.test_share, by a seeded hash of the product: a product is never on both sides).
For every training product, visual.per_style synthetic street photos of each style (seamless or
blurred-mask blending x natural or uniform background; retrieval.visual.street); for every held-out
product one street photo as the query (any style, backgrounds from the part of the natural photos
that training never sees). Writes visual/images, visual/quarantine, visual/train_groups,
visual/test_queries.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import functions as F

from retrieval import tables
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.spark_tables import read_table, write_table
from retrieval.visual import spark_visual as sv

log = logging.getLogger(__name__)


def gallery_signature(cfg: Config) -> dict[str, Any]:
    """What decides the visual tables: the gallery and every setting visual_pairs uses."""
    v = cfg.visual
    keys = (
        "images",
        "catalog",
        "size",
        "max_products",
        "test_share",
        "per_style",
        "max_rms",
        "num_processes",
    )
    return {**{k: getattr(v, k) for k in keys}, "seed": cfg.seed}


def ensure_pairs(spark: Any, cfg: Config) -> bool:
    """Runs visual_pairs first when the tables under the root were not made from this gallery and these
    settings (so `train_visual` and `evaluate_visual` are one command each on a new gallery); True if it ran."""
    from retrieval.cli import run_stage
    from retrieval.metrics import read_stage_metrics

    try:
        made = read_stage_metrics(cfg.paths.root, "visual_pairs").get("gallery")
    except FileNotFoundError:
        made = None
    if made == gallery_signature(cfg):
        return False
    log.info("visual tables under %s were made from %s: running visual_pairs first", cfg.paths.root, made)
    run_stage(spark, cfg, "visual_pairs", run)
    return True


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, v = cfg.paths.root, cfg.visual
    if v.images:
        sources, unsupported = sv.catalog_sources(spark, v.images, v.catalog), None
        origin = f"photos under {v.images} ({v.catalog})"
    else:
        sources, unsupported = sv.synthetic_sources(read_table(spark, root, tables.OFFERS))
        origin = "the synthetic catalogue (offers.image_ref)"
    sources = sv.sample_products(sources, v.max_products, cfg.seed)
    loaded = sv.load_images(sources, v.size).cache()
    usable = loaded.where(F.col("reason").isNull())
    kept, duplicates, _ = sv.dedup(usable, v.max_rms)
    images = sv.with_split(kept, v.test_share, cfg.seed).select(
        "image_id", "label", "split", "source", "image"
    )
    images_uri = write_table(images, root, tables.VISUAL_IMAGES)
    bad = loaded.where(F.col("reason").isNotNull()).select("image_id", "label", "source", "reason")
    if unsupported is not None:
        bad = bad.unionByName(unsupported)
    quarantine_uri = write_table(bad.unionByName(duplicates), root, tables.VISUAL_QUARANTINE)
    loaded.unpersist()

    images = read_table(spark, root, tables.VISUAL_IMAGES)
    parts = sv.default_partitions(spark)
    # round-robin into as many files as training processes need (a feed gives each rank whole files)
    files = max(4, 2 * v.num_processes)
    groups_uri = write_table(
        sv.train_groups(images, cfg.seed, v.per_style, v.size, parts).repartition(files),
        root,
        tables.VISUAL_GROUPS,
    )
    queries_uri = write_table(sv.test_queries(images, cfg.seed, v.size, parts), root, tables.VISUAL_QUERIES)

    counts = {
        (r["split"]): (int(r["images"]), int(r["products"]))
        for r in images.groupBy("split")
        .agg(F.count(F.lit(1)).alias("images"), F.countDistinct("label").alias("products"))
        .collect()
    }
    q = read_table(spark, root, tables.VISUAL_QUARANTINE)
    reasons = {
        r["why"]: int(r["n"])
        for r in q.select(F.regexp_extract("reason", r"^([a-z_]+)", 1).alias("why"))
        .groupBy("why")
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    }
    n_groups = read_table(spark, root, tables.VISUAL_GROUPS).count()
    n_queries = read_table(spark, root, tables.VISUAL_QUERIES).count()
    train, test = counts.get("train", (0, 0)), counts.get("test", (0, 0))
    street = n_groups * 4 * v.per_style
    return {
        "gallery": gallery_signature(cfg),
        "images": train[0] + test[0],
        "products": {"train": train[1], "test": test[1]},
        "gallery_images": test[0],
        "train_groups": n_groups,
        "street_photos": street,
        "test_queries": n_queries,
        "quarantined": reasons,
        "rows_out": train[0] + test[0],
        "outputs": {
            "visual/images": images_uri,
            "visual/quarantine": quarantine_uri,
            "visual/train_groups": groups_uri,
            "visual/test_queries": queries_uri,
        },
        "summary": [
            f"{train[0] + test[0]:,} photos of {train[1] + test[1]:,} products from {origin}, {v.size}x{v.size}",
            f"split by product: train {train[1]:,} products ({train[0]:,} photos), "
            f"test {test[1]:,} products ({test[0]:,} gallery photos, {n_queries:,} street queries)",
            f"{street:,} synthetic street photos for training ({v.per_style} per product and style, 4 styles)",
            "quarantined: " + (", ".join(f"{k} {n:,}" for k, n in sorted(reasons.items())) or "none"),
        ],
    }


if __name__ == "__main__":
    job_main("visual_pairs", run, __doc__)
