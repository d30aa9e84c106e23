"""Benchmark: choosing the visual training recipe on validation products carved from training, never on
the test queries.

    .venv/bin/python -m benchmarks.visual_recipe [--root work/local] [--config conf/local.yaml]
        [--grid "variant=street,blur,uniform_bg epochs=6,12"] [--seeds 1] [--out benchmarks/results/visual_recipe.json]

Reads the training groups ``visual_pairs`` wrote under ``--root`` (``visual/train_groups``: each
training product's shop photos and its synthetic street photos of four styles) and holds out
``--valid-share`` of the training products by hash. Their shop photos are the validation gallery and
one of their street photos each (any style, training backgrounds) a query: the same task as
``evaluate_visual``'s, on products the candidate models never train on. Every setting trains the
image encoder in this process, with the worker's loop (``visual.train.group_batch``, ``train_step``,
AdamW and a cosine schedule), on the other training products, and is scored by accuracy@5 beside the
raw-pixel and colour-histogram baselines on the same queries. Settings are tried one axis at a time
from the configured defaults (each axis keeps the best value of the ones before it). The held-out
test products (``visual/test_queries``, ``visual/images`` split test) are never read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import typing
import zlib
from typing import Any

import numpy as np
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lib"))

from retrieval import commit, config  # noqa: E402
from retrieval.config.loader import check_value  # noqa: E402


def load_groups(root: str) -> Any:
    import pyarrow.parquet as pq

    uri = commit.resolve(root, "visual/train_groups")
    if uri is None:
        raise SystemExit(f"no visual/train_groups under {root}: run visual_pairs first")
    return pq.read_table(uri)


def carve(groups: Any, share: float, seed: int) -> tuple[Any, Any]:
    """(training rows, validation rows): products held out by a hash of (seed, label)."""
    import pyarrow as pa

    labels = groups.column("label").to_pylist()
    held = [zlib.crc32(f"{seed}:{lab}".encode()) % 10_000 < share * 10_000 for lab in labels]
    mask = pa.array(held)
    return groups.filter(pa.compute.invert(mask)), groups.filter(mask)


def validation_set(valid: Any, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(gallery images, gallery labels, query images, query labels): every shop photo of the validation
    products, and one street photo of each, its style drawn at random."""
    from retrieval.visual.images import decode
    from retrieval.visual.train import STYLES, style_column

    rng = np.random.default_rng(seed)
    g, gl, q, ql = [], [], [], []
    labels = valid.column("label").to_pylist()
    shops = valid.column("shop").to_pylist()
    pools = [valid.column(style_column(s)).to_pylist() for s in STYLES]
    for i, label in enumerate(labels):
        for b in shops[i]:
            g.append(decode(b, size))
            gl.append(label)
        pool = [b for p in pools for b in p[i]]
        q.append(decode(pool[int(rng.integers(len(pool)))], size))
        ql.append(label)
    return np.stack(g), np.asarray(gl), np.stack(q), np.asarray(ql)


def accuracy(q: np.ndarray, ql: np.ndarray, g: np.ndarray, gl: np.ndarray) -> dict[str, float]:
    from retrieval.visual.model import accuracy_at_k, top_k

    acc = accuracy_at_k(ql, gl, top_k(q, g, 5))
    return {"at_1": round(acc[1], 4), "at_5": round(acc[5], 4)}


def train_and_score(train: Any, data: tuple, v: Any, variant: str, seed: int) -> dict[str, Any]:
    """Trains ``variant`` with the worker's loop on ``train`` and scores it on the validation set."""
    import torch

    from retrieval.training.components import resolve
    from retrieval.visual.losses import LOSSES
    from retrieval.visual.model import ImageEncoder, ImageEncoderConfig, embed
    from retrieval.visual.train import group_batch, train_step

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 17])
    model = ImageEncoder(ImageEncoderConfig(dim=v.dim, width=v.width, size=v.size))
    opt = torch.optim.AdamW(model.parameters(), lr=v.lr, weight_decay=1e-4)
    loss_fn = resolve(v.loss.name, v.loss.args, LOSSES, "visual.loss")
    steps = max(1, train.num_rows // v.batch_products)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, v.epochs * steps))
    t0, losses = time.perf_counter(), []
    model.train()
    for _ in range(v.epochs):
        order = rng.permutation(train.num_rows)
        for s in range(steps):
            rows = train.take(order[s * v.batch_products : (s + 1) * v.batch_products])
            imgs, labels = group_batch(rows, variant, v.views, v.size, rng, v.shop_views)
            losses.append(train_step(model, opt, imgs, labels, loss_fn, "cpu"))
            sched.step()
    g, gl, q, ql = data
    scored = accuracy(embed(model, q), ql, embed(model, g), gl)
    return {
        **scored,
        "last_loss": round(float(np.mean(losses[-steps:])), 4),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="work/local")
    ap.add_argument("--config", default="conf/local.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--grid", default="variant=street,blur,uniform_bg epochs=6,12,20 lr=0.002,0.004")
    ap.add_argument("--valid-share", type=float, default=0.25)
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per setting (mean reported)")
    ap.add_argument("--out", default="benchmarks/results/visual_recipe.json")
    args = ap.parse_args(argv)
    cfg = config.load(args.config, args.set)
    groups = load_groups(args.root)
    train, valid = carve(groups, args.valid_share, cfg.seed)
    data = validation_set(valid, cfg.visual.size, cfg.seed)
    from retrieval.visual.model import histogram_features, pixel_features

    g, gl, q, ql = data
    baselines = {
        "pixels": accuracy(pixel_features(q), ql, pixel_features(g), gl),
        "histogram": accuracy(histogram_features(q), ql, histogram_features(g), gl),
    }
    best_baseline = max(b["at_5"] for b in baselines.values())
    print(f"{train.num_rows} training products, {valid.num_rows} validation products ({len(g)} shop photos)")
    print("baselines accuracy@5: " + ", ".join(f"{k} {b['at_5']:.4f}" for k, b in baselines.items()))
    axes = [(a.split("=")[0], a.split("=")[1].split(",")) for a in args.grid.split()]
    current: dict[str, Any] = {"variant": "street"}
    tried: list[dict[str, Any]] = []
    done: dict[str, list[dict[str, Any]]] = {}
    for key, values in axes:
        best: tuple[float, Any] = (-1.0, None)
        for raw in values:
            setting = dict(current)
            if key == "variant":
                setting["variant"] = raw
            else:
                hint = typing.get_type_hints(type(cfg.visual))[key]
                setting[key] = check_value(f"visual.{key}", yaml.safe_load(raw), hint)
            key_of = json.dumps(setting, sort_keys=True)
            if key_of not in done:  # an axis' current value was tried on the axis before
                v = dataclasses.replace(cfg.visual, **{k: x for k, x in setting.items() if k != "variant"})
                done[key_of] = [
                    train_and_score(train, data, v, setting["variant"], cfg.seed + i)
                    for i in range(args.seeds)
                ]
            runs = done[key_of]
            at5 = round(float(np.mean([r["at_5"] for r in runs])), 4)
            row = {
                "setting": setting,
                "at_5": at5,
                "over_best_baseline": round(at5 / best_baseline, 2),
                "runs": runs,
            }
            tried.append(row)
            print(
                f"{json.dumps(setting)}: accuracy@5 {at5:.4f} ({row['over_best_baseline']}x), "
                f"{sum(r['seconds'] for r in runs):.0f} s",
                flush=True,
            )
            if at5 > best[0]:
                best = (at5, setting[key])
        current[key] = best[1]
    out = {
        "kind": "visual_recipe",
        "what": "accuracy@5 of street-photo queries of validation products (carved from the training "
        "products) against their shop photos",
        "command": " ".join(
            [".venv/bin/python -m benchmarks.visual_recipe", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "training_products": train.num_rows,
        "validation_products": valid.num_rows,
        "baselines": baselines,
        "tried": tried,
        "chosen": current,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"chosen: {json.dumps(current)} -> {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # the whole machine, as the benchmark, not inside a caller
    raise SystemExit(main())
