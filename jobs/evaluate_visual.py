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
green) and, with visual.name, <visual.results_dir>/<name>.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

import numpy as np
from pyspark.sql import functions as F

from jobs import visual_pairs
from retrieval import storage, tables
from retrieval.artifacts import visual_models
from retrieval.cli import job_main
from retrieval.config import Config, ConfigError
from retrieval.encoder.spark_embed import broadcast_model
from retrieval.metrics import read_stage_metrics
from retrieval.ranking.metrics import bootstrap_interval
from retrieval.spark_tables import read_table
from retrieval.visual import spark_visual as sv
from retrieval.visual.images import decode, encode, grid
from retrieval.visual.model import ImageEncoder, VisualConfig, top_k
from retrieval.visual.train import load

BASELINES = ("pixels", "histogram", "untrained")
ABLATIONS = ("seamless", "blur", "natural_bg", "uniform_bg")


def check_models_unseen(cfg: Config) -> None:
    """The trained models must not have seen the products they are scored on: either they were trained
    on exactly this gallery's training split (same gallery, split and settings), or on another gallery.

    Raises:
        ConfigError: the models were trained on another split of this same gallery, or at another size.
    """
    from retrieval.metrics import read_stage_metrics

    if not visual_models(cfg.paths.root):
        return
    trained = read_stage_metrics(cfg.paths.root, "train_visual").get("gallery") or {}
    now = visual_pairs.gallery_signature(cfg)
    if trained.get("size") not in (None, now["size"]):
        raise ConfigError(
            f"the models were trained at visual.size={trained['size']}, not {now['size']}: retrain"
        )
    same_gallery = (trained.get("images"), trained.get("catalog")) == (now["images"], now["catalog"])
    split = ("max_products", "test_share", "seed")
    if same_gallery and any(trained.get(k) != now[k] for k in split):
        raise ConfigError(
            "the models were trained on another split of this gallery "
            f"({ {k: trained.get(k) for k in split} } vs { {k: now[k] for k in split} }): its test products "
            "may be training products; run train_visual with these settings, or evaluate on another gallery"
        )


def reproduce_command(cfg: Config) -> str:
    """The commands that made a benchmark file: the visual stages with every non-default visual setting."""
    import dataclasses

    from retrieval.config import VisualSection

    default = VisualSection()
    sets = " ".join(
        f"--set visual.{f.name}={json.dumps(getattr(cfg.visual, f.name)) if isinstance(getattr(cfg.visual, f.name), list) else getattr(cfg.visual, f.name)}"
        for f in dataclasses.fields(VisualSection)
        if getattr(cfg.visual, f.name) != getattr(default, f.name)
    )
    return (
        "for job in visual_pairs train_visual embed_images evaluate_visual; do "
        f"./submit.sh $job --set paths.root={cfg.paths.root} {sets}; done"
    )


def example_grid(
    queries: Any,
    gallery: Any,
    q_ids: np.ndarray,
    ranked: np.ndarray,
    g_ids: np.ndarray,
    g_labels: np.ndarray,
    q_labels: np.ndarray,
    size: int,
    n: int,
) -> bytes:
    """PNG: one row per query (the street photo, then its top 5), hits framed green, misses red."""
    rows_idx = list(range(min(n, len(q_ids))))
    want_q = [int(q_ids[i]) for i in rows_idx]
    want_g = sorted({int(g_ids[j]) for i in rows_idx for j in ranked[i]})
    qimg = {
        r["label"]: decode(r["image"], size) for r in queries.where(F.col("label").isin(want_q)).collect()
    }
    gimg = {
        r["image_id"]: decode(r["image"], size)
        for r in gallery.where(F.col("image_id").isin(want_g)).collect()
    }
    rows, borders = [], []
    for i in rows_idx:
        rows.append([qimg[int(q_ids[i])], *[gimg[int(g_ids[j])] for j in ranked[i]]])
        borders.append(["", *["g" if g_labels[j] == q_labels[i] else "r" for j in ranked[i]]])
    return encode(grid(rows, pad=3, borders=borders), "PNG")


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    import torch

    root, v = cfg.paths.root, cfg.visual
    visual_pairs.ensure_pairs(spark, cfg)  # a new gallery: its pairs first
    check_models_unseen(cfg)
    gallery = read_table(spark, root, tables.VISUAL_IMAGES).where(F.col("split") == "test").cache()
    # one query per product: the product is the query's id
    queries = read_table(spark, root, tables.VISUAL_QUERIES).select(
        F.col("label").alias("image_id"), "label", "image"
    )
    torch.manual_seed(cfg.seed)
    untrained = ImageEncoder(VisualConfig(dim=v.dim, width=v.width, size=v.size))
    models: dict[str, Any] = {"untrained": untrained}
    for variant, path in visual_models(root).items():
        models[variant] = load(path)
    acc5: dict[str, float] = {}
    acc1: dict[str, float] = {}
    ci5: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    ranked_by: dict[str, np.ndarray] = {}
    g_ids = g_labels = q_ids = q_labels = np.zeros(0, np.int64)
    rng = np.random.default_rng(cfg.seed)
    for method in [*BASELINES[:2], *models]:
        t0 = time.perf_counter()
        bc = broadcast_model(spark, models[method]) if method in models else None
        kind = "model" if bc is not None else method
        g_ids, g_labels, g = sv.collect_vectors(sv.featurize(gallery, kind, v.size, bc, threads=v.threads))
        q_ids, q_labels, q = sv.collect_vectors(sv.featurize(queries, kind, v.size, bc, threads=v.threads))
        if bc is not None:
            bc.unpersist()
        ranked = top_k(q, g, 5)
        hit_at = (g_labels[ranked] == q_labels[:, None]).astype(np.float64)
        acc5[method] = round(float(hit_at.any(1).mean()), 4)
        acc1[method] = round(float(hit_at[:, 0].mean()), 4)
        ci5[method] = [round(x, 4) for x in bootstrap_interval(hit_at.any(1).astype(np.float64), rng)]
        seconds[method] = round(time.perf_counter() - t0, 1)
        ranked_by[method] = ranked
    best = "street" if "street" in ranked_by else max(acc5, key=lambda m: acc5[m])
    png = example_grid(
        queries, gallery, q_ids, ranked_by[best], g_ids, g_labels, q_labels, v.size, v.grid_queries
    )
    grid_uri = storage.join(root, "report", "visual_examples.png")
    storage.write_bytes_atomic(grid_uri, png)
    gallery.unpersist()
    best_baseline = max(acc5[m] for m in BASELINES)
    out: dict[str, Any] = {
        "accuracy_at_5": {m: acc5[m] for m in acc5 if m not in ABLATIONS},
        "accuracy_at_1": {m: acc1[m] for m in acc1 if m not in ABLATIONS},
        "ablations": {m: acc5[m] for m in ABLATIONS if m in acc5},
        "ablations_at_1": {m: acc1[m] for m in ABLATIONS if m in acc1},
        "accuracy_at_5_interval": ci5,
        "queries": len(q_ids),
        "gallery_images": len(g_ids),
        "gallery_products": len(set(g_labels.tolist())),
        "best_baseline_at_5": best_baseline,
        "street_over_best_baseline": round(acc5["street"] / best_baseline, 2)
        if "street" in acc5 and best_baseline
        else None,
        "seconds_per_method": seconds,
        "examples": grid_uri,
        "dataset": v.catalog or "synthetic catalogue",
    }
    outputs = {"report/visual_examples.png": grid_uri}
    if v.name:
        path = sv.results_path(v.results_dir, v.name)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        payload = {
            "name": v.name,
            "what": "accuracy@K of synthetic street-photo queries against the held-out shop gallery",
            "command": reproduce_command(cfg),
            "config": {
                k: getattr(v, k)
                for k in (
                    "size",
                    "max_products",
                    "test_share",
                    "per_style",
                    "dim",
                    "width",
                    "epochs",
                    "batch_products",
                    "views",
                    "lr",
                    "mining",
                    "margin",
                )
            },
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            **{
                k: out[k]
                for k in (
                    "accuracy_at_5",
                    "accuracy_at_1",
                    "ablations",
                    "ablations_at_1",
                    "accuracy_at_5_interval",
                    "queries",
                    "gallery_images",
                    "best_baseline_at_5",
                    "street_over_best_baseline",
                )
            },
            "training": read_stage_metrics(root, "train_visual").get("variants", {})
            if visual_models(root)
            else {},
        }
        storage.write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
        outputs["benchmark"] = path
    row = ", ".join(f"{m} {acc5[m]:.3f}" for m in acc5 if m not in ABLATIONS)
    abl = ", ".join(f"{m} {acc5[m]:.3f}" for m in ABLATIONS if m in acc5)
    return {
        **out,
        "rows_out": len(q_ids),
        "outputs": outputs,
        "summary": [
            f"{len(q_ids):,} street queries against {len(g_ids):,} held-out shop photos ({out['dataset']})",
            f"accuracy@5: {row}",
            *([f"ablations (accuracy@5): {abl}"] if abl else []),
            *(
                [f"street / best baseline: {out['street_over_best_baseline']}x"]
                if out["street_over_best_baseline"]
                else []
            ),
        ],
    }


if __name__ == "__main__":
    job_main("evaluate_visual", run, __doc__)
