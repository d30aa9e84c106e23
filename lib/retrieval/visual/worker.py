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
    from retrieval.training.components import resolve
    from retrieval.training.run import TrainingRun
    from retrieval.visual.losses import LOSSES
    from retrieval.visual.model import ImageEncoder, ImageEncoderConfig
    from retrieval.visual.train import group_batch, train_step

    a = ImageEncoderWorkerArgs(**args)
    v: VisualSection = from_dict(VisualSection, a.visual)
    run = TrainingRun(
        args, a.model_dir, from_dict(TrainingSection, a.runtime), a.seed, a.progress_s, a.resume
    )
    cfg = ImageEncoderConfig(**a.model)
    model = ImageEncoder(cfg).to(run.device)
    net, opt = run.wrap(model), torch.optim.AdamW(model.parameters(), lr=v.lr, weight_decay=1e-4)
    loss_fn = resolve(v.loss.name, v.loss.args, LOSSES, "visual.loss")
    rng = np.random.default_rng([a.seed, run.rank, 17])
    to_batch = lambda t: group_batch(t, a.variant, v.views, cfg.size, rng, v.shop_views)  # noqa: E731
    feed = run.feed(a.groups, v.batch_products, to_batch, buffer_rows=2048)
    start, history = run.begin(model, [opt])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, v.epochs * feed.steps))
    with warnings.catch_warnings():  # resuming: the schedule catches up with the epochs done
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(start * feed.steps):
            sched.step()
    model.train()

    def step(batch: tuple[np.ndarray, np.ndarray]) -> tuple[float, dict[str, float]]:
        imgs, labels = batch
        loss = train_step(net, opt, imgs, labels, loss_fn, run.device)
        sched.step()
        return loss, {"images": len(imgs)}

    history = run.epochs(
        f"visual {a.variant}", v.epochs, feed, step, ("images",), model, [opt], start, history
    )
    return run.finish(model, {"variant": a.variant, "history": history}, feed)


def fit_image_encoder(cfg: Any, variant: str, groups: str, n_groups: int) -> dict[str, Any]:
    """Trains the image encoder of ``variant`` on the training groups under ``groups`` (``n_groups``
    products) where ``training`` / ``visual.training`` say, in models/visual/<variant>/runs/<config
    hash>/, published to models/visual/<variant>/<weights version>/; returns the workers' summary with
    ``model_dir`` and ``version`` (the published ones)."""
    import dataclasses

    from retrieval import commit, storage
    from retrieval.artifacts import content_version, publish_model, retain_models, run_dir
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
    identity = {**described, "groups": n_groups, "seed": cfg.seed}
    out_dir = storage.absolute(run_dir(cfg.paths.root, f"visual/{variant}", content_version(identity)))
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
    trained = launch(train_worker, dataclasses.asdict(args), rt)
    data = {"groups": commit.version_of(groups)}
    version, final = publish_model(
        cfg.paths.root, f"visual/{variant}", out_dir, {**identity, "data_version": data}
    )
    retain_models(cfg.paths.root, f"visual/{variant}", {version}, {out_dir})
    return {**trained, "model_dir": final, "version": version}
