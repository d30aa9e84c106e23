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
    """Runs one stage, or ``"pipeline"``, in this Python process: from a notebook, or any driver
    program that already has a Spark session. It does what ``retrieval submit <stage>`` does, less
    spark-submit: the root's lock, one commit per stage, metrics, the config written beside the
    output, MLflow tracking.

        from retrieval import run
        metrics = run("mine_pairs", spark=spark, config="conf/test.yaml",
                      overrides={"paths.root": "/tmp/run1", "pairs.window": 8})
        every = run("pipeline", spark=spark, config="test", only="generate,ingest,mine_pairs")

    Args:
        stage: a stage of the registry (``retrieval.stages``), or ``"pipeline"``.
        spark: the session to run on; None makes one from the config's ``spark`` section.
        config: a YAML path (``conf/test.yaml``, or a shipped config's name: ``test``), a loaded
            ``retrieval.config.Config``, or None for the embedded default (``local.yaml``).
        overrides: ``{"section.key": value}`` or ``["section.key=value", ...]``, applied in order.
        start, only: for ``"pipeline"``: start at a stage, or run only these (comma-separated).

    Returns:
        The stage's metrics dict (``pipeline``: a list of them, one per stage).
    """
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
