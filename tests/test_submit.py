"""The command line: ./submit.sh --help, --dry-run, errors, and the whole pipeline on conf/test.yaml."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, submit
from retrieval import commit
from retrieval.storage import local_path


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

    assert config.load(str(REPO / "conf" / "cluster.yaml")).training.use_gpu
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


def test_dry_run_ships_a_packed_environment() -> None:
    """spark.python_env (scripts/pack_env.sh's archive): --archives ...#environment, the executors run
    ./environment/bin/python; in client mode the driver keeps this venv's Python, in cluster mode it
    runs the shipped one too and the config travels with --files."""
    import shlex
    import sys

    env = "hdfs:///envs/retrieval-env.tar.gz"
    out = submit(
        "--dry-run", "train_encoder", "--config", "conf/cluster.yaml", "--set", f"spark.python_env={env}"
    )
    assert out.returncode == 0, out.stderr
    assert "PYSPARK_PYTHON=" not in out.stdout  # the confs decide, not the driver's environment
    cmd = shlex.split(out.stdout)
    assert cmd[cmd.index("--archives") + 1] == f"{env}#environment"
    assert "spark.pyspark.python=./environment/bin/python" in cmd
    assert f"spark.pyspark.driver.python={sys.executable}" in cmd
    out = submit(
        "--dry-run",
        "train_encoder",
        "--config",
        "conf/cluster.yaml",
        "--set",
        f"spark.python_env={env}",
        "--set",
        "spark.deploy_mode=cluster",
    )
    cmd = shlex.split(out.stdout)
    assert "spark.pyspark.driver.python=./environment/bin/python" in cmd
    assert cmd[cmd.index("--files") + 1] == str(REPO / "conf" / "cluster.yaml")
    job_args = cmd[cmd.index(str(REPO / "jobs" / "train_encoder.py")) + 1 :]
    assert job_args[job_args.index("--config") + 1] == "cluster.yaml"  # shipped: named by its base name


def test_a_cluster_mode_driver_is_given_its_run_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """In cluster deploy mode the driver runs on a node without the scheduler's environment: the run
    group goes as --run-group, so the stage joins its DAG run's lock instead of being refused."""
    import shlex

    args = ("--dry-run", "ingest", "--config", "conf/cluster.yaml", "--set", "paths.root=s3a://b/r")
    group = {"RETRIEVAL_RUN_GROUP": "weekly.scheduled__2026-12-06"}
    cluster = shlex.split(submit(*args, "--set", "spark.deploy_mode=cluster", env=group).stdout)
    assert cluster[-2:] == ["--run-group", "weekly.scheduled__2026-12-06"]
    client = shlex.split(submit(*args, env=group).stdout)
    assert "--run-group" not in client  # the driver runs here and inherits the environment
    from retrieval.cli import load_config

    monkeypatch.delenv("RETRIEVAL_RUN_GROUP", raising=False)  # restored after the test
    load_config("ingest", None, ["--run-group", "weekly-1"])
    assert os.environ["RETRIEVAL_RUN_GROUP"] == "weekly-1"


def test_dry_run_for_remote_masters() -> None:
    """What a real cluster needs beside the local case: GPUs only for the stages that use them, the
    zip on the executors' PYTHONPATH (training processes import from it), no path of this machine's
    Python, spark.conf winning over the typed resources, and a URI root in cluster deploy mode."""
    import shlex

    def dry(*args: str) -> tuple[list[str], str]:
        out = submit("--dry-run", *args, env={"PYSPARK_PYTHON": ""})  # test.sh sets it
        assert out.returncode == 0, out.stderr
        tokens = shlex.split(out.stdout)  # K=V ... spark-submit ...
        at = next(i for i, t in enumerate(tokens) if t.endswith("spark-submit"))
        return tokens[at:], " ".join(tokens[:at])

    cmd, env = dry("ingest", "--config", "conf/cluster.yaml")
    assert not any("resource.gpu" in c for c in cmd)  # a CPU stage does not hold GPUs
    assert "PYSPARK_PYTHON" not in env and "SPARK_LOCAL_IP" not in env
    zip_name = Path(cmd[cmd.index("--py-files") + 1]).name
    assert f"spark.executorEnv.PYTHONPATH={zip_name}" in cmd
    cmd, _ = dry("ingest", "--config", "conf/cluster.yaml", "--set", "spark.conf.spark.executor.memory=10g")
    assert cmd[cmd.index("--executor-memory") + 1] == "10g" and "spark.executor.memory=10g" not in cmd
    cmd, _ = dry("ingest", "--config", "conf/cluster.yaml", "--set", "spark.master=yarn")
    assert not any(c.startswith("spark.executorEnv.PYTHONPATH") for c in cmd)  # YARN sets it itself
    cmd, _ = dry(
        "ingest",
        "--config=conf/cluster.yaml",
        "--set",
        "spark.deploy_mode=cluster",
        "--set",
        "spark.master=yarn",
    )
    assert "--config=cluster.yaml" in cmd  # the shipped copy, by its base name
    out = submit("--dry-run", "ingest", "--config", "conf/test.yaml", "--set", "spark.deploy_mode=cluster")
    assert out.returncode == 2 and "give a URI every node reaches" in out.stderr


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
def test_pipeline_on_the_test_config(local_pipeline: dict[str, Any]) -> None:
    out, tmp_path = local_pipeline["out"], local_pipeline["root"]
    assert "== pipeline:" in out.stdout
    from retrieval.stages import pipeline_stages

    names = [s.name for s in pipeline_stages()]
    for stage in names:
        m = json.loads((tmp_path / "_metrics" / f"{stage}.json").read_text())
        assert m["rows_out"] > 0 and m["seconds"] > 0
        assert (tmp_path / "_metrics" / f"{stage}.config.yaml").exists()
    # the report covers every stage of the run, and MLflow has the run with one nested run per stage
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "has not run" not in page, [line for line in page.split("<p") if "has not run" in line]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("retrieval-at-scale").experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(["pipeline", *names])
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
        uri = commit.resolve(str(tmp_path), table)  # each a committed version with Spark's marker
        assert (
            uri is not None and "/v" in uri and os.path.exists(os.path.join(local_path(uri), "_SUCCESS"))
        ), table


def test_check_cluster_names_an_executor_with_other_libraries() -> None:
    from retrieval.cluster_check import environment, mismatches

    driver = environment()
    other = {**driver, "host": "node7", "libraries": {**driver["libraries"], "torch": "2.1.0"}}
    assert mismatches(driver, [driver]) == []
    assert mismatches(driver, [other]) == [
        f"node7:{driver['cwd']} has torch 2.1.0, the driver {driver['libraries']['torch']}"
    ]


def test_pipeline_from_or_only_an_unknown_stage_is_an_error_before_spark(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from jobs import pipeline

    for args in (["--only", "ingest,nope"], ["--from", "lookup"], ["--from", "ingest", "--only", "ingest"]):
        with pytest.raises(SystemExit) as e:
            pipeline.main(["--config", "conf/test.yaml", *args])
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown ['nope']" in err and "--from lookup: not a pipeline stage" in err and "not both" in err
