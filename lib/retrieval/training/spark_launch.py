"""Running a training worker where the config says: TorchDistributor processes (on the driver, or
barrier tasks on the executors) or this process, with retries from the last checkpoint.

A worker is a top-level function ``worker(args: dict) -> summary dict`` that every process runs
(``training.distributed.start_process`` reads its rank from the environment); ``args`` is plain data,
so it crosses process boundaries as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from retrieval.config import TrainingSection
from retrieval.training.feed import require_feed

log = logging.getLogger(__name__)

Worker = Callable[[dict[str, Any]], dict[str, Any]]


def launch(worker: Worker, args: dict[str, Any], runtime: TrainingSection) -> dict[str, Any]:
    """Runs ``worker(args)`` in ``runtime.num_processes`` TorchDistributor processes, or in this process
    when there is one.

    When a process dies (a lost executor fails the whole barrier stage, and Spark does not retry a
    failed barrier result stage; a crash), it runs again, up to ``runtime.retries`` times, from the
    last epoch's checkpoint (``args["resume"] = True``). Then, with ``fallback_single`` and
    ``local_mode`` (the processes ran on the driver anyway), it finishes in this process from that
    checkpoint; on executors it raises instead (a cluster's driver is not sized to train the model).
    The summary says how it went: ``attempts``, and ``fallback`` when it fell back.
    """
    require_feed(runtime.feed)  # on the driver, before any process starts
    if runtime.num_processes <= 1:
        return _summary(worker(args))
    from pyspark.ml.torch.distributor import TorchDistributor

    for attempt in range(runtime.retries + 1):
        try:
            distributor = TorchDistributor(
                num_processes=runtime.num_processes, local_mode=runtime.local_mode, use_gpu=runtime.use_gpu
            )
            return {**_summary(distributor.run(worker, args)), "attempts": attempt + 1}
        except Exception as e:  # Py4JJavaError (a lost executor), RuntimeError (a crash)
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
            if attempt < runtime.retries:
                log.warning(
                    "training failed (%s); attempt %d of %d resumes from the last checkpoint",
                    error,
                    attempt + 2,
                    runtime.retries + 1,
                    exc_info=True,
                )
            elif runtime.fallback_single and runtime.local_mode:
                # Seen intermittently on 2-core CPU runs: heap corruption in gloo's sparse all-reduce
                # ("malloc(): unaligned tcache chunk detected") kills a rank at any step. Finish in one
                # process from the last checkpoint rather than lose the run; the metrics say so.
                log.warning(
                    "distributed training failed %d times (%s); finishing in one process",
                    attempt + 1,
                    error,
                    exc_info=True,
                )
                return {
                    **_summary(worker({**args, "resume": True})),
                    "attempts": attempt + 1,
                    "fallback": f"single process after {attempt + 1} failed distributed attempts: {error}",
                }
            else:
                raise
            args = {**args, "resume": True}
    raise AssertionError("not reached")  # pragma: no cover


def _summary(out: Any) -> dict[str, Any]:
    if not isinstance(out, dict):
        raise RuntimeError(f"the training processes returned {type(out).__name__}, not their summary")
    return out
