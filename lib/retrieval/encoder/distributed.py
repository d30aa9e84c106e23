"""Distributed training of the encoder: the function every TorchDistributor process runs.

Plain torch + DDP (gloo on CPU, nccl on GPU); no Spark inside, so the same function runs under
``TorchDistributor`` (local mode or barrier tasks on executors) or ``torchrun``. Each rank reads its own
share of the examples (``feed.py``: the same number of steps on every rank, or DDP would hang at the
all-reduce), rank 0 logs progress and writes a checkpoint after every epoch (model, optimizers, epoch,
config), and ``resume`` continues from the last one. The return value is the same on every rank
(TorchDistributor returns an arbitrary rank's), and everything that matters is written to storage.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from retrieval import storage
from retrieval.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class TrainArgs:
    """What a training process needs, as plain data (crosses process boundaries via ``asdict``)."""

    examples: str  # parquet directory of training examples (spark_encoder.training_examples)
    model_dir: str  # models/encoder/<version>/: checkpoints/ and the final model land here
    encoder: dict[str, Any] = field(default_factory=dict)  # EncoderConfig.to_dict()
    feed: str = "arrow"  # arrow | petastorm
    epochs: int = 3
    batch_size: int = 1024
    lr: float = 0.01
    temperature: float = 0.05
    seed: int = 0
    resume: bool = False
    use_gpu: bool = False
    threads: int = 1  # torch threads per process (TorchDistributor sets OMP_NUM_THREADS=1)
    progress_s: float = 30.0  # seconds between progress lines (rank 0); 0 = one line per epoch
    queue_size: int = 0  # cross-batch negatives per rank (train.CandidateQueue); 0 = in-batch only


KEEP_CHECKPOINTS = 2  # per model directory; older epochs' checkpoints are deleted


def _checkpoints(model_dir: str) -> list[str]:
    return [
        f
        for f in storage.list_files(storage.join(model_dir, "checkpoints"), ".pt")
        if f.rsplit("/", 1)[-1].startswith("epoch-")
    ]


def save_checkpoint(
    model_dir: str, epoch: int, model: Any, optimizers: list[Any], history: list[Any], args: dict[str, Any]
) -> None:
    """``checkpoints/epoch-NNNN.pt`` under ``model_dir`` (a path or URI: rank 0 may run on any
    executor, so it writes to the configured storage, not to a disk the driver shares): model,
    optimizers, epoch, history, config. Atomic: a crash mid-save leaves the previous one intact."""
    state = {
        "model": model.state_dict(),
        "optimizers": [o.state_dict() for o in optimizers],
        "epoch": epoch,
        "history": json.dumps(history),
        "config": json.dumps(args),
    }
    storage.write_torch_atomic(storage.join(model_dir, "checkpoints", f"epoch-{epoch:04d}.pt"), state)
    # The last KEEP_CHECKPOINTS only: with the optimizers' state a checkpoint is ~3x the model (the
    # encoder's on conf/test.yaml: 457 MB), and a resume needs the last one.
    for old in _checkpoints(model_dir):
        if _epoch_of(old) <= epoch - KEEP_CHECKPOINTS:
            storage.remove(old)


def _epoch_of(checkpoint: str) -> int:
    return int(checkpoint.rsplit("/", 1)[-1].removeprefix("epoch-").removesuffix(".pt"))


def begin(
    model_dir: str, model: Any, optimizers: list[Any], device: str, rank: int, resume: bool
) -> tuple[int, list[Any]]:
    """Where a training run starts: with ``resume``, from the last checkpoint in ``model_dir``
    (:func:`resume_checkpoint`); without, from scratch, and rank 0 first deletes the checkpoints an
    earlier run of the same model version left there (the version is a hash of the config and the
    data size, so a rerun finds them), so that a retry resumes this run, not that one."""
    import torch.distributed as dist

    if resume:
        return resume_checkpoint(model_dir, model, optimizers, device, rank)
    if rank == 0:
        storage.remove_tree(storage.join(model_dir, "checkpoints"))
    if dist.is_initialized():
        dist.barrier()
    return 0, []


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


def finish(rank: int, save_final: Any) -> None:
    """Rank 0 saves the final model (``save_final()``); then the process group closes on every rank."""
    import torch.distributed as dist

    if rank == 0:
        save_final()
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


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


def launch(
    worker: Any,
    args: dict[str, Any],
    num_processes: int,
    local_mode: bool,
    use_gpu: bool,
    retries: int = 0,
    fallback_single: bool = False,
) -> dict[str, Any]:
    """Runs a training worker in ``num_processes`` TorchDistributor processes (local, or barrier tasks on
    the executors), or in this process when there is one.

    When a process dies (a lost executor fails the whole barrier stage, and Spark does not retry a
    failed barrier result stage; a crash), it runs again, up to ``retries`` times, from the last
    epoch's checkpoint (``resume``). Then, with ``fallback_single`` and ``local_mode`` (the processes
    ran on the driver anyway), it finishes in this process from that checkpoint; on executors it
    raises instead (a cluster's driver is not sized to train the model). The summary says how it
    went: ``attempts``, and ``fallback`` when it fell back.
    """
    if num_processes <= 1:
        return _summary(worker(args))
    from pyspark.ml.torch.distributor import TorchDistributor

    for attempt in range(retries + 1):
        try:
            distributor = TorchDistributor(
                num_processes=num_processes, local_mode=local_mode, use_gpu=use_gpu
            )
            return {**_summary(distributor.run(worker, args)), "attempts": attempt + 1}
        except Exception as e:  # Py4JJavaError (a lost executor), RuntimeError (a crash)
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
            if attempt < retries:
                log.warning(
                    "training failed (%s); attempt %d of %d resumes from the last checkpoint",
                    error,
                    attempt + 2,
                    retries + 1,
                    exc_info=True,
                )
            elif fallback_single and local_mode:
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


def start_process(use_gpu: bool, threads: int, seed: int) -> tuple[int, int, int, str]:
    """Sets up one training process from the launcher's environment (TorchDistributor, torchrun):
    its device, torch threads and seed (the same initial weights on every rank; DDP also broadcasts
    rank 0's), and the process group (nccl on GPU, gloo on CPU) when there are several ranks.
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
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return rank, world, local_rank, f"cuda:{local_rank}" if cuda else "cpu"


def wrap(model: Any, world: int, local_rank: int, device: str) -> Any:
    """``model`` in DistributedDataParallel when there are several ranks (on this rank's GPU when it
    has one), else ``model`` itself: what the training step calls."""
    if world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[local_rank] if device != "cpu" else None)


def train_worker(args: dict[str, Any]) -> dict[str, Any]:
    """Runs one rank of distributed training; returns a summary (identical on every rank)."""

    from retrieval.encoder.feed import make_feed
    from retrieval.encoder.model import EncoderConfig, OfferTower, make_optimizers, save
    from retrieval.encoder.train import CandidateQueue, train_step

    a = TrainArgs(**args)
    rank, world, local_rank, device = start_process(a.use_gpu, a.threads, a.seed)
    cuda = device != "cpu"
    enc = EncoderConfig.from_dict({**a.encoder, "sparse": not cuda and a.encoder.get("sparse", True)})
    model = OfferTower(enc).to(device)
    net = wrap(model, world, local_rank, device)
    optimizers = make_optimizers(model, a.lr)
    feed = make_feed(a.feed, a.examples, a.batch_size, rank=rank, world=world, seed=a.seed)
    start, history = begin(a.model_dir, model, optimizers, device, rank, a.resume)
    queue = CandidateQueue(a.queue_size, enc.dim, device) if a.queue_size else None
    for epoch in range(start, a.epochs):
        t0, losses = time.perf_counter(), []
        progress = Progress(
            f"encoder epoch {epoch + 1}/{a.epochs}", feed.steps, "steps", a.progress_s, log, enabled=rank == 0
        )
        with progress:
            for batch in feed.epoch(epoch):
                losses.append(train_step(net, optimizers, batch, a.temperature, device, queue))
                progress.update(1, loss=f"{losses[-1]:.4f}")
        # The same figures on every rank: the mean loss over all ranks' steps, the slowest rank's time.
        totals, seconds = epoch_totals([sum(losses), float(len(losses))], time.perf_counter() - t0)
        history.append(
            {
                "epoch": epoch,
                "loss": round(totals[0] / totals[1], 6),
                "steps": len(losses),
                "examples_per_s": round(totals[1] * a.batch_size / seconds, 1),
            }
        )
        end_epoch(a.model_dir, epoch, model, optimizers, history, args, rank)
    finish(
        rank,
        lambda: save(
            model.cpu(),
            a.model_dir,
            {"train": {k: v for k, v in args.items() if k != "encoder"}, "history": history},
        ),
    )
    return {"history": history, "world": world, "feed": a.feed, "steps_per_epoch": feed.steps}
