"""A trained model on the executors: a broadcast of its weights, built once per Python worker, on the
task's GPU when Spark assigned one.

The broadcast holds bytes and plain data (no pickled module): a token, the ``state_dict`` bytes, the
model's config dict and the import path of its class. :func:`worker_model` rebuilds the class from
the config, loads the weights (``weights_only=True``) and keeps one model per Python worker, so later
tasks of the same broadcast reuse it. Each task sets its torch threads (concurrent tasks must not
oversubscribe an executor's cores).
"""

from __future__ import annotations

import importlib
import io
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark import Broadcast
    from pyspark.sql import SparkSession

_MODELS: dict[str, Any] = {}  # per Python worker: the last broadcast's model, built once


def broadcast_model(spark: SparkSession, model: Any) -> Broadcast[tuple[str, bytes, dict[str, Any], str]]:
    """(token, state_dict bytes, config dict, class path) of ``model`` as a broadcast."""
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    cls = type(model)
    return spark.sparkContext.broadcast(
        (uuid.uuid4().hex, buf.getvalue(), model.cfg.to_dict(), f"{cls.__module__}:{cls.__qualname__}")
    )


def worker_model(value: tuple[str, bytes, dict[str, Any], str], device: str = "cpu") -> Any:
    """The broadcast model, built on first use in this Python worker and reused by later tasks, in eval
    mode. A worker keeps one model: a job that walks through several (evaluate_visual scores eight)
    does not pile them up in long-lived workers, or on their GPU."""
    import torch

    token, state, cfg, path = value
    key = f"{token}:{device}"
    if key not in _MODELS:
        _MODELS.clear()
        module, name = path.split(":")
        model = getattr(importlib.import_module(module), name).from_config(cfg)
        model.load_state_dict(torch.load(io.BytesIO(state), map_location=device, weights_only=True))
        _MODELS[key] = model.to(device).eval()
    return _MODELS[key]


def assigned_gpus() -> list[str]:
    """The GPU addresses Spark assigned to the running task (``TaskContext.resources()``, from the
    executor's discovery script and ``spark.task.resource.gpu.amount``); [] outside a task or when the
    job does not schedule GPUs."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    gpus = ctx.resources().get("gpu") if ctx is not None else None
    return list(gpus.addresses) if gpus is not None else []


def task_device(use_gpu: bool = True) -> str:
    """``cuda:<n>`` when this Spark task was assigned GPU n (and torch sees CUDA), else ``cpu``."""
    import torch

    if not use_gpu or not torch.cuda.is_available():
        return "cpu"
    gpus = assigned_gpus()
    return f"cuda:{gpus[0]}" if gpus else "cpu"


def task_setup(threads: int, use_gpu: bool = False) -> str:
    """What an inference task does first: its torch threads, then its device (see :func:`task_device`)."""
    import torch

    torch.set_num_threads(max(1, threads))
    return task_device(use_gpu)
