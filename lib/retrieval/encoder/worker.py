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
    from retrieval.training.run import TrainingRun

    a = EncoderWorkerArgs(**args)
    enc: EncoderSection = from_dict(EncoderSection, a.encoder)
    run = TrainingRun(
        args, a.model_dir, from_dict(TrainingSection, a.runtime), a.seed, a.progress_s, a.resume
    )
    # sparse embedding gradients on CPU (gloo); dense ones for nccl, which has no sparse all-reduce
    tower = TowerConfig.from_dict({**a.tower, "sparse": run.device == "cpu" and a.tower.get("sparse", True)})
    model = OfferTower(tower).to(run.device)
    net, optimizers = run.wrap(model), make_optimizers(model, enc.lr)
    feed = run.feed(a.examples, enc.batch_size, pair_batch)
    start, history = run.begin(model, optimizers)
    queue = CandidateQueue(enc.queue_size, tower.dim, run.device) if enc.queue_size else None

    def step(batch: PairBatch) -> tuple[float, dict[str, float]]:
        loss = train_step(net, optimizers, batch, enc.temperature, run.device, queue, run.sync_gradients)
        return loss, {"examples": enc.batch_size}

    history = run.epochs("encoder", enc.epochs, feed, step, ("examples",), model, optimizers, start, history)
    extra = {"train": {k: v for k, v in args.items() if k != "tower"}, "history": history}
    return run.finish(model, extra, feed)
