"""The function every training process of the image encoder runs (TorchDistributor, torchrun, or this
process): the same shape as the encoder's and the reranker's workers, built from ``retrieval.training``.

Each rank reads its share of the training groups (one row per product) through a feed and draws P x K
batches from them (``visual.train.group_batch``), with a cosine learning-rate schedule over the whole
run (a resumed run catches it up).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ImageEncoderWorkerArgs:
    """What a training process needs, as plain data (crosses process boundaries via ``asdict``)."""

    groups: str  # parquet directory of training groups (one row per product)
    model_dir: str  # models/visual/<variant>/<version>/
    variant: str  # which street photos the views come from (visual.train.VARIANTS)
    model: dict[str, Any]  # ImageEncoderConfig.to_dict()
    visual: dict[
        str, Any
    ]  # the `visual` config section (epochs, batch_products, views, shop_views, lr, loss)
    runtime: dict[str, Any] = field(
        default_factory=dict
    )  # the training runtime (config.runtime(cfg, "visual"))
    seed: int = 0
    progress_s: float = 30.0
    resume: bool = False


def train_worker(args: dict[str, Any]) -> dict[str, Any]:
    """Runs one rank of image-encoder training; returns a summary (identical on every rank)."""
    import torch

    from retrieval.config import TrainingSection, VisualSection
    from retrieval.config.loader import from_dict
    from retrieval.training.checkpoints import begin, end_epoch, finish
    from retrieval.training.components import resolve
    from retrieval.training.distributed import start_process, wrap
    from retrieval.training.feed import make_feed
    from retrieval.training.loop import run_epochs
    from retrieval.training.models import save_model
    from retrieval.visual.losses import LOSSES
    from retrieval.visual.model import ImageEncoder, ImageEncoderConfig
    from retrieval.visual.train import group_batch, train_step

    a = ImageEncoderWorkerArgs(**args)
    v: VisualSection = from_dict(VisualSection, a.visual)
    rt: TrainingSection = from_dict(TrainingSection, a.runtime)
    rank, world, local_rank, device = start_process(rt.use_gpu, rt.threads, a.seed)
    cfg = ImageEncoderConfig(**a.model)
    model = ImageEncoder(cfg).to(device)
    net = wrap(model, world, local_rank, device)
    opt = torch.optim.AdamW(model.parameters(), lr=v.lr, weight_decay=1e-4)
    loss_fn = resolve(v.loss.name, v.loss.args, LOSSES, "visual.loss")
    rng = np.random.default_rng([a.seed, rank, 17])
    feed = make_feed(
        rt.feed,
        a.groups,
        v.batch_products,
        lambda t: group_batch(t, a.variant, v.views, cfg.size, rng, v.shop_views),
        rank=rank,
        world=world,
        seed=a.seed,
        buffer_rows=2048,
    )
    start, history = begin(a.model_dir, model, [opt], device, rank, a.resume)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, v.epochs * feed.steps))
    with warnings.catch_warnings():  # resuming: the schedule catches up with the epochs done
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(start * feed.steps):
            sched.step()
    model.train()

    def step(batch: tuple[np.ndarray, np.ndarray]) -> tuple[float, dict[str, float]]:
        imgs, labels = batch
        loss = train_step(net, opt, imgs, labels, loss_fn, device)
        sched.step()
        return loss, {"images": len(imgs)}

    history = run_epochs(
        f"visual {a.variant}",
        v.epochs,
        feed.epoch,
        step,
        units=("images",),
        steps=feed.steps,
        start=start,
        history=history,
        on_epoch_end=lambda epoch, h: end_epoch(a.model_dir, epoch, model, [opt], h, args, rank),
        progress_s=a.progress_s,
        rank=rank,
    )
    finish(rank, lambda: save_model(model.cpu(), a.model_dir, {"variant": a.variant, "history": history}))
    return {"history": history, "world": world, "feed": rt.feed, "steps_per_epoch": feed.steps}


def fit_image_encoder(cfg: Any, variant: str, groups: str, n_groups: int) -> dict[str, Any]:
    """Trains the image encoder of ``variant`` on the training groups under ``groups`` (``n_groups``
    products) where ``training`` / ``visual.training`` say, into models/visual/<variant>/<version>/;
    returns the workers' summary with ``model_dir`` and ``version``."""
    import dataclasses

    from retrieval import storage
    from retrieval.artifacts import content_version, model_dir
    from retrieval.config import runtime
    from retrieval.training.spark_launch import launch
    from retrieval.visual.model import ImageEncoderConfig

    v, rt = cfg.visual, runtime(cfg, "visual")
    model = ImageEncoderConfig(dim=v.dim, width=v.width, size=v.size).to_dict()
    hyper = {k: getattr(v, k) for k in ("epochs", "batch_products", "views", "shop_views", "lr", "per_style")}
    described = {
        "model": model,
        "variant": variant,
        **hyper,
        "loss": dataclasses.asdict(v.loss),
        "feed": rt.feed,
    }
    version = content_version({**described, "groups": n_groups, "seed": cfg.seed})
    out_dir = storage.absolute(model_dir(cfg.paths.root, f"visual/{variant}", version))
    args = ImageEncoderWorkerArgs(
        groups=storage.absolute(groups),
        model_dir=out_dir,
        variant=variant,
        model=model,
        visual=dataclasses.asdict(v),
        runtime=dataclasses.asdict(rt),
        seed=cfg.seed,
        progress_s=cfg.progress_s,
        resume=rt.resume,
    )
    return {**launch(train_worker, dataclasses.asdict(args), rt), "model_dir": out_dir, "version": version}
