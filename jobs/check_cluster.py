"""check_cluster: what a cluster gives this project's tasks, checked before a long run on it.

    ./submit.sh check_cluster --config conf/cluster.yaml [--set spark.master=yarn ...]

First one task per task slot reports where it ran (host, executor directory), the Python and library
versions it imported, and the GPU addresses Spark assigned it (``TaskContext.resources()``: the
executors' discovery script and ``spark.task.resource.gpu.amount``). Then ``training.num_processes``
training processes start the way train_encoder starts them (TorchDistributor: barrier tasks on the
executors unless ``training.local_mode``), join one process group, sum a tensor across it, and report their
rank, ``CUDA_VISIBLE_DEVICES`` and the device training would use.

Fails, saying what differs, when an executor runs another Python or other library versions than the
driver (a shipped environment that did not arrive), or when GPUs are configured and a task got none.
Writes only ``_metrics/check_cluster.json``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from retrieval.cli import job_main
from retrieval.cluster_check import environment, mismatches, probe_rank
from retrieval.config import Config, runtime
from retrieval.spark_cluster_check import probe_task
from retrieval.training.spark_launch import launch


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    # the encoder's runtime, with no retry and no fallback: a failure here is what the check is for
    t, s = dataclasses.replace(runtime(cfg, "encoder"), retries=0, fallback_single=False), cfg.spark
    driver = environment()
    slots = max(1, spark.sparkContext.defaultParallelism)
    tasks = spark.sparkContext.parallelize(range(slots), slots).mapPartitions(probe_task).collect()
    ranks = launch(probe_rank, {"use_gpu": t.use_gpu}, t)
    problems = mismatches(driver, [*tasks, *ranks["ranks"]])
    if s.executor_gpus > 0:
        problems += [
            f"task {r['partition']} on {r['host']}:{r['cwd']} got no GPU (spark.executor_gpus={s.executor_gpus})"
            for r in tasks
            if not r["gpus"]
        ]
    if problems:
        raise RuntimeError(
            "the cluster does not run this project as the driver does:\n  " + "\n  ".join(problems)
        )
    executors = sorted({(r["host"], r["cwd"]) for r in tasks})
    summary = [
        f"driver: Python {driver['python']} ({driver['executable']}), master {spark.sparkContext.master}",
        f"{len(tasks)} tasks on {len(executors)} executors, the driver's Python and libraries on all:",
        *(
            f"  task {r['partition']}: {r['host']} {r['cwd']}  gpus {r['gpus'] or '-'}  device {r['device']}"
            for r in tasks
        ),
        f"{ranks['world']} training processes ({'on the driver' if t.local_mode else 'barrier tasks'}),"
        f" all-reduce {ranks['all_reduce']:g} (expected {ranks['world'] * (ranks['world'] + 1) / 2:g}):",
        *(
            f"  rank {r['rank']}: {r['host']} {r['cwd']}  CUDA_VISIBLE_DEVICES={r['cuda_visible_devices']}"
            f"  device {r['device']}"
            for r in ranks["ranks"]
        ),
    ]
    return {
        "rows_out": len(tasks),
        "driver": driver,
        "tasks": tasks,
        "executors": len(executors),
        "training": ranks,
        "summary": summary,
    }


if __name__ == "__main__":
    job_main("check_cluster", run, __doc__)
