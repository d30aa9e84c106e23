"""check_cluster: what a cluster gives this project's tasks, checked before a long run on it.

    ./submit.sh check_cluster --config conf/cluster.yaml [--set spark.master=yarn ...]

First one task per task slot reports where it ran (host, executor directory), the Python and library
versions it imported, and the GPU addresses Spark assigned it (``TaskContext.resources()``: the
executors' discovery script and ``spark.task.resource.gpu.amount``). Then ``train.num_processes``
training processes start the way train_encoder starts them (TorchDistributor: barrier tasks on the
executors unless ``train.local_mode``), join one process group, sum a tensor across it, and report their
rank, ``CUDA_VISIBLE_DEVICES`` and the device training would use.

Fails, saying what differs, when an executor runs another Python or other library versions than the
driver (a shipped environment that did not arrive), or when GPUs are configured and a task got none.
Writes only ``_metrics/check_cluster.json``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from retrieval.config import Config
from retrieval.encoder.distributed import launch

LIBRARIES = ("retrieval", "pyspark", "torch", "numpy", "pyarrow", "faiss", "xgboost", "petastorm")


def environment() -> dict[str, Any]:
    """This process: host, working directory, Python and library versions."""
    import importlib
    import socket
    import warnings

    versions = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in LIBRARIES:
            try:
                mod = importlib.import_module(name)
                versions[name] = str(getattr(mod, "__version__", "?"))
            except Exception as e:  # reported, not raised: the point is to see it
                versions[name] = f"missing ({type(e).__name__}: {e})"
    import retrieval

    return {
        "retrieval_from": os.path.dirname(os.path.dirname(retrieval.__file__)),  # a zip, or site-packages
        "host": socket.gethostname(),
        "cwd": os.getcwd(),  # standalone: <worker work dir>/<app>/<executor id>; YARN: the container
        "python": ".".join(map(str, sys.version_info[:3])),
        "executable": sys.executable,
        "libraries": versions,
    }


def probe_task(_: Iterator[Any]) -> Iterator[dict[str, Any]]:
    """One Spark task: its environment and assigned GPUs (holds its slot for a moment, so that the
    probes spread over every slot instead of queueing on the first free one)."""
    from pyspark import TaskContext

    from retrieval.encoder.spark_embed import assigned_gpus, task_device

    time.sleep(1.0)
    ctx = TaskContext.get()
    yield {
        **environment(),
        "partition": ctx.partitionId() if ctx else -1,
        "gpus": assigned_gpus(),
        "device": task_device(True),
    }


def probe_rank(args: dict[str, Any]) -> dict[str, Any]:
    """One training process (TorchDistributor): joins the process group as training does, checks an
    all-reduce across it, and gathers every rank's report (the same return value on every rank)."""
    import torch
    import torch.distributed as dist

    from retrieval.encoder.distributed import start_process

    rank, world, local_rank, device = start_process(bool(args["use_gpu"]), 1, 0)
    mine = {
        "rank": rank,
        "local_rank": local_rank,
        "device": device,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        **environment(),
    }
    reports = [mine]
    total = float(rank + 1)
    if dist.is_initialized():
        t = torch.tensor([total], dtype=torch.float64)
        dist.all_reduce(t)
        total = float(t[0])
        reports = [dict[str, Any]() for _ in range(world)]
        dist.all_gather_object(reports, mine)
        dist.barrier()
        dist.destroy_process_group()
    return {"world": world, "all_reduce": total, "ranks": sorted(reports, key=lambda r: r["rank"])}


def mismatches(driver: dict[str, Any], reports: list[dict[str, Any]]) -> list[str]:
    """What an executor (or training process) imported differently from the driver."""
    out = []
    py = driver["python"].rsplit(".", 1)[0]
    for r in reports:
        where = f"{r['host']}:{r['cwd']}"
        if r["python"].rsplit(".", 1)[0] != py:
            out.append(
                f"{where} runs Python {r['python']} ({r['executable']}), the driver {driver['python']}"
            )
        if os.path.basename(r["retrieval_from"]) != os.path.basename(driver["retrieval_from"]):
            out.append(
                f"{where} imports retrieval from {r['retrieval_from']}, the driver {driver['retrieval_from']}"
            )
        for name, version in driver["libraries"].items():
            if r["libraries"].get(name) != version:
                out.append(f"{where} has {name} {r['libraries'].get(name)}, the driver {version}")
    return sorted(set(out))


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    t, s = cfg.train, cfg.spark
    driver = environment()
    slots = max(1, spark.sparkContext.defaultParallelism)
    tasks = spark.sparkContext.parallelize(range(slots), slots).mapPartitions(probe_task).collect()
    ranks = launch(probe_rank, {"use_gpu": t.use_gpu}, t.num_processes, t.local_mode, t.use_gpu)
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
    from retrieval.cli import job_main

    job_main("check_cluster", run, __doc__)
