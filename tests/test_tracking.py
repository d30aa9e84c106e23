"""MLflow tracking (retrieval.tracking): what a stage run holds, the pipeline's parent run, and off switches."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import make_config
from retrieval import stage_metrics
from retrieval.tracking import Tracker, default_uri, flatten_metrics, flatten_params


def _result(cfg: Any, stage: str, **extra: Any) -> dict[str, Any]:
    """A finished stage's result as run_stage builds it (metrics and config written)."""
    result = {
        "rows_out": 12,
        "seconds": 3.5,
        "recall_at_50": 0.41,
        "ndcg_at_10": {"xgb": 0.8, "dnn_neural_ndcg": 0.85},
        "history": [{"epoch": 0, "loss": 2.0}, {"epoch": 1, "loss": 1.5}],
        "curve": [0.1, 0.2, 0.3],
        "outputs": {"pairs": "file:///x/pairs"},
        "summary": ["12 pairs"],
        "flag": True,
        "name": "not a number",
        **extra,
    }
    result["metrics_path"] = stage_metrics.write_stage_metrics(cfg, stage, result, None)
    result["config"] = stage_metrics.config_path(cfg.paths.root, stage)
    return result


def test_flatten_metrics_and_params() -> None:
    got = {
        (k, s): v
        for k, v, s in flatten_metrics(
            {
                "a": 1,
                "b": {"c": 0.5, "d": {"e": 2}},
                "curve": [1, 2],
                "h": [{"epoch": 0, "loss": 3.0}],
                "s": "text",
                "nan": float("nan"),
                "summary": ["x"],
                "outputs": {"t": "u"},
                "ok": False,
                "weird key(1)": 4,
            }
        )
    }
    assert got == {
        ("a", 0): 1.0,
        ("b.c", 0): 0.5,
        ("b.d.e", 0): 2.0,
        ("curve", 0): 1.0,
        ("curve", 1): 2.0,
        ("h.epoch", 0): 0.0,
        ("h.loss", 0): 3.0,
        ("ok", 0): 0.0,
        ("weird key_1_", 0): 4.0,
    }
    cfg = make_config("/tmp/x")
    params = flatten_params(cfg)
    assert params["paths.root"] == "/tmp/x"
    assert params["seed"] == str(cfg.seed)
    assert json.loads(params["pairs.event_weights"]) == cfg.pairs.event_weights
    assert json.loads(params["ranker.losses"]) == [dataclasses.asdict(s) for s in cfg.ranker.losses]
    assert all(len(v) <= 500 for v in params.values())


def test_stage_and_pipeline_runs_in_the_default_sqlite_store(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    cfg = make_config(tmp_path)
    tracker = Tracker(cfg)
    assert tracker.uri == default_uri(str(tmp_path)) == f"sqlite:///{tmp_path}/mlflow.db"
    with tracker.pipeline():
        a = tracker.log_stage(
            "mine_pairs",
            _result(
                cfg,
                "mine_pairs",
                pairs=12,
                same_product_at_10=0.5,
                random_same_product=0.01,
                same_cluster_at_10=0.6,
                random_same_cluster=0.02,
            ),
        )
    b = Tracker(cfg).log_stage("evaluate", _result(cfg, "evaluate", report="r", stages_reported=[]))
    assert a and b and (tmp_path / "mlflow.db").exists()

    client = MlflowClient(tracking_uri=tracker.uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    assert exp.artifact_location == f"file://{tmp_path}/mlartifacts"
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"pipeline", "mine_pairs", "evaluate"}
    assert all(r.info.status == "FINISHED" for r in runs.values())
    stage = runs["mine_pairs"]
    assert stage.data.tags["mlflow.parentRunId"] == runs["pipeline"].info.run_id
    assert "mlflow.parentRunId" not in runs["evaluate"].data.tags  # run alone: no parent
    assert stage.data.metrics["recall_at_50"] == pytest.approx(0.41)
    assert stage.data.metrics["ndcg_at_10.dnn_neural_ndcg"] == pytest.approx(0.85)
    assert stage.data.params["synth.products"] == str(cfg.synth.products)
    assert stage.data.tags["output.pairs"] == "file:///x/pairs"
    assert [m.value for m in client.get_metric_history(a, "history.loss")] == [2.0, 1.5]
    assert sorted(f.path for f in client.list_artifacts(a)) == ["mine_pairs.config.yaml", "mine_pairs.json"]


def test_failed_stage_is_a_failed_run(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    cfg = make_config(tmp_path)
    tracker = Tracker(cfg)
    with pytest.raises(RuntimeError), tracker.pipeline():
        tracker.log_failure("ingest", RuntimeError("disk full"))
        raise RuntimeError("disk full")
    runs = {
        r.info.run_name: r
        for r in MlflowClient(tracking_uri=tracker.uri).search_runs(
            [
                MlflowClient(tracking_uri=tracker.uri)
                .get_experiment_by_name(cfg.tracking.experiment)
                .experiment_id
            ]
        )
    }
    assert runs["ingest"].info.status == "FAILED" and runs["pipeline"].info.status == "FAILED"
    assert "disk full" in runs["ingest"].data.tags["error"]


def test_off_switches_and_errors_never_fail_a_stage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_config(tmp_path, "tracking.enabled=false")
    assert Tracker(cfg).log_stage("generate", {"rows_out": 1}) is None
    assert not (tmp_path / "mlflow.db").exists()

    with caplog.at_level(logging.WARNING, logger="retrieval.tracking"):
        remote = Tracker(make_config("hdfs:///runs/x"))
    assert not remote.enabled and "tracking.uri" in caplog.text

    broken = Tracker(make_config(tmp_path, "tracking.uri=sqlite:////proc/no/such/dir/mlflow.db"))
    with caplog.at_level(logging.WARNING, logger="retrieval.tracking"):
        assert broken.log_stage("generate", {"rows_out": 1}) is None
    assert "the stage's outputs and _metrics are unaffected" in caplog.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_mlflow_ui_lists_the_stages(tmp_path: Path) -> None:
    """What the README tells a person to run: `mlflow ui --backend-store-uri sqlite:///<root>/mlflow.db`."""
    cfg = make_config(tmp_path)
    tracker = Tracker(cfg)
    with tracker.pipeline():
        tracker.log_stage("generate", _result(cfg, "generate", offers=1, events=2, bad_rows_injected=0))
    port = _free_port()
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    proc = subprocess.Popen(
        [mlflow, "ui", "--backend-store-uri", tracker.uri, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError("mlflow ui did not come up") from None
                time.sleep(0.5)

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            req = urllib.request.Request(
                f"{base}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())

        exp = post("/api/2.0/mlflow/experiments/search", {"max_results": 10})["experiments"]
        ids = [e["experiment_id"] for e in exp if e["name"] == cfg.tracking.experiment]
        runs = post("/api/2.0/mlflow/runs/search", {"experiment_ids": ids})["runs"]
        names = {r["info"]["run_name"] for r in runs}
        assert names == {"pipeline", "generate"}
        gen = next(r for r in runs if r["info"]["run_name"] == "generate")
        assert {"key": "recall_at_50", "value": 0.41} in [
            {"key": m["key"], "value": m["value"]} for m in gen["data"]["metrics"]
        ]
        with urllib.request.urlopen(base + "/", timeout=10) as r:  # the UI page itself is served
            assert b"<html" in r.read().lower()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
