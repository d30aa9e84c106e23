"""The function every training process of the DNN reranker runs, and the one way to start it.

The same shape as the encoder's worker: plain torch + DDP (gloo on CPU, nccl on GPU) built from
``retrieval.training``, each rank reading its share of the slates through a feed (the same number of
steps on every rank), a checkpoint per epoch on rank 0, ``resume`` from the last one. No Spark
inside, so it also runs under ``torchrun`` or in one process. :func:`fit_reranker` is what
train_ranker and eval_ltr call: one reranker, one loss, trained where the runtime says.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrieval.config import LossSpec, TrainingSection


@dataclass
class RerankerWorkerArgs:
    """What a training process needs, as plain data (crosses process boundaries via ``asdict``)."""

    slates: str  # parquet directory of training slates (spark_ranker.build_slates, benchmark.write_slates)
    model_dir: str
    reranker: dict[str, Any]  # RerankerConfig.to_dict()
    mean: list[float]  # feature standardisation (training slates)
    std: list[float]
    loss: dict[str, Any]  # {name, args}: a loss of ranking.losses.LOSSES and its keyword arguments
    epochs: int
    batch_size: int  # slates per step and rank
    lr: float
    runtime: dict[str, Any] = field(
        default_factory=dict
    )  # the training runtime (config.runtime(cfg, "ranker"))
    ips_feature: int = -1  # index of the propensity among the features: inverse-propensity gains; -1 = off
    ips_clip: float = 0.1  # propensities below this count as this (bounds the weights' variance)
    seed: int = 0
    progress_s: float = 30.0  # seconds between progress lines (rank 0); 0 = the closing line of an epoch
    resume: bool = False


def ips_labels(y: Any, propensity: Any, clip: float) -> Any:
    """Graded labels whose gains are divided by the examination propensity: 2^y' - 1 = (2^y - 1) / p.

    Under the position-based click model a click's expected gain is p x the relevance's gain, so this
    is the inverse-propensity-scored (unbiased) gain of every loss built on 2^y - 1 (NDCGLoss2++,
    NeuralNDCG); padding (-1) stays padding.
    """
    import torch

    p = propensity.clamp(min=clip)
    y_ips = torch.log2(1.0 + (torch.pow(2.0, y.clamp(min=0).float()) - 1.0) / p)
    return torch.where(y >= 0, y_ips, y.float())


def train_worker(args: dict[str, Any]) -> dict[str, Any]:
    """Runs one rank of reranker training; returns a summary (identical on every rank)."""
    import torch

    from retrieval.config.loader import from_dict
    from retrieval.ranking.dnn import Reranker, RerankerConfig, SlateBatch, slate_batch, to_tensors
    from retrieval.ranking.losses import LOSSES
    from retrieval.training.checkpoints import begin, end_epoch, finish
    from retrieval.training.components import resolve
    from retrieval.training.distributed import start_process, wrap
    from retrieval.training.feed import make_feed
    from retrieval.training.loop import run_epochs
    from retrieval.training.models import save_model

    a = RerankerWorkerArgs(**args)
    rt: TrainingSection = from_dict(TrainingSection, a.runtime)
    rank, world, local_rank, device = start_process(rt.use_gpu, rt.threads, a.seed)
    cfg = RerankerConfig.from_dict(a.reranker)
    model = Reranker(cfg, np.asarray(a.mean), np.asarray(a.std)).to(device)
    net = wrap(model, world, local_rank, device)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    n_feat, dim = len(cfg.features), cfg.text_dim
    feed = make_feed(
        rt.feed,
        a.slates,
        a.batch_size,
        lambda t: slate_batch(t, n_feat, dim),
        rank=rank,
        world=world,
        seed=a.seed,
        buffer_rows=4096,
        bucket=lambda t: t.column("n").to_numpy(),  # a step costs what its longest slate costs (L^2)
    )
    start, history = begin(a.model_dir, model, [opt], device, rank, a.resume)
    loss_name = a.loss["name"]
    loss_fn = resolve(loss_name, a.loss.get("args", {}), LOSSES, "ranker.losses[]")
    model.train()

    def step(batch: SlateBatch) -> tuple[float, dict[str, float]]:
        x, q, t, y, valid = to_tensors(batch, device)
        target = ips_labels(y, x[..., a.ips_feature], a.ips_clip) if a.ips_feature >= 0 else y
        loss = loss_fn(net(x, q, t, valid), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach()), {"slates": len(batch), "offers": int(valid.sum())}

    history = run_epochs(
        f"reranker {loss_name}",
        a.epochs,
        feed.epoch,
        step,
        units=("slates", "offers"),
        steps=feed.steps,
        start=start,
        history=history,
        on_epoch_end=lambda epoch, h: end_epoch(a.model_dir, epoch, model, [opt], h, args, rank),
        progress_s=a.progress_s,
        rank=rank,
    )
    finish(rank, lambda: save_model(model.cpu(), a.model_dir, {"loss": a.loss, "history": history}))
    return {"history": history, "world": world, "feed": rt.feed, "steps_per_epoch": feed.steps}


def fit_reranker(
    slates: str,
    model_dir: str,
    reranker: dict[str, Any],
    stats: tuple[np.ndarray, np.ndarray],
    loss: LossSpec,
    optim: tuple[int, int, float],
    runtime: TrainingSection,
    seed: int,
    progress_s: float = 30.0,
    ips_feature: int = -1,
) -> dict[str, Any]:
    """Trains one reranker on the slates under ``slates`` into ``model_dir`` (TorchDistributor processes
    or this process, as ``runtime`` says); returns the workers' summary.

    Args:
        reranker: ``RerankerConfig.to_dict()``; stats: the features' (mean [F], std [F]);
        optim: (epochs, slates per step and process, learning rate).
    """
    from retrieval.training.spark_launch import launch

    epochs, batch_size, lr = optim
    args = RerankerWorkerArgs(
        slates=slates,
        model_dir=model_dir,
        reranker=reranker,
        mean=stats[0].tolist(),
        std=stats[1].tolist(),
        loss=dataclasses.asdict(loss),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        runtime=dataclasses.asdict(runtime),
        ips_feature=ips_feature,
        seed=seed,
        progress_s=progress_s,
        resume=runtime.resume,
    )
    return launch(train_worker, dataclasses.asdict(args), runtime)
