"""What the visual stages share about a gallery (no Spark): the signature of the settings its tables were
made from, the check that trained models never saw the products they are scored on, and the
benchmark file of a real-photo run with the commands that remake it."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from typing import Any

from retrieval.artifacts import visual_models
from retrieval.config import Config, ConfigError, VisualSection
from retrieval.stage_metrics import read_stage_metrics

# visual_pairs' settings: they decide the gallery tables, so a stage that finds tables made from other
# ones makes them again (cli.ensure_stage).
GALLERY_KEYS = ("images", "catalog", "size", "max_products", "test_share", "per_style", "max_rms")
SPLIT_KEYS = ("max_products", "test_share", "seed")  # what decides which products are held out


def gallery_signature(cfg: Config) -> dict[str, Any]:
    """What decides the visual tables: the gallery, every setting visual_pairs uses, the file count of
    the training groups (one per training process), and the seed."""
    v = cfg.visual
    processes = {"num_processes": max(1, int(v.training.get("num_processes", cfg.training.num_processes)))}
    return {**{k: getattr(v, k) for k in GALLERY_KEYS}, **processes, "seed": cfg.seed}


def gallery_is_current(cfg: Config) -> Any:
    """A ``fresh`` test for ``cli.ensure_stage``: visual_pairs' last metrics name this gallery."""
    return lambda metrics: metrics.get("gallery") == gallery_signature(cfg)


def check_models_unseen(cfg: Config) -> None:
    """The trained models must not have seen the products they are scored on: either they were trained
    on exactly this gallery's training split (same gallery, split and settings), or on another gallery.

    Raises:
        ConfigError: the models were trained on another split of this same gallery, or at another size.
    """
    if not visual_models(cfg.paths.root):
        return
    trained = read_stage_metrics(cfg.paths.root, "train_visual").get("gallery") or {}
    now = gallery_signature(cfg)
    if trained.get("size") not in (None, now["size"]):
        raise ConfigError(
            f"the models were trained at visual.size={trained['size']}, not {now['size']}: retrain"
        )
    same_gallery = (trained.get("images"), trained.get("catalog")) == (now["images"], now["catalog"])
    if same_gallery and any(trained.get(k) != now[k] for k in SPLIT_KEYS):
        raise ConfigError(
            "the models were trained on another split of this gallery "
            f"({ {k: trained.get(k) for k in SPLIT_KEYS} } vs { {k: now[k] for k in SPLIT_KEYS} }): its test "
            "products may be training products; run train_visual with these settings, or evaluate on another gallery"
        )


def reproduce_command(cfg: Config) -> str:
    """The commands that made a benchmark file: the visual stages with every non-default visual setting."""
    default = VisualSection()

    def shown(value: Any) -> str:
        if isinstance(value, (list, dict)) or dataclasses.is_dataclass(value):
            plain = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value  # type: ignore[arg-type]
            return json.dumps(plain).replace(" ", "")
        return str(value)

    sets = " ".join(
        f"--set visual.{f.name}={shown(getattr(cfg.visual, f.name))}"
        for f in dataclasses.fields(VisualSection)
        if getattr(cfg.visual, f.name) != getattr(default, f.name)
    )
    return (
        "for job in visual_pairs train_visual embed_images evaluate_visual; do "
        f"./submit.sh $job --set paths.root={cfg.paths.root} {sets}; done"
    )


BENCHMARK_CONFIG = (
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
)
BENCHMARK_FIGURES = (
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


def benchmark_payload(cfg: Config, figures: dict[str, Any]) -> dict[str, Any]:
    """The benchmark file (``kind: visual``) of an evaluate_visual run with ``visual.name``."""
    v = cfg.visual
    training = (
        read_stage_metrics(cfg.paths.root, "train_visual").get("variants", {})
        if visual_models(cfg.paths.root)
        else {}
    )
    return {
        "kind": "visual",
        "name": v.name,
        "what": "accuracy@K of synthetic street-photo queries against the held-out shop gallery",
        "command": reproduce_command(cfg),
        "config": {**{k: getattr(v, k) for k in BENCHMARK_CONFIG}, "loss": dataclasses.asdict(v.loss)},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        **{k: figures[k] for k in BENCHMARK_FIGURES},
        "training": training,
    }


def gallery_metrics(
    counts: dict[str, Any], n_groups: int, n_queries: int, v: Any, origin: str
) -> dict[str, Any]:
    """visual_pairs' metrics and summary from its tables' counts (``spark_visual.gallery_counts``)."""
    (train_images, train_products), (test_images, test_products) = counts["train"], counts["test"]
    street = n_groups * 4 * v.per_style
    quarantined = counts["quarantined"]
    return {
        "images": train_images + test_images,
        "products": {"train": train_products, "test": test_products},
        "gallery_images": test_images,
        "train_groups": n_groups,
        "street_photos": street,
        "test_queries": n_queries,
        "quarantined": quarantined,
        "rows_out": train_images + test_images,
        "summary": [
            f"{train_images + test_images:,} photos of {train_products + test_products:,} products from {origin}, "
            f"{v.size}x{v.size}",
            f"split by product: train {train_products:,} products ({train_images:,} photos), "
            f"test {test_products:,} products ({test_images:,} gallery photos, {n_queries:,} street queries)",
            f"{street:,} synthetic street photos for training ({v.per_style} per product and style, 4 styles)",
            "quarantined: " + (", ".join(f"{k} {n:,}" for k, n in quarantined.items()) or "none"),
        ],
    }
