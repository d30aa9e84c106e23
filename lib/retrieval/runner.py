"""``retrieval.run``: a stage or the pipeline in this process (the notebook path; see its docstring)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from retrieval import config as config_mod
from retrieval import home, stages


def resolve_config(config: Any = None, overrides: Any = None) -> config_mod.Config:
    """A Config from a path, a shipped config's name, a Config (copied, not changed) or None, with
    ``overrides`` (a mapping or ``K=V`` strings) applied and validated as the loader does."""
    sets = _assignments(overrides)
    if isinstance(config, config_mod.Config):
        return config_mod.load(None, sets, base=config)
    return config_mod.load(str(config) if config is not None else home.default_config(), sets)


def _assignments(overrides: Any) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{k}={_yaml_value(v)}" for k, v in overrides.items()]
    if isinstance(overrides, str) or not isinstance(overrides, Sequence):
        raise TypeError(
            "overrides: a mapping {'section.key': value} or a list of 'section.key=value' strings"
        )
    return [str(o) for o in overrides]


def _yaml_value(v: Any) -> str:
    """A Python value as the text ``--set`` parses (YAML): lists and mappings as JSON, which is YAML."""
    if isinstance(v, str):
        return v
    if dataclasses.is_dataclass(v):
        raise TypeError("overrides: give plain values, not config sections")
    return json.dumps(v)


def run(
    stage: str,
    spark: Any = None,
    config: Any = None,
    overrides: Any = None,
    start: str | None = None,
    only: str | None = None,
) -> Any:
    from retrieval.cli import run_pipeline, run_stage, writing

    cfg = resolve_config(config, overrides)
    source = config if isinstance(config, str) else None
    if stage == "pipeline":
        return run_pipeline(cfg, stages.select(start, only), spark=spark, source=source)
    if start or only:
        raise ValueError("start and only are options of the pipeline, not of a single stage")
    fn = stages.get(stage).run_function()  # a ValueError names the stages
    from retrieval.spark import get_spark

    with writing(cfg):
        return run_stage(spark or get_spark(cfg, stage), cfg, stage, fn, source)
