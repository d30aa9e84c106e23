"""Distributed training of the DNN reranker: the function every TorchDistributor process runs.

The same shape as the encoder's worker (``encoder.distributed``): plain torch + DDP (gloo on CPU,
nccl on GPU), each rank reading its share of the slates through the encoder's feeds (Arrow or
Petastorm; the same number of steps on every rank), a checkpoint per epoch on rank 0, ``resume``
from the last one. No Spark inside, so it also runs under ``torchrun`` or in one process.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from retrieval.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class RerankArgs:
    slates: str  # parquet directory of training slates (spark_ranker.write_slates)
    model_dir: str
    reranker: dict[str, Any] = field(default_factory=dict)  # RerankerConfig.to_dict()
    mean: list[float] = field(default_factory=list)  # feature standardisation (training slates)
    std: list[float] = field(default_factory=list)
    loss: str = "ndcg_loss2pp"
    loss_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the loss
    ips_feature: int = -1  # index of the propensity among the features: inverse-propensity gains; -1 = off
    ips_clip: float = 0.1  # propensities below this count as this (bounds the weights' variance)
    feed: str = "arrow"
    epochs: int = 4
    batch_size: int = 32  # slates per step and rank
    lr: float = 0.001
    seed: int = 0
    resume: bool = False
    use_gpu: bool = False
    threads: int = 1
    progress_s: float = 30.0  # seconds between progress lines (rank 0); 0 = one line per epoch


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
    import numpy as np
    import torch

    from retrieval.encoder.distributed import (
        begin,
        end_epoch,
        epoch_totals,
        finish,
        start_process,
        wrap,
    )
    from retrieval.encoder.feed import make_feed
    from retrieval.ranking.dnn import Reranker, RerankerConfig, loss_value, save, slate_batch, to_tensors

    a = RerankArgs(**args)
    rank, world, local_rank, device = start_process(a.use_gpu, a.threads, a.seed)
    cfg = RerankerConfig.from_dict(a.reranker)
    model = Reranker(cfg, np.asarray(a.mean), np.asarray(a.std)).to(device)
    net = wrap(model, world, local_rank, device)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    n_feat, dim = len(cfg.features), cfg.text_dim
    feed = make_feed(
        a.feed,
        a.slates,
        a.batch_size,
        rank=rank,
        world=world,
        seed=a.seed,
        buffer_rows=4096,
        to_batch=lambda t: slate_batch(t, n_feat, dim),
        bucket=lambda t: t.column("n").to_numpy(),  # a step costs what its longest slate costs (L^2)
    )
    start, history = begin(a.model_dir, model, [opt], device, rank, a.resume)
    for epoch in range(start, a.epochs):
        model.train()
        t0, losses, offers = time.perf_counter(), [], 0
        progress = Progress(
            f"reranker {a.loss} epoch {epoch + 1}/{a.epochs}",
            feed.steps,
            "steps",
            a.progress_s,
            log,
            enabled=rank == 0,
        )
        for batch in feed.epoch(epoch):
            x, q, t, y, valid = to_tensors(batch, device)
            target = ips_labels(y, x[..., a.ips_feature], a.ips_clip) if a.ips_feature >= 0 else y
            loss = loss_value(a.loss, net(x, q, t, valid), target, **a.loss_args)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            offers += int(valid.sum())
            progress.update(1, loss=f"{losses[-1]:.4f}")
        progress.emit()
        totals, seconds = epoch_totals(
            [sum(losses), float(len(losses)), float(offers)], time.perf_counter() - t0
        )
        history.append(
            {
                "epoch": epoch,
                "loss": round(totals[0] / max(totals[1], 1.0), 6),
                "steps": len(losses),
                "slates_per_s": round(totals[1] * a.batch_size / seconds, 1),
                "offers_per_s": round(totals[2] / seconds, 1),
            }
        )
        end_epoch(a.model_dir, epoch, model, [opt], history, args, rank)
    finish(rank, lambda: save(model.cpu(), a.model_dir, {"loss": a.loss, "history": history}))
    return {"history": history, "world": world, "feed": a.feed, "steps_per_epoch": feed.steps}
