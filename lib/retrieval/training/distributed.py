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
    has one), else ``model`` itself: what the training step calls. A model with sparse gradients is not
    wrapped: its gradients are averaged by :func:`average_gradients` instead."""
    if world <= 1 or has_sparse_gradients(model):
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[local_rank] if device != "cpu" else None)


def has_sparse_gradients(model: Any) -> bool:
    """Whether an embedding of ``model`` has sparse gradients (the encoder's tables on CPU)."""
    from torch import nn

    return any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse for m in model.modules())


def average_gradients(model: Any) -> None:
    """Every rank's gradients averaged in place, as DDP averages them, for a model with sparse ones.

    DDP all-reduces sparse gradients through gloo's sparse all-reduce, which corrupts the heap now
    and then on CPU ("malloc(): unaligned tcache chunk detected", a rank killed mid-epoch; seen on the
    embedded default's encoder twice in a row). Here a sparse gradient travels as its rows instead: the
    touched rows' indices and values are all-gathered (padded to the largest rank's), concatenated and
    coalesced (rows touched on several ranks are summed); dense gradients are all-reduced. Both are
    then divided by the world size."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() <= 1:
        return
    world = dist.get_world_size()
    for p in model.parameters():
        if p.grad is None:
            continue
        if not p.grad.is_sparse:
            dist.all_reduce(p.grad)
            p.grad.div_(world)
            continue
        g = p.grad.coalesce()
        idx, val = g.indices(), g.values()  # [1, nnz] row ids, [nnz, dim] rows
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([idx.shape[1]], dtype=torch.int64))
        top = int(max(int(n) for n in sizes))
        idx_pad = torch.zeros((idx.shape[0], top), dtype=idx.dtype)
        val_pad = torch.zeros((top, *val.shape[1:]), dtype=val.dtype)
        idx_pad[:, : idx.shape[1]], val_pad[: val.shape[0]] = idx, val
        all_idx = [torch.empty_like(idx_pad) for _ in range(world)]
        all_val = [torch.empty_like(val_pad) for _ in range(world)]
        dist.all_gather(all_idx, idx_pad)
        dist.all_gather(all_val, val_pad)
        parts_idx = [a[:, : int(n)] for a, n in zip(all_idx, sizes, strict=True)]
        parts_val = [a[: int(n)] for a, n in zip(all_val, sizes, strict=True)]
        # indices come from coalesced gradients of this shape: valid by construction, no check needed
        summed = torch.sparse_coo_tensor(
            torch.cat(parts_idx, 1), torch.cat(parts_val), g.shape, check_invariants=False
        ).coalesce()
        p.grad = summed / world


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
