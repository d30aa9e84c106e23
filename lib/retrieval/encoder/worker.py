"""The function every training process of the encoder runs (TorchDistributor, torchrun, or this process).

Plain torch + DDP (gloo on CPU, nccl on GPU), built from the shared pieces of ``retrieval.training``:
each rank reads its own share of the training pairs (the feed: the same number of steps on every
rank, or DDP would hang at the all-reduce), rank 0 logs progress and writes a checkpoint after every
epoch, ``resume`` continues from the last one. The return value is the same on every rank
(TorchDistributor returns an arbitrary rank's), and everything that matters is written to storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class EncoderWorkerArgs:
    """What a training process needs, as plain data (crosses process boundaries via ``asdict``)."""

    examples: str  # parquet directory of training examples (spark_encoder.training_examples)
    model_dir: str  # models/encoder/<version>/: checkpoints/ and the final model land here
    tower: dict[str, Any]  # TowerConfig.to_dict()
    encoder: dict[str, Any]  # the `encoder` config section (epochs, batch_size, lr, temperature, queue_size)
    runtime: dict[str, Any]  # the stage's training runtime (config.runtime(cfg, "encoder"))
    seed: int = 0
    progress_s: float = 30.0  # seconds between progress lines (rank 0); 0 = the closing line of an epoch
    resume: bool = False  # continue from the last checkpoint (set on a retry)


def train_worker(args: dict[str, Any]) -> dict[str, Any]:
    """Runs one rank of the encoder's training; returns a summary (identical on every rank)."""
    from retrieval.config import EncoderSection, TrainingSection
    from retrieval.config.loader import from_dict
    from retrieval.encoder.model import OfferTower, TowerConfig, make_optimizers
    from retrieval.encoder.train import CandidateQueue, PairBatch, pair_batch, train_step
    from retrieval.training.checkpoints import begin, end_epoch, finish
    from retrieval.training.distributed import start_process, wrap
    from retrieval.training.feed import make_feed
    from retrieval.training.loop import run_epochs
    from retrieval.training.models import save_model

    a = EncoderWorkerArgs(**args)
    enc: EncoderSection = from_dict(EncoderSection, a.encoder)
    rt: TrainingSection = from_dict(TrainingSection, a.runtime)
    rank, world, local_rank, device = start_process(rt.use_gpu, rt.threads, a.seed)
    tower = TowerConfig.from_dict({**a.tower, "sparse": device == "cpu" and a.tower.get("sparse", True)})
    model = OfferTower(tower).to(device)
    net = wrap(model, world, local_rank, device)
    optimizers = make_optimizers(model, enc.lr)
    feed = make_feed(rt.feed, a.examples, enc.batch_size, pair_batch, rank=rank, world=world, seed=a.seed)
    start, history = begin(a.model_dir, model, optimizers, device, rank, a.resume)
    queue = CandidateQueue(enc.queue_size, tower.dim, device) if enc.queue_size else None

    def step(batch: PairBatch) -> tuple[float, dict[str, float]]:
        loss = train_step(net, optimizers, batch, enc.temperature, device, queue)
        return loss, {"examples": enc.batch_size}

    history = run_epochs(
        "encoder",
        enc.epochs,
        feed.epoch,
        step,
        units=("examples",),
        steps=feed.steps,
        start=start,
        history=history,
        on_epoch_end=lambda epoch, h: end_epoch(a.model_dir, epoch, model, optimizers, h, args, rank),
        progress_s=a.progress_s,
        rank=rank,
    )
    extra = {"train": {k: v for k, v in args.items() if k != "tower"}, "history": history}
    finish(rank, lambda: save_model(model.cpu(), a.model_dir, extra))
    return {"history": history, "world": world, "feed": rt.feed, "steps_per_epoch": feed.steps}
