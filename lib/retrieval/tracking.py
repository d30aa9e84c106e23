"""Experiment tracking with MLflow: every stage's params, metrics and small artifacts, comparable across days.

Each stage becomes one MLflow run (named after the stage) in the experiment ``tracking.experiment``; a
pipeline run is a parent run with one nested run per stage. What a run holds:

- params: the whole resolved config, flattened (``train.lr``, ``ranker.losses`` ...);
- metrics: every number in the stage's metrics dict, flattened with dots (``ndcg_at_10.xgb``); a list
  of numbers is one metric with a step per element (a recall curve, a loss per epoch);
- tags: the stage, the root, the config file, and one ``output.<table>`` tag per table it wrote;
- artifacts: ``_metrics/<stage>.json``, the config it ran with, and what the stage lists under
  ``artifacts`` in its metrics (the evaluate stage: the report page). Models and tables stay where the
  stage wrote them (their URIs are tags): copying gigabytes into the tracking store helps no one.

Where: ``tracking.uri`` if set (a tracking server, ``http://mlflow:5000``, on a cluster); otherwise a
SQLite store beside the run, ``sqlite:///<root>/mlflow.db``, with artifacts under ``<root>/mlartifacts``,
when the root is on a local disk. A remote root without ``tracking.uri`` logs a warning and tracks
nothing (a SQLite file cannot live on HDFS or S3). ``tracking.enabled=false`` turns it all off.

Tracking never fails a stage: a tracking error is logged as a warning and the stage's own outputs and
``_metrics`` file (the source of truth) are unaffected.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from retrieval import storage

log = logging.getLogger(__name__)

# Keys of a stage's metrics dict that are not numbers to track (they go to tags or artifacts).
_NOT_METRICS = {"stage", "config", "config_source", "summary", "outputs", "metrics_path", "artifacts"}
_PARAM_VALUE_MAX = 500  # the limit of older tracking servers (MLflow 3 takes 6000)
_BATCH = 100  # params (and tags) per log_batch call; metrics are chunked by 1000
_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


def default_uri(root: str) -> str:
    """``sqlite:///<absolute root>/mlflow.db`` for a local root; ``""`` for a remote one."""
    if not storage.is_local(root):
        return ""
    return "sqlite:///" + os.path.join(storage.local_path(root), "mlflow.db")


def resolve_uri(cfg: Any) -> str:
    """The tracking URI a run uses, or ``""`` when tracking is off (disabled, or nowhere to write)."""
    t = cfg.tracking
    if not t.enabled:
        return ""
    return t.uri or default_uri(cfg.paths.root)


def flatten_params(obj: Any, prefix: str = "") -> dict[str, str]:
    """A (dataclass) config as ``{"section.key": "value"}``; lists and dicts as JSON, long values cut."""
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) and not isinstance(obj, type) else obj
    out: dict[str, str] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and prefix == "":  # a config section
            out.update(flatten_params(v, key + "."))
        else:
            text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
            out[key] = text if len(text) <= _PARAM_VALUE_MAX else text[: _PARAM_VALUE_MAX - 1] + "…"
    return out


def flatten_metrics(result: dict[str, Any]) -> list[tuple[str, float, int]]:
    """Every number in a stage's metrics as ``(key, value, step)``; lists of numbers get one step each."""
    out: list[tuple[str, float, int]] = []

    def walk(key: str, v: Any) -> None:
        if isinstance(v, bool):
            out.append((key, float(v), 0))
        elif isinstance(v, (int, float)):
            if math.isfinite(float(v)):
                out.append((key, float(v), 0))
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(f"{key}.{k}" if key else str(k), x)
        elif isinstance(v, (list, tuple)):
            if v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                out.extend((key, float(x), i) for i, x in enumerate(v) if math.isfinite(float(x)))
            elif v and all(isinstance(x, dict) for x in v):
                # a per-epoch history: [{"epoch": 0, "loss": ...}, ...] -> history.loss with steps
                for i, row in enumerate(v):
                    for k, x in row.items():
                        if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
                            out.append((f"{key}.{k}", float(x), i))

    for k, v in result.items():
        if k not in _NOT_METRICS:
            walk(k, v)
    return [(_KEY_BAD.sub("_", k)[:250], v, s) for k, v, s in out]


class Tracker:
    """Logs stages to MLflow; a no-op when tracking is off. One per job (or per pipeline)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.uri = resolve_uri(cfg)
        self.parent_id: str | None = None
        self._client: Any = None
        self._experiment_id: str | None = None
        if cfg.tracking.enabled and not self.uri:
            log.warning(
                "tracking: off, the root %s is not on a local disk and tracking.uri is not set "
                "(set tracking.uri to a tracking server, or tracking.enabled=false to silence this)",
                cfg.paths.root,
            )

    @property
    def enabled(self) -> bool:
        return bool(self.uri)

    def _setup(self) -> tuple[Any, str]:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            if self.uri.startswith("sqlite:///"):
                os.makedirs(os.path.dirname(self.uri[len("sqlite:///") :]), exist_ok=True)
            client = MlflowClient(tracking_uri=self.uri)
            name = self.cfg.tracking.experiment
            exp = client.get_experiment_by_name(name)
            if exp is None:
                location = None
                if not self.cfg.tracking.uri:  # the default store: artifacts beside it, under the root
                    location = storage.to_uri(storage.join(self.cfg.paths.root, "mlartifacts"))
                self._experiment_id = client.create_experiment(name, artifact_location=location)
            else:
                self._experiment_id = exp.experiment_id
            self._client = client
        assert self._experiment_id is not None
        return self._client, self._experiment_id

    def _tags(self, **extra: str) -> dict[str, str]:
        return {"root": self.cfg.paths.root, "seed": str(self.cfg.seed), **extra}

    @contextmanager
    def pipeline(self, name: str = "pipeline") -> Iterator[None]:
        """A parent run around the stages logged inside the block; FAILED if the block raises."""
        if not self.enabled:
            yield
            return
        run_id = self._guard(lambda: self._start(name, {"stage": name}))
        self.parent_id = run_id
        status = "FAILED"
        try:
            yield
            status = "FINISHED"
        finally:
            self.parent_id = None
            if run_id:
                self._guard(lambda: self._client.set_terminated(run_id, status))

    def log_stage(self, stage: str, result: dict[str, Any], source: str | None = None) -> str | None:
        """Logs one finished stage as a run; returns its run id (None when off or on a tracking error)."""
        if not self.enabled:
            return None
        return self._guard(lambda: self._log_stage(stage, result, source))

    def log_failure(self, stage: str, error: BaseException) -> None:
        """A stage that raised: a FAILED run carrying the error, so the tracking UI shows where it stopped."""
        if not self.enabled:
            return

        def go() -> None:
            run_id = self._start(stage, {"stage": stage, "error": f"{type(error).__name__}: {error}"[:5000]})
            self._client.set_terminated(run_id, "FAILED")

        self._guard(go)

    def _start(self, name: str, tags: dict[str, str]) -> str:
        from mlflow.entities import Param

        client, exp = self._setup()
        all_tags = self._tags(**tags)
        if self.parent_id:
            all_tags["mlflow.parentRunId"] = self.parent_id
        run = client.create_run(exp, run_name=name, tags=all_tags)
        run_id = str(run.info.run_id)
        params = [Param(k, v) for k, v in flatten_params(self.cfg).items()]
        for i in range(0, len(params), _BATCH):
            client.log_batch(run_id, params=params[i : i + _BATCH])
        return run_id

    def _log_stage(self, stage: str, result: dict[str, Any], source: str | None) -> str:
        from mlflow.entities import Metric, RunTag

        client = self._setup()[0]
        tags = {"stage": stage, "config_source": source or "defaults"}
        tags.update({f"output.{k}": str(v) for k, v in result.get("outputs", {}).items()})
        run_id = self._start(stage, tags)
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, s) for k, v, s in flatten_metrics(result)]
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
        summary = result.get("summary") or []
        if summary:
            client.log_batch(run_id, tags=[RunTag("mlflow.note.content", "\n".join(map(str, summary)))])
        files = {"metrics": result.get("metrics_path", ""), "config": result.get("config", "")}
        files.update(result.get("artifacts", {}))
        for name, uri in files.items():
            if uri and storage.exists(uri):
                self._log_file(client, run_id, uri, "" if name in ("metrics", "config") else name)
        client.set_terminated(run_id, "FINISHED")
        log.info("tracking: stage %s logged as MLflow run %s (%s)", stage, run_id, self.uri)
        return run_id

    @staticmethod
    def _log_file(client: Any, run_id: str, uri: str, artifact_path: str) -> None:
        if storage.is_local(uri):
            client.log_artifact(run_id, storage.local_path(uri), artifact_path or None)
            return
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, os.path.basename(uri.rstrip("/")))
            with open(local, "wb") as f:
                f.write(storage.read_bytes(uri))
            client.log_artifact(run_id, local, artifact_path or None)

    def _guard(self, fn: Any) -> Any:
        try:
            return fn()
        except Exception as e:  # tracking is a side channel: report it, never fail the stage for it
            log.warning(
                "tracking: %s: %s (the stage's outputs and _metrics are unaffected)", type(e).__name__, e
            )
            return None

    def ui_command(self) -> str:
        """What a person runs to look at the runs (printed in the pipeline's last line)."""
        if self.uri.startswith("sqlite:///"):
            return f"mlflow ui --backend-store-uri {self.uri}"
        return f"open {self.uri}" if self.uri else ""
