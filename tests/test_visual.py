"""Visual search, pure parts: rendering, masks, blending, street photos, filtering, triplet loss, accuracy@K."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from retrieval.visual import images
from retrieval.visual.filtering import duplicate_of, groups, thumbnail, unusable_reason
from retrieval.visual.losses import LOSSES
from retrieval.visual.model import (
    ImageEncoder,
    ImageEncoderConfig,
    accuracy_at_k,
    embed,
    histogram_features,
    pixel_features,
    top_k,
)
from retrieval.visual.render import parse_ref, render, render_ref
from retrieval.visual.street import (
    StreetStyle,
    alpha_blend,
    natural_backgrounds,
    object_mask,
    poisson_blend,
    shop_augment,
    street_photo,
)


def test_render_is_deterministic_and_shots_differ_but_products_differ_more() -> None:
    a0, a1 = render_ref("synth://img/00000000000000aa/0"), render_ref("synth://img/00000000000000aa/1")
    b0 = render_ref("synth://img/00000000000000bb/0")
    assert a0.shape == (64, 64, 3) and a0.dtype == np.float32 and a0.min() >= 0 and a0.max() <= 1
    assert np.array_equal(a0, render(0xAA, 0))
    assert not np.array_equal(a0, a1)
    assert np.abs(a0 - a1).mean() < np.abs(a0 - b0).mean()
    assert parse_ref("synth://img/00000000000000aa/2") == (0xAA, 2)
    with pytest.raises(ValueError, match="not a synthetic image reference"):
        parse_ref("s3://bucket/x.jpg")


def _card() -> tuple[np.ndarray, np.ndarray]:
    """A red disc on a plain light-grey studio background, and its true mask."""
    v, u = np.mgrid[0:48, 0:48]
    truth = (v - 24) ** 2 + (u - 22) ** 2 < 12**2
    img = np.full((48, 48, 3), 0.95, np.float32)
    img[truth] = (0.8, 0.1, 0.1)
    return img, truth


def test_object_mask_finds_the_object() -> None:
    img, truth = _card()
    mask = object_mask(img)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.95
    assert not object_mask(np.full((32, 32, 3), 0.5, np.float32)).any()  # nothing to cut


def test_blending_keeps_the_object() -> None:
    img, truth = _card()
    rng = np.random.default_rng(0)
    bg = rng.uniform(0.2, 0.6, img.shape).astype(np.float32)
    bg = np.asarray(images.resize(bg, 48))
    soft = alpha_blend(img, bg, truth, sigma=1.0)
    from scipy import ndimage

    inner = ndimage.binary_erosion(truth, iterations=3)  # 3 px inside the edge: the object, unblended
    assert (soft[inner, 0] > 0.75).all()
    assert np.allclose(soft[0, 0], bg[0, 0])  # far from the object: the background
    margin = ndimage.binary_dilation(truth, iterations=3)  # the object and a rim of its background
    seamless = poisson_blend(img, bg, margin)
    assert np.allclose(seamless[~margin], bg[~margin])  # outside the mask: untouched
    # inside: the object's gradients on the background's level: the disc keeps its contrast to its rim
    disc, rim = seamless[truth], seamless[margin & ~truth]
    assert (disc[:, 0] - disc[:, 1]).mean() > 0.2  # still red (green clips at 0 on a dark background)
    assert rim[:, 1].mean() - disc[:, 1].mean() > 0.3  # darker green than the rim, as in the source

    # Poisson: the source's Laplacian at every pixel of the mask (the equation solved), where unclipped
    def lap(a: np.ndarray) -> np.ndarray:
        return 4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]

    ok = margin[1:-1, 1:-1] & (seamless[1:-1, 1:-1, 0] > 0) & (seamless[1:-1, 1:-1, 0] < 1)
    assert ok.sum() > 300
    assert np.abs(lap(seamless[..., 0])[ok] - lap(img[..., 0])[ok]).max() < 1e-4


def test_street_photos_deterministic_by_seed_and_styles_differ() -> None:
    shop = render(12345, 0, 64)
    styles = [StreetStyle(b, g) for b in ("seamless", "blur") for g in ("natural", "uniform")]
    for style in styles:
        a = street_photo(shop, np.random.default_rng(7), style)
        b = street_photo(shop, np.random.default_rng(7), style)
        c = street_photo(shop, np.random.default_rng(8), style)
        assert a.shape == shop.shape and np.array_equal(a, b) and not np.array_equal(a, c)
    aug = shop_augment(shop, np.random.default_rng(3))
    assert np.array_equal(aug, shop_augment(shop, np.random.default_rng(3)))
    with pytest.raises(ValueError):
        street_photo(shop, np.random.default_rng(0), StreetStyle("paste", "natural"))


def test_natural_backgrounds_train_and_test_are_disjoint_parts() -> None:
    train, test = natural_backgrounds("train"), natural_backgrounds("test")
    assert len(train) == len(test) >= 2
    for a, b in zip(train, test, strict=True):
        assert a.shape[0] == b.shape[0] and a.shape[1] > 2 * b.shape[1]


def test_filtering_blank_and_near_duplicates() -> None:
    blank = np.full((64, 64, 3), 0.97, np.float32)
    assert unusable_reason(blank) == "blank"
    assert unusable_reason(render(1, 0)) is None
    products = [render(k * 31 + 7, 0) for k in range(200)]
    # copies: re-encoded and resized uploads of three of them, under other ids
    copies = {
        1000 + i: images.jpeg_roundtrip(images.resize(images.resize(products[i], 50), 64), 50)
        for i in (3, 50, 51)
    }
    ids = [*range(200), *copies]
    thumbs = np.stack([thumbnail(x) for x in [*products, *copies.values()]])
    assert duplicate_of(ids, thumbs) == {
        1003: 3,
        1050: 50,
        1051: 51,
    }  # other shots of a product are not copies
    # union-find: a chain of near-duplicates collapses onto its smallest id
    assert groups([(3, 2), (2, 9), (7, 8)]) == {3: 2, 9: 2, 8: 7}


def _brute_force_triplet(emb: np.ndarray, labels: np.ndarray, margin: float, mining: str) -> float:
    d = np.sqrt(((emb[:, None] - emb[None]) ** 2).sum(-1))
    n = len(labels)
    losses = []
    for a in range(n):
        pos = [p for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [q for q in range(n) if labels[q] != labels[a]]
        if not pos or not neg:
            continue
        if mining == "batch_hard":
            losses.append(max(0.0, max(d[a, pos]) - min(d[a, neg]) + margin))
        elif mining == "batch_all":
            for p in pos:
                losses += [max(0.0, d[a, p] - d[a, q] + margin) for q in neg]
        elif mining == "batch_hard_soft":
            losses.append(float(np.log1p(np.exp(max(d[a, pos]) - min(d[a, neg])))))
        else:
            for p in pos:
                farther = [d[a, q] for q in neg if d[a, q] > d[a, p]]
                dn = min(farther) if farther else max(d[a, neg])
                losses.append(max(0.0, d[a, p] - dn + margin))
    if mining == "batch_all":  # averaged over the triplets that still violate the margin
        losses = [x for x in losses if x > 1e-12]
    return float(np.mean(losses)) if losses else 0.0


@pytest.mark.parametrize("mining", ["batch_all", "batch_hard", "batch_hard_soft", "semi_hard"])
def test_triplet_loss_against_brute_force(mining: str) -> None:
    loss = LOSSES[mining]
    margin = {} if mining == "batch_hard_soft" else {"margin": 0.3}  # the soft margin has none

    def triplet_loss(emb: torch.Tensor, labels: torch.Tensor, _: float, __: str) -> torch.Tensor:
        return loss(emb, labels, **margin)

    rng = np.random.default_rng(0)
    for trial in range(5):
        emb = rng.normal(size=(12, 4))
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        labels = rng.integers(0, 4, size=12)
        if trial == 4:
            labels[:] = np.arange(12)  # no positives: zero loss, still differentiable
        got = triplet_loss(torch.tensor(emb), torch.tensor(labels), 0.3, mining)
        assert got.item() == pytest.approx(_brute_force_triplet(emb, labels, 0.3, mining), abs=1e-6)
    x = torch.tensor(emb, requires_grad=True)
    triplet_loss(x, torch.tensor(rng.integers(0, 3, size=12)), 0.3, mining).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_accuracy_at_k_by_hand_and_top_k() -> None:
    gallery = np.eye(4, dtype=np.float32)
    g_labels = np.array([10, 10, 20, 30])  # product 10 has two gallery images
    queries = np.array([[0.1, 0.9, 0, 0], [0.05, 0, 0.2, 0.8], [0.9, 0.1, 0, 0.5]], np.float32)
    q_labels = np.array([10, 20, 30])
    ranked = top_k(queries, gallery, 3)
    assert ranked.tolist() == [[1, 0, 2], [3, 2, 0], [0, 3, 1]]
    assert accuracy_at_k(q_labels, g_labels, ranked, (1, 2, 3)) == {1: 1 / 3, 2: 1.0, 3: 1.0}


def test_encoder_and_baselines_shapes() -> None:
    imgs = np.stack([render(k, 0, 32) for k in range(5)])
    model = ImageEncoder(ImageEncoderConfig(dim=16, width=8, size=32))
    e = embed(model, imgs, batch_size=2)
    assert e.shape == (5, 16) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    for f in (pixel_features(imgs), histogram_features(imgs)):
        assert f.shape[0] == 5 and np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    # the raw-pixel baseline finds a product's other shot among others (a sanity floor)
    shots = np.stack([render(k, 1, 32) for k in range(5)])
    hits = accuracy_at_k(
        np.arange(5), np.arange(5), top_k(pixel_features(shots), pixel_features(imgs), 1), (1,)
    )
    assert hits[1] >= 0.6


def _groups(tmp_path: Any, n: int, size: int) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrieval.visual.data import train_group

    rows = [train_group(k, [render(k * 7919 + 1, s, size) for s in range(2)], 1, 1) for k in range(n)]
    out = tmp_path / "groups"
    out.mkdir()
    table = pa.Table.from_pylist(rows)
    for i in range(2):
        pq.write_table(table.slice(i * n // 2, n // 2), out / f"part-{i}.parquet")
    return str(out)


def test_training_worker_learns_checkpoints_and_resumes(tmp_path: Any) -> None:
    """The pure training loop in one process: loss falls, a checkpoint per epoch, resume goes on."""
    import dataclasses

    from retrieval.config import TrainingSection, VisualSection
    from retrieval.training.models import load_model
    from retrieval.visual.worker import ImageEncoderWorkerArgs, train_worker

    groups = _groups(tmp_path, 32, 32)
    visual = VisualSection(epochs=6, batch_products=8, views=3, lr=0.01)
    args = ImageEncoderWorkerArgs(
        groups=groups,
        model_dir=str(tmp_path / "model"),
        variant="street",
        model=ImageEncoderConfig(dim=16, width=8, size=32).to_dict(),
        visual=dataclasses.asdict(visual),
        runtime=dataclasses.asdict(TrainingSection(num_processes=1, threads=1)),
        progress_s=0,
    )
    out = train_worker(dataclasses.asdict(args))
    losses = [h["loss"] for h in out["history"]]
    assert len(losses) == 6 and out["steps_per_epoch"] == 4
    assert np.mean(losses[-2:]) < losses[0]
    assert sorted(p.name for p in (tmp_path / "model" / "checkpoints").glob("epoch-*.pt")) == [
        "epoch-0004.pt",
        "epoch-0005.pt",
    ]
    longer = dataclasses.asdict(dataclasses.replace(visual, epochs=7))
    again = train_worker(dataclasses.asdict(dataclasses.replace(args, visual=longer, resume=True)))
    assert [h["epoch"] for h in again["history"]] == list(range(7))  # epochs 0-5 from the checkpoint
    model = load_model(ImageEncoder, str(tmp_path / "model")).eval()
    e = embed(model, np.stack([render(1, 0, 32)]))
    assert e.shape == (1, 16)


def test_group_batch_draws_the_variant_styles(tmp_path: Any) -> None:
    import pyarrow.parquet as pq

    from retrieval.visual.train import group_batch

    table = pq.read_table(_groups(tmp_path, 4, 32))
    for variant in ("shop_only", "street", "blur"):
        imgs, labels = group_batch(table, variant, 3, 32, np.random.default_rng(0))
        assert imgs.shape == (16, 32, 32, 3) and labels.tolist() == [
            i for i in table["label"].to_pylist() for _ in range(4)
        ]
    with pytest.raises(ValueError, match="unknown visual variant"):
        group_batch(table, "night", 3, 32, np.random.default_rng(0))
