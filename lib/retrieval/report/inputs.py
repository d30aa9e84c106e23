"""What the report reads besides the tables: every stage's metrics, the config a stage ran with, the
benchmark result files, and stored images (through ``retrieval.storage``; no Spark)."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from typing import Any

from retrieval import storage
from retrieval.stage_metrics import config_path, read_stage_metrics


def stage_metrics(root: str, stages: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{stage: its metrics} of the ``stages`` that wrote metrics under ``root``, in that order."""
    out = {}
    for stage in stages:
        try:
            out[stage] = read_stage_metrics(root, stage)
        except FileNotFoundError:
            continue
    return out


def config_text(root: str, m: dict[str, dict[str, Any]]) -> str | None:
    """The config the run started with (the generate stage's, else the first stage's), as YAML text."""
    if not m:
        return None
    src = config_path(root, "generate" if "generate" in m else next(iter(m)))
    return storage.read_text(src) if storage.exists(src) else None


def benchmarks(directory: str) -> list[dict[str, Any]]:
    """Every benchmark result file under ``directory`` (``<name>.json``), sorted by name."""
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path, encoding="utf-8") as f:
            out.append(json.load(f))
    return out


def image(uri: str | None) -> bytes | None:
    return storage.read_bytes(uri) if uri and storage.exists(uri) else None
