"""check_cluster's Spark part: one probe task per task slot, reporting where it ran and what it got."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from retrieval.cluster_check import environment


def probe_task(_: Iterator[Any]) -> Iterator[dict[str, Any]]:
    """One Spark task: its environment and assigned GPUs (holds its slot for a moment, so that the
    probes spread over every slot instead of queueing on the first free one)."""
    from pyspark import TaskContext

    from retrieval.training.spark_inference import assigned_gpus, task_device

    time.sleep(1.0)
    ctx = TaskContext.get()
    yield {
        **environment(),
        "partition": ctx.partitionId() if ctx else -1,
        "gpus": assigned_gpus(),
        "device": task_device(True),
    }
