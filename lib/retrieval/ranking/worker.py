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
    from retrieval.training.components import resolve
    from retrieval.training.run import TrainingRun

    a = RerankerWorkerArgs(**args)
    run = TrainingRun(
        args, a.model_dir, from_dict(TrainingSection, a.runtime), a.seed, a.progress_s, a.resume
    )
    cfg = RerankerConfig.from_dict(a.reranker)
    model = Reranker(cfg, np.asarray(a.mean), np.asarray(a.std)).to(run.device)
    net, opt = run.wrap(model), torch.optim.Adam(model.parameters(), lr=a.lr)
    n_feat, dim = len(cfg.features), cfg.text_dim
    # buckets of similar slate length: a step costs what its longest slate costs (L^2)
    feed = run.feed(
        a.slates,
        a.batch_size,
        lambda t: slate_batch(t, n_feat, dim),
        buffer_rows=4096,
        bucket=lambda t: t.column("n").to_numpy(),
    )
    start, history = run.begin(model, [opt])
    loss_fn = resolve(a.loss["name"], a.loss.get("args", {}), LOSSES, "ranker.losses[]")
    model.train()

    def step(batch: SlateBatch) -> tuple[float, dict[str, float]]:
        x, q, t, y, valid = to_tensors(batch, run.device)
        target = ips_labels(y, x[..., a.ips_feature], a.ips_clip) if a.ips_feature >= 0 else y
        loss = loss_fn(net(x, q, t, valid), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach()), {"slates": len(batch), "offers": int(valid.sum())}

    name = f"reranker {a.loss['name']}"
    history = run.epochs(name, a.epochs, feed, step, ("slates", "offers"), model, [opt], start, history)
    return run.finish(model, {"loss": a.loss, "history": history}, feed)


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
