"""One training process, the way its launcher (TorchDistributor, torchrun, or none) started it:
device, threads, seed and process group from the environment; the DDP wrap; totals across ranks.

Plain torch: the same worker runs under TorchDistributor (local mode or barrier tasks on executors),
under ``torchrun``, or alone in this process (rank 0 of 1).
"""

from __future__ import annotations

import logging
import os
from typing import Any


def start_process(use_gpu: bool, threads: int, seed: int) -> tuple[int, int, int, str]:
    """Sets up one training process from the launcher's environment: its device, torch threads
    (0 = all cores) and seed (the same initial weights on every rank; DDP also broadcasts rank 0's),
    and the process group (nccl on GPU, gloo on CPU) when there are several ranks.
    Returns (rank, world, local_rank, device)."""
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not logging.getLogger().handlers:  # a launched process (torchrun, TorchDistributor): show progress
        logging.basicConfig(
            level=logging.INFO,
            format=f"%(asctime)s %(levelname)s rank {rank} %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # one line per CPU feature tried
    cuda = use_gpu and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    torch.set_num_threads(threads if threads > 0 else max(1, os.cpu_count() or 1))
    torch.manual_seed(seed)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return rank, world, local_rank, f"cuda:{local_rank}" if cuda else "cpu"


def wrap(model: Any, world: int, local_rank: int, device: str) -> Any:
    """``model`` in DistributedDataParallel when there are several ranks (on this rank's GPU when it
    has one), else ``model`` itself: what the training step calls."""
    if world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[local_rank] if device != "cpu" else None)


def epoch_totals(values: list[float], seconds: float) -> tuple[list[float], float]:
    """``values`` summed over every rank and the slowest rank's ``seconds``: the same figures on every
    rank (a single process: returned as they are)."""
    import torch
    import torch.distributed as dist

    totals = torch.tensor(values, dtype=torch.float64)
    slowest = torch.tensor([seconds], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(totals)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    return totals.tolist(), float(slowest[0])
