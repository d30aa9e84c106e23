"""evaluate_visual: accuracy@K of street-photo queries against the held-out shop gallery, for the
baselines and every trained variant, in one run; an example grid; optionally a benchmark file.

    ./submit.sh evaluate_visual
    ./submit.sh evaluate_visual --set visual.images=DIR --set visual.catalog=CSV --set visual.name=NAME

Queries are visual/test_queries (one synthetic street photo per held-out product); the gallery is
every held-out shop photo (visual/images, split test): products used in training are neither queries
nor gallery. A query is a hit at K when a photo of its product is among its K nearest gallery photos
(inner product of unit vectors, exact search). Methods: `pixels` (16x16 thumbnail), `histogram` (RGB
colour histogram), `untrained` (the encoder at its seeded initialisation), and every variant that
train_visual trained. Writes <root>/report/visual_examples.png (queries and their top 5, hits framed
green) and, with visual.name, <paths.results>/<name>.json.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import functions as F

from retrieval import storage, tables
from retrieval.artifacts import visual_models
from retrieval.cli import ensure_stage, job_main
from retrieval.config import Config
from retrieval.spark_tables import read_table
from retrieval.training.models import load_model
from retrieval.visual import spark_eval
from retrieval.visual.gallery import benchmark_payload, check_models_unseen, gallery_is_current
from retrieval.visual.model import ImageEncoder, ImageEncoderConfig


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    import torch

    root, v = cfg.paths.root, cfg.visual
    ensure_stage(spark, cfg, "visual_pairs", gallery_is_current(cfg))  # a new gallery: its pairs first
    check_models_unseen(cfg)
    gallery = read_table(spark, root, tables.VISUAL_IMAGES).where(F.col("split") == "test").cache()
    queries = read_table(spark, root, tables.VISUAL_QUERIES).select(
        F.col("label").alias("image_id"), "label", "image"
    )
    torch.manual_seed(cfg.seed)
    models = {"untrained": ImageEncoder(ImageEncoderConfig(dim=v.dim, width=v.width, size=v.size))}
    models.update(
        {variant: load_model(ImageEncoder, path).eval() for variant, path in visual_models(root).items()}
    )
    scored = spark_eval.score_methods(gallery, queries, models, v.size, v.threads, cfg.seed)
    out = spark_eval.figures(scored, v.catalog or "synthetic catalogue")
    acc5 = scored["acc5"]
    best = "street" if "street" in acc5 else max(acc5, key=lambda m: acc5[m])
    grid_uri = storage.join(root, "report", "visual_examples.png")
    storage.write_bytes_atomic(
        grid_uri, spark_eval.example_grid(queries, gallery, scored, best, v.size, v.grid_queries)
    )
    gallery.unpersist()
    outputs = {"report/visual_examples.png": grid_uri}
    if v.name:
        outputs["benchmark"] = storage.join(cfg.paths.results, f"{v.name}.json")
        storage.write_json_atomic(outputs["benchmark"], benchmark_payload(cfg, out))
    row = ", ".join(f"{m} {x:.3f}" for m, x in out["accuracy_at_5"].items())
    ablations = ", ".join(f"{m} {x:.3f}" for m, x in out["ablations"].items())
    ratio = out["street_over_best_baseline"]
    return {
        **out,
        "examples": grid_uri,
        "rows_out": out["queries"],
        "outputs": outputs,
        "summary": [
            f"{out['queries']:,} street queries against {out['gallery_images']:,} held-out shop photos ({out['dataset']})",
            f"accuracy@5: {row}",
            *([f"ablations (accuracy@5): {ablations}"] if ablations else []),
            *([f"street / best baseline: {ratio}x"] if ratio else []),
        ],
    }


if __name__ == "__main__":
    job_main("evaluate_visual", run, __doc__)
