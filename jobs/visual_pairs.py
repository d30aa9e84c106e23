"""visual_pairs: catalogue photos -> a filtered, de-duplicated gallery, training groups and test queries.

    ./submit.sh visual_pairs                                   # the synthetic catalogue (offers.image_ref)
    ./submit.sh visual_pairs --set visual.images=DIR --set visual.catalog=CSV   # real photos

Every photo is rendered (synthetic references) or read and resized to visual.size; blank photos and
photos whose object cannot be cut from the background are quarantined, and so are near-duplicates
(the same photo under several offers or ids: `duplicate_of:<kept id>`). Products are split into train
and test (visual.test_share, by a seeded hash of the product: a product is never on both sides).
For every training product, visual.per_style synthetic street photos of each style (seamless or
blurred-mask blending x natural or uniform background; retrieval.visual.street); for every held-out
product one street photo as the query. Writes visual/images, visual/quarantine, visual/train_groups,
visual/test_queries.
"""

from __future__ import annotations

from typing import Any

from retrieval import tables
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.spark_tables import read_table, write_table
from retrieval.visual import spark_visual
from retrieval.visual.gallery import gallery_metrics, gallery_signature


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, v = cfg.paths.root, cfg.visual
    if v.images:
        sources, unsupported = spark_visual.catalog_sources(spark, v.images, v.catalog), None
        origin = f"photos under {v.images} ({v.catalog})"
    else:
        sources, unsupported = spark_visual.synthetic_sources(read_table(spark, root, tables.OFFERS))
        origin = "the synthetic catalogue (offers.image_ref)"
    images, quarantine, loaded = spark_visual.gallery_tables(sources, unsupported, v, cfg.seed)
    outputs = {
        "visual/images": write_table(images, root, tables.VISUAL_IMAGES),
        "visual/quarantine": write_table(quarantine, root, tables.VISUAL_QUARANTINE),
    }
    loaded.unpersist()
    images, parts = read_table(spark, root, tables.VISUAL_IMAGES), spark_visual.default_partitions(spark)
    files = max(4, 2 * gallery_signature(cfg)["num_processes"])  # a feed gives each training rank whole files
    groups = spark_visual.train_groups(images, cfg.seed, v.per_style, v.size, parts).repartition(files)
    outputs["visual/train_groups"] = write_table(groups, root, tables.VISUAL_GROUPS)
    queries = spark_visual.test_queries(images, cfg.seed, v.size, parts)
    outputs["visual/test_queries"] = write_table(queries, root, tables.VISUAL_QUERIES)
    counts = spark_visual.gallery_counts(images, read_table(spark, root, tables.VISUAL_QUARANTINE))
    n_groups = read_table(spark, root, tables.VISUAL_GROUPS).count()
    n_queries = read_table(spark, root, tables.VISUAL_QUERIES).count()
    metrics = gallery_metrics(counts, n_groups, n_queries, v, origin)
    return {"gallery": gallery_signature(cfg), **metrics, "outputs": outputs}


if __name__ == "__main__":
    job_main("visual_pairs", run, __doc__)
