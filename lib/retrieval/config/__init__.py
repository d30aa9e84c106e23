"""Typed configuration: dataclass defaults <- conf/<env>.yaml <- --set section.key=value.

- :mod:`.loader`: the typed loader, domain-free (keys and values checked against the dataclasses'
  type hints, ``Literal`` choices, deprecated aliases, each section's ``validate()``).
- :mod:`.sections`: the sections of our config, each checking itself next to its fields.

``dataclasses.asdict(cfg)`` is what crosses process boundaries (executors, TorchDistributor);
:func:`from_dict` rebuilds it there. A job reads its section (``cfg.index``), and a training stage
its runtime through :func:`runtime` (``runtime(cfg, "visual")``).
"""

from __future__ import annotations

import copy
from typing import Any

from retrieval import home, storage
from retrieval.config import loader
from retrieval.config.loader import ConfigError, ConfigWarning
from retrieval.config.sections import (
    Config,
    EmbedSection,
    EncoderHyper,
    EncoderSection,
    IndexSection,
    IngestSection,
    ListingsSection,
    LossSpec,
    LtrSection,
    PairsSection,
    PathsSection,
    RankerSection,
    RankingLossSpec,
    RecsSection,
    ReportSection,
    ServingSection,
    SessionsSection,
    SparkSection,
    SplitSection,
    SynthSection,
    TrackingSection,
    TrainingSection,
    TripletLossSpec,
    VisualSection,
    runtime,
)

__all__ = [
    "Config",
    "ConfigError",
    "ConfigWarning",
    "EmbedSection",
    "EncoderHyper",
    "EncoderSection",
    "IndexSection",
    "IngestSection",
    "ListingsSection",
    "LossSpec",
    "LtrSection",
    "PairsSection",
    "PathsSection",
    "RankerSection",
    "RankingLossSpec",
    "RecsSection",
    "ReportSection",
    "ServingSection",
    "SessionsSection",
    "SparkSection",
    "SplitSection",
    "SynthSection",
    "TrackingSection",
    "TrainingSection",
    "TripletLossSpec",
    "VisualSection",
    "apply_override",
    "from_dict",
    "load",
    "runtime",
    "to_yaml",
]


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuilds a Config from ``dataclasses.asdict(cfg)`` (or any partial nested mapping)."""
    cfg: Config = loader.from_dict(Config, data)
    return cfg


def apply_override(cfg: Config, assignment: str) -> None:
    """Applies one ``section.key=value`` override (the value parsed as YAML)."""
    loader.apply_override(cfg, assignment)


def to_yaml(cfg: Config) -> str:
    return loader.to_yaml(cfg)


def load(
    path: str | None = None, overrides: list[str] | tuple[str, ...] = (), base: Config | None = None
) -> Config:
    """Loads defaults (or a copy of ``base``), then the YAML file at ``path`` (if any; ``conf/X.yaml``
    falls back to the shipped config of that name, see ``home.config_path``), then each ``--set``
    override in order."""
    cfg = copy.deepcopy(base) if base is not None else Config()
    if path:
        path = home.config_path(path)
        loader.merge(cfg, loader.load_yaml(path), path)
    for assignment in overrides:
        apply_override(cfg, assignment)
    # Executors and training processes do not share the driver's working directory: a relative root
    # would land their writes (index shards, checkpoints, models) somewhere else on every node.
    loader.validate(cfg)
    cfg.paths.root = storage.absolute(cfg.paths.root)
    return cfg
