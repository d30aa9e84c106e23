"""The Airflow DAGs (deploy/airflow/retrieval_dags.py): their graph against jobs/pipeline.STAGES and their
--set keys against the config, read without Airflow; then (slow) parsed by Airflow's own DagBag in a
venv of its own, build/airflow-venv, since the project's venv has no Airflow and Airflow's has no Spark."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO
from retrieval import config, stages

DAG_FILE = REPO / "deploy" / "airflow" / "retrieval_dags.py"
AIRFLOW_VERSION = "3.3.2"
AIRFLOW_VENV = REPO / "build" / "airflow-venv"
STAMP = AIRFLOW_VENV / "airflow-version"  # written once the install finished
SET = re.compile(r"^[a-z_]+\.[a-z_]+=")  # a --set override: section.key=value


def dag_literals() -> dict[str, Any]:
    """The DAG file's module-level constants that are literals (STAGE_DEPS, DAILY_STAGES, ...)."""
    out = {}
    for node in ast.parse(DAG_FILE.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def test_the_dag_files_stage_block_is_the_registrys() -> None:
    """The DAG file cannot import the project: its STAGE_DEPS block is generated from the registry
    (python -m retrieval.stages airflow) and must be what the registry says now."""
    text = DAG_FILE.read_text(encoding="utf-8")
    assert stages.airflow_block() in text, (
        "deploy/airflow/retrieval_dags.py is stale: paste `python -m retrieval.stages airflow`"
    )


def test_stage_deps_follow_the_pipeline() -> None:
    lit = dag_literals()
    deps, order = lit["STAGE_DEPS"], [s.name for s in stages.pipeline_stages()]
    assert list(deps) == order, "STAGE_DEPS must name every pipeline stage of the registry, in its order"
    for stage, upstream in deps.items():
        for dep in upstream:
            assert dep in order[: order.index(stage)], f"{stage} depends on {dep}, which runs after it"
    daily = lit["DAILY_STAGES"]
    assert daily == sorted(daily, key=order.index), "DAILY_STAGES out of pipeline order"


def test_every_set_key_exists_in_the_config() -> None:
    tree = ast.parse(DAG_FILE.read_text(encoding="utf-8"))
    keys = {
        node.value.split("=", 1)[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SET.match(node.value)
    }
    assert {"recs.mode", "recs.since", "training.resume"} <= keys
    cfg = config.Config()
    for key in sorted(keys):
        section, name = key.split(".")
        part = getattr(cfg, section, None)
        known = {f.name for f in dataclasses.fields(part)} if dataclasses.is_dataclass(part) else set()
        assert name in known, f"--set {key}: no such key in lib/retrieval/config/sections.py"


def airflow_python() -> Path:
    """build/airflow-venv's python with apache-airflow==AIRFLOW_VERSION, installed once (skips the test
    when the install fails or takes longer than RETRIEVAL_AIRFLOW_INSTALL_S seconds)."""
    python = AIRFLOW_VENV / "bin" / "python"
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == AIRFLOW_VERSION:
        return python
    budget = float(os.environ.get("RETRIEVAL_AIRFLOW_INSTALL_S", "420"))
    shutil.rmtree(AIRFLOW_VENV, ignore_errors=True)
    base = shutil.which("python3.11") or sys.executable
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    try:
        subprocess.run(
            [base, "-m", "venv", str(AIRFLOW_VENV)], check=True, capture_output=True, text=True, timeout=60
        )
        subprocess.run(
            [*pip, f"apache-airflow=={AIRFLOW_VERSION}"],
            check=True,
            capture_output=True,
            text=True,
            timeout=budget,
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(AIRFLOW_VENV, ignore_errors=True)
        pytest.skip(
            f"installing apache-airflow=={AIRFLOW_VERSION} into build/airflow-venv took over {budget:.0f} s "
            "(RETRIEVAL_AIRFLOW_INSTALL_S); give it longer: "
            "RETRIEVAL_AIRFLOW_INSTALL_S=1200 ./test.sh tests/test_airflow_dag.py"
        )
    except subprocess.CalledProcessError as e:
        shutil.rmtree(AIRFLOW_VENV, ignore_errors=True)
        pytest.skip(
            f"could not install apache-airflow=={AIRFLOW_VERSION} into build/airflow-venv (it needs PyPI; "
            f"rerun ./test.sh tests/test_airflow_dag.py where PyPI is reachable): {(e.stderr or '')[-1500:]}"
        )
    STAMP.write_text(AIRFLOW_VERSION + "\n")
    return python


# Runs in the Airflow venv: loads the folder with DagBag (as the DAG processor does), serializes every
# DAG (as it is stored for the scheduler) and renders each bash_command with two contexts: a first run
# without a previous successful one, and a retry two days after a successful run. Parsed twice: as
# deployed, and with RETRIEVAL_SYNTHETIC=1.
PROBE = """
import json, os, sys
from datetime import datetime, timezone

from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.execution_time import macros
from airflow.serialization.serialized_objects import DagSerialization

started = datetime(2026, 10, 15, 4, 0, 7, tzinfo=timezone.utc)
contexts = {
    "first": {"ti": {"try_number": 1}, "prev_start_date_success": None, "dag_run": {"start_date": started}},
    "retry": {
        "ti": {"try_number": 2},
        "prev_start_date_success": datetime(2026, 10, 13, 4, 0, 5, tzinfo=timezone.utc),
        "dag_run": {"start_date": started},
    },
}
out = {}
for synthetic in ("", "1"):
    os.environ["RETRIEVAL_SYNTHETIC"] = synthetic
    bag = DagBag(dag_folder=sys.argv[1])
    dags = {}
    for dag_id, dag in bag.dags.items():
        DagSerialization.to_dict(dag)
        env = dag.get_template_env()
        dags[dag_id] = {
            "schedule": str(dag.schedule),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "max_active_tasks": dag.max_active_tasks,
            "tasks": {
                t.task_id: {
                    "upstream": sorted(t.upstream_task_ids),
                    "retries": t.retries,
                    "retry_delay_s": t.retry_delay.total_seconds(),
                    "bash_command": t.bash_command,
                    "rendered": {
                        name: env.from_string(t.bash_command).render(
                            **c, macros=macros, dag={"dag_id": dag_id}, run_id="scheduled__2026-10-15"
                        )
                        for name, c in contexts.items()
                    },
                }
                for t in dag.tasks
            },
        }
    out[synthetic or "0"] = {
        "import_errors": bag.import_errors,
        "warnings": {f: list(w) for f, w in bag.captured_warnings.items()},
        "dags": dags,
    }
with open(sys.argv[2], "w") as f:
    json.dump(out, f)
"""


@pytest.mark.slow
def test_airflow_parses_the_dags(tmp_path: Path) -> None:
    python = airflow_python()
    root = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRIEVAL_", "AIRFLOW_"))}
    env |= {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "RETRIEVAL_HOME": str(REPO),
        "RETRIEVAL_SET": f"paths.root={root}",
    }
    out_file = tmp_path / "dags.json"
    probe = subprocess.run(
        [str(python), "-c", PROBE, str(DAG_FILE.parent), str(out_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stdout[-3000:] + probe.stderr[-3000:]
    parsed = json.loads(out_file.read_text())
    lit = dag_literals()
    deps, daily = lit["STAGE_DEPS"], lit["DAILY_STAGES"]

    def argv(stage: str, *sets: str, action: str = "") -> list[str]:
        out = [str(REPO / "submit.sh"), stage, *([action] if action else [])]
        out += ["--config", "conf/cluster.yaml", "--set", f"paths.root={root}"]
        for s in sets:
            out += ["--set", s]
        return out

    commands = set()
    for synthetic, bag in parsed.items():
        assert bag["import_errors"] == {} and bag["warnings"] == {}, bag
        dags = bag["dags"]
        assert set(dags) == {"retrieval_weekly_retrain", "retrieval_daily_update"}
        weekly, update = dags["retrieval_weekly_retrain"], dags["retrieval_daily_update"]
        assert (weekly["schedule"], update["schedule"]) == ("0 3 * * 0", "0 4 * * 1-6")
        assert weekly["max_active_tasks"] == 1
        for dag_id, dag in dags.items():
            assert dag["catchup"] is False and dag["max_active_runs"] == 1
            for task_id, task in dag["tasks"].items():
                # the lock task waits for the other DAG's run by retrying, up to 6 hours
                want = (36, 600.0) if task_id == "lock" else (2, 600.0)
                assert (task["retries"], task["retry_delay_s"]) == want
                for run, line in task["rendered"].items():
                    group, *rest = shlex.split(line)
                    assert group == f"RETRIEVAL_RUN_GROUP={dag_id}.scheduled__2026-10-15"
                    task["rendered"][run] = shlex.join(rest)
                commands |= set(task["rendered"].values())
            # one run group from `lock` to `unlock`, which runs after every stage whatever the outcome
            for run in ("first", "retry"):
                assert shlex.split(dag["tasks"]["lock"]["rendered"][run]) == argv("lock", action="acquire")
                assert shlex.split(dag["tasks"]["unlock"]["rendered"][run]) == argv("lock", action="release")
            assert dag["tasks"]["lock"]["upstream"] == []
            assert dag["tasks"]["unlock"]["upstream"] == sorted(set(dag["tasks"]) - {"lock", "unlock"})
            for t in ("lock", "unlock"):
                dag["tasks"].pop(t)

        graph = {s: d for s, d in deps.items() if synthetic == "1" or s != "generate"}
        graph = {s: sorted(x for x in d if x in graph) or ["lock"] for s, d in graph.items()}
        assert {t: v["upstream"] for t, v in weekly["tasks"].items()} == graph
        for stage, task in weekly["tasks"].items():
            # train_encoder resumes from its last checkpoint on a retry, not on the first try
            for run, resume in (("first", "false"), ("retry", "true")):
                sets = [f"training.resume={resume}"] if stage == "train_encoder" else []
                assert shlex.split(task["rendered"][run]) == argv(stage, *sets)

        assert {t: v["upstream"] for t, v in update["tasks"].items()} == {
            s: daily[i - 1 : i] or ["lock"] for i, s in enumerate(daily)
        }
        for stage, task in update["tasks"].items():
            # first run: a week before it started; later: the day the last successful run started
            for run, since in (("first", "2026-10-08"), ("retry", "2026-10-13")):
                sets = [] if stage == "ingest" else ["recs.mode=incremental", f"recs.since={since}"]
                assert shlex.split(task["rendered"][run]) == argv(stage, *sets)

    # every rendered line, with --dry-run, loads its config (unknown keys and bad values fail here)
    for line in sorted(commands):
        script, *args = shlex.split(line)
        dry = subprocess.run(
            [script, "--dry-run", *args], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert dry.returncode == 0 and "spark-submit" in dry.stdout, line + "\n" + dry.stderr[-2000:]
