"""The jobs on a real Spark cluster: a standalone master and two 1-core workers on 127.0.0.1 (the
``standalone`` fixture), reached through ``./submit.sh`` as a user would.

- the whole pipeline on conf/test.yaml equals the local[2] run (``local_pipeline``) for the
  deterministic stages, table by table, and its trained models score within a stated tolerance;
- a worker killed (its whole process group: worker, executor, Python workers) in the middle of
  mine_pairs and of precompute_recs: the job still finishes, and its output equals the clean run's;
- GPU scheduling: fake GPUs from deploy/get_gpus_resources.sh reach the tasks and the training processes.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, submit
from retrieval import commit

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.slow]

# Tables that the same config and input make the same, wherever they are computed.
DETERMINISTIC = [
    "raw/offers",
    "raw/events",
    "truth/relevance",
    "truth/offer_product",
    "truth/examination",
    "offers",
    "events",
    "quarantine/offers",
    "quarantine/events",
    "pairs",
    "listings",
    "visual/images",
    "visual/quarantine",
    "visual/train_groups",
    "visual/test_queries",
]
# Trained models: another process layout (executors instead of driver-side processes) may change the
# order of floating-point sums, so their figures may move a little, not more.
TOLERANCE = {
    ("train_encoder", "recall_at_50", "encoder"): 0.05,
    ("precompute_recs", "recall_at_20_test_pairs", ""): 0.05,
    ("train_ranker", "ndcg_at_10", "xgb"): 0.05,
    ("train_ranker", "ndcg_at_10", "dnn_ndcg_loss2pp"): 0.05,
    ("evaluate_visual", "accuracy_at_5", "street"): 0.15,  # 78 test queries: one query is 0.013
}


# Columns that say when a row was written, not what it holds (a quarantined row's `ts`: README, Ingest).
WHEN_WRITTEN = {"quarantine/offers": {"ts"}, "quarantine/events": {"ts"}}


def rows(root: Path, table: str) -> list[tuple[Any, ...]]:
    """A table's rows as sorted tuples (lists as tuples, floats rounded to 9 significant digits),
    without the columns of WHEN_WRITTEN."""
    import pyarrow.parquet as pq

    def norm(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.9g}") if math.isfinite(v) else str(v)
        if isinstance(v, list):
            return tuple(norm(x) for x in v)
        if isinstance(v, dict):
            return tuple(sorted((k, norm(x)) for k, x in v.items()))
        return v

    t = pq.read_table(commit.resolve(str(root), table))
    cols = sorted(set(t.column_names) - WHEN_WRITTEN.get(table, set()))
    data = [t.column(c).to_pylist() for c in cols]
    return sorted((tuple(norm(v) for v in r) for r in zip(*data, strict=True)), key=repr)


def assert_same_table(a: Path, b: Path, table: str) -> None:
    ra, rb = rows(a, table), rows(b, table)
    assert len(ra) == len(rb), f"{table}: {len(ra)} rows vs {len(rb)}"
    diff = [i for i, (x, y) in enumerate(zip(ra, rb, strict=True)) if x != y]
    assert not diff, f"{table}: {len(diff)} rows differ, first: {ra[diff[0]]!r} vs {rb[diff[0]]!r}"


def metric(root: Path, stage: str, key: str, method: str) -> float:
    value = json.loads((root / "_metrics" / f"{stage}.json").read_text())[key]
    return float(value[method] if method else value)


def cluster_args(cluster: Any, root: Path, *extra: str) -> list[str]:
    """conf/test.yaml on the standalone cluster: training processes as barrier tasks on the executors
    (two processes for two 1-core workers: the barrier stage needs every slot)."""
    return [
        "--config",
        "conf/test.yaml",
        "--set",
        f"paths.root={root}",
        "--set",
        f"spark.master={cluster.url}",
        "--set",
        "training.local_mode=false",
        "--set",
        "visual.training.local_mode=false",
        "--set",  # start once both executors are there (standalone's default is 0: at once)
        "spark.conf.spark.scheduler.minRegisteredResourcesRatio=1.0",
        *extra,
    ]


def test_pipeline_on_the_cluster_equals_the_local_run(
    standalone: Any, local_pipeline: dict[str, Any], tmp_path: Path
) -> None:
    out = submit("pipeline", *cluster_args(standalone, tmp_path), timeout=1200)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert f"master {standalone.url}" in out.stdout or standalone.url in out.stdout
    local = local_pipeline["root"]
    for table in DETERMINISTIC:
        assert_same_table(local, tmp_path, table)
    # the training really ran as barrier tasks on both executors, not on the driver
    training = json.loads((tmp_path / "_metrics" / "train_encoder.json").read_text())["training"]
    assert training["world"] == 2 and "fallback" not in training
    for (stage, key, method), tol in TOLERANCE.items():
        a, b = metric(local, stage, key, method), metric(tmp_path, stage, key, method)
        assert abs(a - b) <= tol, f"{stage} {key} {method}: local {a:.4f}, cluster {b:.4f} (tolerance {tol})"


def copy_root(src: Path, dst: Path, tables: list[str]) -> None:
    for t in tables:
        shutil.copytree(src / t, dst / t)
    shutil.copytree(src / "_metrics", dst / "_metrics")


def driver_ui(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/applications{path}", timeout=2) as r:
        return json.loads(r.read().decode())


def long_running_executors(port: int, app: str, min_running_s: float) -> list[str]:
    """Executors running a task launched at least ``min_running_s`` ago (the driver's status store,
    same clock), longest first: a kill aimed at one is likelier to land in the middle of a task than
    one aimed at any busy executor, whose "active" task of tens of milliseconds, as the status store
    lags, was often over before the SIGKILL."""
    now = datetime.now(UTC)
    busy: dict[str, float] = {}
    for stage in driver_ui(port, f"/{app}/stages?status=active&details=true"):
        for task in (stage.get("tasks") or {}).values():
            if task.get("status") != "RUNNING" or task.get("executorId") in (None, "driver"):
                continue
            launched = datetime.strptime(task["launchTime"].replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
            running = (now - launched).total_seconds()
            busy[task["executorId"]] = max(running, busy.get(task["executorId"], 0.0))
    return [e for e, s in sorted(busy.items(), key=lambda kv: -kv[1]) if s >= min_running_s]


def run_and_kill_a_worker(
    cluster: Any, job: str, root: Path, min_jobs_done: int = 1, min_running_s: float = 0.5, attempts: int = 3
) -> str:
    """Runs ``job`` on the cluster and, once ``min_jobs_done`` of its Spark jobs have finished and an
    executor has been running a task for ``min_running_s``, kills that executor's worker (SIGKILL to
    its process group: worker, executor, Python workers). Returns the driver's output; asserts that
    the kill landed while the application ran and that Spark saw a running task lost. The tasks on
    conf/test.yaml's data last about a second, so a kill can still land just after the task it aimed
    at sent its result; then the executor was lost between tasks, and the job runs again on the same
    root (its output committed once more), up to ``attempts`` times."""
    output = ""
    for attempt in range(attempts):
        output, lost = _run_and_kill_once(
            cluster, job, root, root / f"_eventlog{attempt}", min_jobs_done, min_running_s
        )
        if lost:
            return output
    raise AssertionError(f"no task was lost with the worker in {attempts} runs of {job}:\n{output[-3000:]}")


def _run_and_kill_once(
    cluster: Any, job: str, root: Path, events: Path, min_jobs_done: int, min_running_s: float
) -> tuple[str, bool]:
    """One run of :func:`run_and_kill_a_worker`: (the driver's output, whether Spark saw a task lost
    with the worker, ``ExecutorLostFailure`` in its event log under ``events``)."""
    from retrieval.standalone import free_port

    ui = free_port(4050)
    events.mkdir()
    extra = [f"spark.conf.spark.ui.port={ui}", "spark.conf.spark.eventLog.enabled=true"]
    extra += [f"spark.conf.spark.eventLog.dir=file://{events}", "spark.conf.spark.eventLog.compress=false"]
    cmd = [
        str(REPO / "submit.sh"),
        job,
        *cluster_args(cluster, root, *(a for e in extra for a in ("--set", e))),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    output = ""
    try:
        deadline = time.monotonic() + 300
        while killed is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            try:
                apps = driver_ui(ui, "")
                if not apps:
                    continue
                app = apps[0]["id"]
                if len(driver_ui(ui, f"/{app}/jobs?status=succeeded")) < min_jobs_done:
                    continue
                busy = long_running_executors(ui, app, min_running_s)
            except (OSError, ValueError):  # not up yet, or "Spark is starting up" instead of JSON
                continue
            worker = cluster.worker_of_executor(app, busy[0]) if busy else None
            if worker is not None:
                cluster.kill_worker(worker)
                killed = worker
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        for i in range(len(cluster.workers)):
            cluster.restart_worker(i)
    assert killed is not None, f"{job} ended before a busy worker could be killed:\n{(output or '')[-3000:]}"
    assert proc.returncode == 0, output[-6000:]
    assert "Lost executor" in output, output[-6000:]
    log = "".join(f.read_text(encoding="utf-8", errors="replace") for f in events.rglob("events_*"))
    lost = [json.loads(line) for line in log.splitlines() if "ExecutorLostFailure" in line]
    assert all(e["Event"] == "SparkListenerTaskEnd" for e in lost), lost
    return output, bool(lost)


def test_a_worker_lost_in_the_middle_of_mine_pairs(
    standalone: Any, local_pipeline: dict[str, Any], tmp_path: Path
) -> None:
    local = local_pipeline["root"]
    copy_root(local, tmp_path, ["events", "truth/offer_product"])
    run_and_kill_a_worker(standalone, "mine_pairs", tmp_path)
    assert_same_table(local, tmp_path, "pairs")


def test_a_worker_lost_in_the_middle_of_precompute_recs(
    standalone: Any, local_pipeline: dict[str, Any], tmp_path: Path
) -> None:
    """The index is built on the cluster from the local run's embeddings (the same shards, byte for
    byte), then precompute_recs loses a worker: the recs equal the local run's."""
    local = local_pipeline["root"]
    copy_root(local, tmp_path, ["offers", "pairs", "embeddings", "truth/offer_product"])
    out = submit("build_index", *cluster_args(standalone, tmp_path), timeout=600)
    assert out.returncode == 0, out.stdout[-6000:]

    def manifest(root: Path) -> dict[str, Any]:
        m = json.loads(Path(commit.resolve(str(root), "index") or "", "manifest.json").read_text())
        return {k: m[k] for k in ("quantizer_sha256", "shards")}  # versions are named per build

    assert manifest(tmp_path) == manifest(local)
    run_and_kill_a_worker(standalone, "precompute_recs", tmp_path)
    assert_same_table(local, tmp_path, "recs")


def test_gpu_addresses_reach_the_tasks_and_the_training_processes(standalone: Any, tmp_path: Path) -> None:
    """Each worker advertises one fake GPU (RETRIEVAL_FAKE_GPUS=1 through deploy/get_gpus_resources.sh);
    with the GPU settings of conf/cluster.yaml every task is assigned one, and TorchDistributor hands
    it to its training process (CUDA_VISIBLE_DEVICES). No CUDA here, so the device stays cpu."""
    out = submit(
        "check_cluster",
        *cluster_args(
            standalone,
            tmp_path,
            "--set",
            "spark.executor_gpus=1",
            "--set",
            "spark.task_gpus=1",
            "--set",
            f"spark.gpu_discovery_script={REPO / 'deploy' / 'get_gpus_resources.sh'}",
            "--set",
            "training.use_gpu=true",
        ),
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-6000:]
    m = json.loads((tmp_path / "_metrics" / "check_cluster.json").read_text())
    assert m["executors"] == 2
    assert [t["gpus"] for t in m["tasks"]] == [["0"], ["0"]]
    ranks = m["training"]["ranks"]
    assert m["training"]["world"] == 2 and m["training"]["all_reduce"] == 3.0
    assert len({r["cwd"] for r in ranks}) == 2  # the barrier stage spans both workers
    assert [r["cuda_visible_devices"] for r in ranks] == ["0", "0"]
    assert all(r["device"] == "cpu" for r in ranks)
    # tasks and training processes run the submitted code (the --py-files zip), not an installed copy
    assert all(r["retrieval_from"].endswith(".zip") for r in [*m["tasks"], *ranks]), m


def test_a_worker_lost_while_the_encoder_trains(
    standalone: Any, local_pipeline: dict[str, Any], tmp_path: Path
) -> None:
    """Training is a barrier stage: a lost worker fails every process, and Spark does not retry a
    failed barrier result stage. train_encoder runs the training again from the last epoch's
    checkpoint (train.retries) once the worker is back, and finishes, distributed (no fallback)."""
    local = local_pipeline["root"]
    copy_root(local, tmp_path, ["offers", "pairs"])
    epochs = 12
    cmd = [
        str(REPO / "submit.sh"),
        "train_encoder",
        *cluster_args(
            standalone,
            tmp_path,
            "--set",
            f"encoder.epochs={epochs}",
            "--set",
            "training.fallback_single=false",
        ),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = False
    try:
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            done = list(tmp_path.glob("models/encoder/runs/*/checkpoints/epoch-*.pt"))
            if len(done) >= 2:  # two epochs done, the rest to go: a worker dies now
                standalone.kill_worker(1)
                killed = len(done) < epochs
                standalone.restart_worker(1)  # the retry's barrier stage needs both slots again
                break
            time.sleep(0.05)
        output, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
        standalone.restart_worker(1)
    assert killed, f"training ended before a worker could be killed:\n{output[-3000:]}"
    assert proc.returncode == 0, output[-6000:]
    training = json.loads((tmp_path / "_metrics" / "train_encoder.json").read_text())["training"]
    assert training["attempts"] == 2 and "fallback" not in training and training["world"] == 2
    assert [h["epoch"] for h in training["history"]] == list(range(epochs))
    assert "attempt 2 of 2 resumes from the last checkpoint" in output
    assert "resuming from" in output  # rank 0 of the second attempt loaded the checkpoint


def test_bytes_to_the_driver_do_not_grow_with_the_data(standalone: Any, tmp_path: Path) -> None:
    """The candidate path and mine_listings at two sizes on the cluster (driver and executors apart),
    with spark.driver.maxResultSize=4m: what every stage's tasks return to the driver for its actions
    (their result sizes, from the event log) stays put while the data doubles, a few KB per task aside;
    each broadcast join's build side stays under spark.sql.autoBroadcastJoinThreshold (2m)."""
    from benchmarks.driver_bytes import STAGES, measure

    # one epoch: what training returns to the driver does not depend on how long it trains
    got = measure(standalone.url, "conf/test.yaml", [0.5, 1.0], str(tmp_path), ["encoder.epochs=1"])
    for stage in STAGES:
        small, big = got["0.5x"][stage], got["1x"][stage]
        allowance = 4096 * max(big["tasks"] - small["tasks"], 0) + 64 * 1024
        assert big["result_bytes"] <= 1.25 * small["result_bytes"] + allowance, (stage, small, big)
        assert big["result_bytes"] < 4 * 2**20, (stage, big)
        # a broadcast join's build side passes through the driver, bounded by the join threshold
        assert big["broadcast_max_bytes"] <= 2 * 2**20, (stage, big)
