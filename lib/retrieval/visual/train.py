"""Training the image encoder with triplet loss: the batches, and the function every training process runs.

Training data is one row per training product (``visual/train_groups``, written by ``visual_pairs``):
``label`` (the product), ``shop`` (its de-duplicated shop photos, PNG) and one list of synthetic street
photos (JPEG) per style, ``street_<blend>_<background>``. A batch takes P products and K images of
each, so that every anchor has positives and negatives in the batch (P x K sampling): one shop photo
and K - 1 "views" of the product, drawn from the columns of the variant being trained:

- ``shop_only``: views are augmented shop photos (crop, flip, colour, blur): no street synthesis;
- ``street``: street photos of every style; the ablations train on a subset of the styles:
  ``seamless`` / ``blur`` (one blending method, both backgrounds), ``natural_bg`` / ``uniform_bg``
  (one background, both blends).

The worker is the same shape as the encoder's and the reranker's (``encoder.distributed``): plain
torch + DDP, each rank reading its share of the groups through the encoder's Arrow or Petastorm feed,
a checkpoint per epoch on rank 0, ``resume`` from the last one; no Spark inside.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrieval.progress import Progress

log = logging.getLogger(__name__)

STYLES = ("seamless_natural", "seamless_uniform", "blur_natural", "blur_uniform")
VARIANTS: dict[str, tuple[str, ...]] = {
    "shop_only": (),
    "street": STYLES,
    "seamless": ("seamless_natural", "seamless_uniform"),
    "blur": ("blur_natural", "blur_uniform"),
    "natural_bg": ("seamless_natural", "blur_natural"),
    "uniform_bg": ("seamless_uniform", "blur_uniform"),
}


def style_column(style: str) -> str:
    return f"street_{style}"


def group_batch(
    table: Any, variant: str, views: int, size: int, rng: np.random.Generator, shop_views: int = 0
) -> tuple:
    """P product rows -> (images (P * (1 + views), size, size, 3) float32, labels (P * (1 + views),)).

    The first ``shop_views`` views of a product are augmented shop photos in every variant, the rest
    street photos of the variant's styles (``shop_only``: all augmented)."""
    from retrieval.visual.images import decode
    from retrieval.visual.street import shop_augment

    if variant not in VARIANTS:
        raise ValueError(f"unknown visual variant {variant!r}; known: {sorted(VARIANTS)}")
    labels = table.column("label").to_pylist()
    shops = table.column("shop").to_pylist()
    pools = [table.column(style_column(s)).to_pylist() for s in VARIANTS[variant]]
    imgs, out_labels = [], []
    for i, label in enumerate(labels):
        shot = [decode(b, size) for b in shops[i]]
        imgs.append(shot[int(rng.integers(len(shot)))])
        pool = [b for p in pools for b in p[i]]
        for v in range(views):
            if pool and v >= shop_views:
                view = decode(pool[int(rng.integers(len(pool)))], size)
                imgs.append(view[:, ::-1] if rng.random() < 0.5 else view)
            else:
                imgs.append(shop_augment(shot[int(rng.integers(len(shot)))], rng))
        out_labels += [label] * (1 + views)
    return np.ascontiguousarray(np.stack(imgs)), np.asarray(out_labels, dtype=np.int64)


@dataclass
class VisualArgs:
    """What a training process needs, as plain data (crosses process boundaries via ``asdict``)."""

    groups: str  # parquet directory of training groups (one row per product)
    model_dir: str  # models/visual/<variant>/<version>/
    variant: str = "street"
    model: dict[str, Any] = field(default_factory=dict)  # VisualConfig.to_dict()
    feed: str = "arrow"
    epochs: int = 4
    batch_products: int = 32  # P products per step and rank
    views: int = 3  # K - 1 views per product besides its shop photo
    shop_views: int = 0  # of which augmented shop photos in every variant (see group_batch)
    lr: float = 0.002
    margin: float = 0.2
    mining: str = "batch_all"  # batch_all | batch_hard | batch_hard_soft | semi_hard
    seed: int = 0
    resume: bool = False
    use_gpu: bool = False
    threads: int = 1
    progress_s: float = 30.0


def train_step(net: Any, opt: Any, imgs: np.ndarray, labels: np.ndarray, a: VisualArgs, device: str) -> float:
    import torch

    from retrieval.visual.model import to_tensor, triplet_loss

    emb = net(to_tensor(imgs, device))
    loss = triplet_loss(emb, torch.as_tensor(labels, device=device), a.margin, a.mining)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def train_worker(args: dict[str, Any]) -> dict[str, Any]:
    """Runs one rank of image-encoder training; returns a summary (identical on every rank)."""
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
    from retrieval.visual.model import ImageEncoder, VisualConfig

    a = VisualArgs(**args)
    rank, world, local_rank, device = start_process(a.use_gpu, a.threads, a.seed)
    cfg = VisualConfig(**a.model)
    model = ImageEncoder(cfg).to(device)
    net = wrap(model, world, local_rank, device)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    rng = np.random.default_rng([a.seed, rank, 17])
    feed = make_feed(
        a.feed,
        a.groups,
        a.batch_products,
        rank=rank,
        world=world,
        seed=a.seed,
        buffer_rows=2048,
        to_batch=lambda t: group_batch(t, a.variant, a.views, cfg.size, rng, a.shop_views),
    )
    start, history = begin(a.model_dir, model, [opt], device, rank, a.resume)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, a.epochs * feed.steps))
    with warnings.catch_warnings():  # resuming: the schedule catches up with the epochs done
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(start * feed.steps):
            sched.step()
    for epoch in range(start, a.epochs):
        model.train()
        t0, losses = time.perf_counter(), []
        progress = Progress(
            f"visual {a.variant} epoch {epoch + 1}/{a.epochs}",
            feed.steps,
            "steps",
            a.progress_s,
            log,
            enabled=rank == 0,
        )
        for imgs, labels in feed.epoch(epoch):
            losses.append(train_step(net, opt, imgs, labels, a, device))
            sched.step()
            progress.update(1, loss=f"{losses[-1]:.4f}")
        progress.emit()
        totals, seconds = epoch_totals([sum(losses), float(len(losses))], time.perf_counter() - t0)
        images = totals[1] * a.batch_products * (1 + a.views)
        history.append(
            {
                "epoch": epoch,
                "loss": round(totals[0] / max(totals[1], 1.0), 6),
                "steps": len(losses),
                "images_per_s": round(images / seconds, 1),
            }
        )
        end_epoch(a.model_dir, epoch, model, [opt], history, args, rank)
    finish(rank, lambda: save(model.cpu(), a.model_dir, {"variant": a.variant, "history": history}))
    return {"history": history, "world": world, "feed": a.feed, "steps_per_epoch": feed.steps}


def save(model: Any, path_dir: str, extra: dict[str, Any] | None = None) -> None:
    """``state_dict.pt`` + ``config.json`` under a directory path or URI (any filesystem; the config last)."""
    from retrieval import storage

    storage.write_torch_atomic(storage.join(path_dir, "state_dict.pt"), model.state_dict())
    storage.write_json_atomic(
        storage.join(path_dir, "config.json"), {"model": model.cfg.to_dict(), **(extra or {})}
    )


def load(path_dir: str, map_location: str = "cpu") -> Any:
    from retrieval import storage
    from retrieval.visual.model import ImageEncoder, VisualConfig

    cfg = VisualConfig(**storage.read_json(storage.join(path_dir, "config.json"))["model"])
    model = ImageEncoder(cfg)
    model.load_state_dict(storage.read_torch(storage.join(path_dir, "state_dict.pt"), map_location))
    return model.eval()
