"""The command line: ./submit.sh --help, --dry-run, errors, and the whole pipeline on conf/test.yaml."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import REPO


def submit(*args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "submit.sh"), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_jobs_and_options() -> None:
    out = submit("--help")
    assert out.returncode == 0
    for word in ("pipeline", "generate", "ingest", "--dry-run", "--config", "--set"):
        assert word in out.stdout


def test_job_help_shows_its_docstring() -> None:
    out = submit("ingest", "--help")
    assert out.returncode == 0 and "quarantine" in out.stdout and "--set" in out.stdout


def test_dry_run_prints_the_spark_submit_command() -> None:
    out = submit("--dry-run", "generate", "--config", "conf/test.yaml", "--set", "paths.root=/tmp/x")
    assert out.returncode == 0
    cmd = out.stdout
    assert "spark-submit --master 'local[2]' --deploy-mode client" in cmd
    assert "--py-files" in cmd and ".zip" in cmd and "jobs/generate.py --config conf/test.yaml" in cmd
    assert "spark.sql.shuffle.partitions=4" in cmd and "PYSPARK_PYTHON=" in cmd
    assert "SPARK_LOCAL_DIRS=" in cmd and "log4j2.configurationFile=" in cmd


def test_dry_run_with_the_cluster_config_requests_gpus() -> None:
    from retrieval import config

    assert config.load(str(REPO / "conf" / "cluster.yaml")).train.use_gpu
    out = submit("--dry-run", "train_encoder", "--config", "conf/cluster.yaml")
    assert out.returncode == 0
    for piece in (
        "--master spark://spark-master:7077",
        "--executor-memory 24g",
        "--num-executors 16",
        "spark.executor.resource.gpu.amount=1",
        "spark.task.resource.gpu.amount=1",
        "spark.executor.resource.gpu.discoveryScript=",
    ):
        assert piece in out.stdout


def test_unknown_job_and_bad_config_fail_with_a_message() -> None:
    out = submit("nosuchjob")
    assert out.returncode == 2 and "unknown job 'nosuchjob'" in out.stderr
    out = submit("--dry-run", "generate", "--set", "synth.sesions=3")
    assert out.returncode == 2 and "unknown config key 'synth.sesions'" in out.stderr


@pytest.mark.spark
def test_missing_input_fails_naming_the_table(tmp_path: Path) -> None:
    out = submit("ingest", "--config", "conf/test.yaml", "--set", f"paths.root={tmp_path}", timeout=180)
    assert out.returncode == 1
    # spark-submit's PythonRunner merges the driver's stderr into stdout
    assert "error: table 'raw/offers' not found" in out.stdout + out.stderr


@pytest.mark.spark
@pytest.mark.slow
def test_pipeline_on_the_test_config(tmp_path: Path) -> None:
    out = submit("pipeline", "--config", "conf/test.yaml", "--set", f"paths.root={tmp_path}", timeout=600)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]  # the driver's errors land in stdout
    assert "== pipeline:" in out.stdout
    from jobs.pipeline import STAGES

    for stage, _ in STAGES:
        m = json.loads((tmp_path / "_metrics" / f"{stage}.json").read_text())
        assert m["rows_out"] > 0 and m["seconds"] > 0
        assert (tmp_path / "_metrics" / f"{stage}.config.yaml").exists()
    # the report covers every stage of the run, and MLflow has the run with one nested run per stage
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "has not run" not in page, [line for line in page.split("<p") if "has not run" in line]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("retrieval-at-scale").experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(["pipeline", *(stage for stage, _ in STAGES)])
    assert all(r.info.status == "FINISHED" for r in runs)
    for table in (
        "raw/offers",
        "raw/events",
        "offers",
        "events",
        "quarantine/events",
        "truth/relevance",
        "pairs",
        "listings",
    ):
        assert (tmp_path / table / "_SUCCESS").exists(), table
