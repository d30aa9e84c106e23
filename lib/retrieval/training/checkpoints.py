"""A checkpoint per epoch (rank 0 writes, every rank waits), resume from the last one, the final save.

A checkpoint is ``<model_dir>/checkpoints/epoch-NNNN.pt``: the model's and the optimizers' state, the
epoch, the history so far and the worker's arguments. ``model_dir`` is a path or URI: rank 0 may run
on any executor, so it writes to the configured storage, not to a disk the driver shares.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from retrieval import commit, storage

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2  # per model directory; older epochs' checkpoints are deleted


def _checkpoints(model_dir: str) -> list[str]:
    return [
        f
        for f in storage.list_files(storage.join(model_dir, "checkpoints"), ".pt")
        if f.rsplit("/", 1)[-1].startswith("epoch-")
    ]


def _epoch_of(checkpoint: str) -> int:
    return int(checkpoint.rsplit("/", 1)[-1].removeprefix("epoch-").removesuffix(".pt"))


def save_checkpoint(
    model_dir: str, epoch: int, model: Any, optimizers: list[Any], history: list[Any], args: dict[str, Any]
) -> None:
    """``checkpoints/epoch-NNNN.pt`` under ``model_dir``, atomic: a crash mid-save leaves the previous
    one intact. Then the checkpoints older than the last ``KEEP_CHECKPOINTS`` go."""
    state = {
        "model": model.state_dict(),
        "optimizers": [o.state_dict() for o in optimizers],
        "epoch": epoch,
        "history": json.dumps(history),
        "config": json.dumps(args),
    }
    storage.write_torch_atomic(storage.join(model_dir, "checkpoints", f"epoch-{epoch:04d}.pt"), state)
    commit.crash_point("after_checkpoint")  # the kill-anywhere test: a training process dies mid-run
    # With the optimizers' state a checkpoint is ~3x the model (the encoder's on conf/test.yaml:
    # 457 MB), and a resume needs the last one only.
    for old in _checkpoints(model_dir):
        if _epoch_of(old) <= epoch - KEEP_CHECKPOINTS:
            storage.remove(old)


def resume_checkpoint(
    model_dir: str, model: Any, optimizers: list[Any], device: str, rank: int
) -> tuple[int, list[Any]]:
    """Loads the last checkpoint into ``model`` and ``optimizers``: (first epoch to run, history so far);
    (0, []) when there is none."""
    done = _checkpoints(model_dir)
    if not done:
        return 0, []
    state = storage.read_torch(done[-1], map_location=device)
    model.load_state_dict(state["model"])
    for opt, s in zip(optimizers, state["optimizers"], strict=True):
        opt.load_state_dict(s)
    if rank == 0:
        log.info("resuming from %s (epoch %d done)", done[-1], int(state["epoch"]))
    return int(state["epoch"]) + 1, json.loads(state["history"])


def begin(
    model_dir: str, model: Any, optimizers: list[Any], device: str, rank: int, resume: bool
) -> tuple[int, list[Any]]:
    """Where a training run starts: with ``resume``, from the last checkpoint in ``model_dir``; without,
    from scratch, and rank 0 first deletes the checkpoints an earlier run of the same model version left
    there (the version is a hash of the config and the data size, so a rerun finds them), so that a
    retry resumes this run, not that one."""
    import torch.distributed as dist

    if resume:
        return resume_checkpoint(model_dir, model, optimizers, device, rank)
    if rank == 0:
        storage.remove_tree(storage.join(model_dir, "checkpoints"))
    if dist.is_initialized():
        dist.barrier()
    return 0, []


def end_epoch(
    model_dir: str,
    epoch: int,
    model: Any,
    optimizers: list[Any],
    history: list[Any],
    args: dict[str, Any],
    rank: int,
) -> None:
    """Rank 0 writes the epoch's checkpoint; every rank waits for it (a resume then finds it)."""
    import torch.distributed as dist

    if rank == 0:
        save_checkpoint(model_dir, epoch, model, optimizers, history, args)
    if dist.is_initialized():
        dist.barrier()


def finish(rank: int, save_final: Callable[[], None]) -> None:
    """Rank 0 saves the final model (``save_final()``); then the process group closes on every rank."""
    import torch.distributed as dist

    if rank == 0:
        save_final()
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
