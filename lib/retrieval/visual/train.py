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

The worker (``visual.worker``) is the same shape as the encoder's and the reranker's: plain torch +
DDP, each rank reading its share of the groups through a feed, a checkpoint per epoch on rank 0,
``resume`` from the last one; no Spark inside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

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


def train_step(
    net: Any, opt: Any, imgs: np.ndarray, labels: np.ndarray, loss_fn: Callable[..., Any], device: str
) -> float:
    """One step of ``loss_fn`` (a loss of ``visual.losses``, arguments bound) on a P x K batch."""
    import torch

    from retrieval.visual.model import to_tensor

    emb = net(to_tensor(imgs, device))
    loss = loss_fn(emb, torch.as_tensor(labels, device=device))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())
