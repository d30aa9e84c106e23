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
    model_dir: str  # the run directory: checkpoints/ and one directory per trained tower land here
    tower: dict[str, Any]  # TowerConfig.to_dict()
    encoder: dict[
        str, Any
    ]  # the `encoder` config section (epochs, batch_size, lr, temperature, negatives ...)
    runtime: dict[str, Any]  # the stage's training runtime (config.runtime(cfg, "encoder"))
    seed: int = 0
    progress_s: float = 30.0  # seconds between progress lines (rank 0); 0 = the closing line of an epoch
    resume: bool = False  # continue from the last checkpoint (set on a retry)
    pool: str = ""  # mixed negatives: parquet of the uniform pool (spark_encoder.uniform_pool)
    catalogue: int = 0  # mixed negatives: offers in the catalogue the pool was drawn from


def towers(tower: dict[str, Any], baseline: bool) -> dict[str, dict[str, Any]]:
    """The towers a run trains, by the name their directory and metrics take: the encoder, and with
    ``baseline`` the content-only ``content_trained`` beside it (the same tower without ids)."""
    out = {"encoder": tower}
    if baseline:
        out["content_trained"] = {**tower, "use_id": False}
    return out


def train_worker(args: dict[str, Any]) -> dict[str, Any]:
    """Runs one rank of the encoder's training; returns a summary (identical on every rank). Rank 0
    saves each tower under ``<model_dir>/<name>/`` (:func:`towers`)."""
    from retrieval import storage
    from retrieval.config import EncoderSection, TrainingSection
    from retrieval.config.loader import from_dict
    from retrieval.encoder.model import TowerConfig, TowerSet, make_optimizers
    from retrieval.encoder.train import PairBatch, make_negatives, pair_batch, train_step
    from retrieval.training.models import save_model
    from retrieval.training.run import TrainingRun

    a = EncoderWorkerArgs(**args)
    enc: EncoderSection = from_dict(EncoderSection, a.encoder)
    run = TrainingRun(
        args, a.model_dir, from_dict(TrainingSection, a.runtime), a.seed, a.progress_s, a.resume
    )
    # sparse embedding gradients on CPU (gloo); dense ones for nccl, which has no sparse all-reduce
    sparse = run.device == "cpu" and a.tower.get("sparse", True)
    cfgs = {
        n: TowerConfig.from_dict({**t, "sparse": sparse}) for n, t in towers(a.tower, enc.baseline).items()
    }
    model = TowerSet(cfgs).to(run.device)
    net, optimizers = run.wrap(model), make_optimizers(model, enc.lr)
    feed = run.feed(a.examples, enc.batch_size, pair_batch)
    start, history = run.begin(model, optimizers)
    pool = load_pool(a, enc, run.rank) if enc.negatives == "mixed" else None
    dim = next(iter(cfgs.values())).dim
    negatives = make_negatives(
        enc.negatives, list(cfgs), dim, run.device, model, enc.queue_size, enc.queue_momentum, pool
    )

    def step(batch: PairBatch) -> tuple[float, dict[str, float]]:
        loss = train_step(net, optimizers, batch, enc.temperature, run.device, negatives, run.sync_gradients)
        return loss, {"examples": enc.batch_size}

    history = run.epochs("encoder", enc.epochs, feed, step, ("examples",), model, optimizers, start, history)
    extra = {"train": {k: v for k, v in args.items() if k != "tower"}, "history": history}

    def save() -> None:
        model.cpu()
        for name in cfgs:
            save_model(model.tower(name), storage.join(a.model_dir, name), extra)

    return run.finish(model, extra, feed, save)


def load_pool(a: EncoderWorkerArgs, enc: Any, rank: int) -> Any:
    """The uniform pool of mixed negatives (``encoder.negatives.UniformPool``) from ``a.pool``.

    Raises:
        ValueError: no pool was given (train_encoder writes one: ``spark_encoder.uniform_pool``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrieval import storage
    from retrieval.encoder.negatives import UniformPool
    from retrieval.encoder.train import features_of
    from retrieval.training.feed import parquet_files

    if not a.pool:
        raise ValueError(
            "encoder.negatives=mixed needs the uniform pool (EncoderWorkerArgs.pool); none given"
        )
    parts = []
    for uri in parquet_files(a.pool):
        fs, path = storage.filesystem(uri)
        parts.append(pq.read_table(path, filesystem=fs))
    table = pa.concat_tables(parts)
    return UniformPool(
        features_of(table),
        table.column("offer_id").to_numpy().astype("int64"),
        table.column("unigram_log_q").to_numpy().astype("float32"),
        a.catalogue,
        enc.uniform_negatives,
        enc.batch_size,
        seed=a.seed * 1009 + rank,
    )
