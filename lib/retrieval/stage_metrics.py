"""Stage metrics: ``<root>/_metrics/<stage>.json`` with the keys of DESIGN.md's metrics contract.

Every stage writes ``seconds``, ``config`` (where the resolved config it ran with was saved) and
``rows_out``, plus its own keys. Later stages, the report and the checks read these files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from retrieval import config, storage

# Keys every stage's metrics must have, and the extra keys of each stage (DESIGN.md).
COMMON_KEYS = ("seconds", "config", "rows_out")
STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "generate": ("offers", "events", "bad_rows_injected"),
    "ingest": ("rows_in", "rows_accepted", "rows_quarantined", "rows_duplicate", "quarantine_reasons"),
    "mine_pairs": (
        "pairs",
        "same_product_at_10",
        "random_same_product",
        "same_cluster_at_10",
        "random_same_cluster",
    ),
    "mine_listings": ("listings", "rows", "propensity_mae"),
    "train_encoder": ("recall_at_50", "cold_recall_at_50", "examples_per_s", "feed"),
    "build_index": ("shards", "vectors", "index_factory", "recall_at_10_vs_exact"),
    "precompute_recs": ("offers", "offers_with_recs", "k", "recall_at_20_test_pairs", "catalog_coverage"),
    "train_ranker": ("ndcg_at_10", "ndcg_at_10_labels", "mrr"),
    "evaluate": ("report", "stages_reported"),
    "visual_pairs": ("images", "products", "test_queries", "quarantined"),
    "train_visual": ("variants",),
    "embed_images": ("images_embedded", "model_version", "shards"),
    "evaluate_visual": ("accuracy_at_5", "accuracy_at_1", "ablations"),
    "check_cluster": ("executors", "tasks", "training"),
}


def metrics_dir(root: str) -> str:
    return storage.join(root, "_metrics")


def metrics_path(root: str, stage: str) -> str:
    return storage.join(metrics_dir(root), f"{stage}.json")


def config_path(root: str, stage: str) -> str:
    """Where a stage saves the resolved config it ran with (next to its metrics)."""
    return storage.join(metrics_dir(root), f"{stage}.config.yaml")


def missing_keys(stage: str, metrics: dict[str, Any]) -> list[str]:
    return [k for k in (*COMMON_KEYS, *STAGE_KEYS.get(stage, ())) if k not in metrics]


def write_stage_metrics(cfg: config.Config, stage: str, metrics: dict[str, Any], source: str | None) -> str:
    """Saves the used config and the metrics of ``stage`` (atomically); returns the metrics path.

    Raises:
        ValueError: if a key of the metrics contract is missing (a bug in the stage).
    """
    root = cfg.paths.root
    cpath = config_path(root, stage)
    storage.write_text_atomic(
        cpath,
        f"# resolved config of stage {stage} (source: {source or 'defaults'})\n" + config.to_yaml(cfg),
    )
    out = {"stage": stage, **metrics, "config": cpath, "config_source": source}
    missing = missing_keys(stage, out)
    if missing:
        raise ValueError(f"stage {stage} did not produce metrics keys {missing}")
    path = metrics_path(root, stage)
    storage.write_json_atomic(path, out)
    return path


def read_stage_metrics(root: str, stage: str) -> dict[str, Any]:
    data = storage.read_json(metrics_path(root, stage))
    assert isinstance(data, dict)
    return data


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """``with timed() as t: ...`` then ``t["seconds"]``."""
    box = {"seconds": 0.0}
    start = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = round(time.perf_counter() - start, 3)
