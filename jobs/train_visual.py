"""train_visual: the image encoder, trained with triplet loss, once per variant in visual.variants.

    ./submit.sh train_visual [--set visual.variants='[street]'] [--set visual.epochs=20]
    ./submit.sh train_visual --set visual.images=DIR --set visual.catalog=CSV   # after visual_pairs on them

Reads visual/train_groups (visual_pairs) and trains, for each variant, a small CNN from scratch with
P x K batches (visual.batch_products products x (1 shop photo + visual.views views)) and triplets
mined in the batch (visual.mining): `shop_only` (views are augmented shop photos), `street` (synthetic
street photos of every style) and the ablations `seamless`, `blur`, `natural_bg`, `uniform_bg`
(street photos of some styles only; retrieval.visual.train). Training runs in TorchDistributor
processes (visual.num_processes > 1; local or barrier tasks) or in this process, fed by the encoder's
Arrow or Petastorm feed, with a checkpoint per epoch. Writes models/visual/<variant>/<version>/.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from jobs import visual_pairs
from retrieval import storage, tables
from retrieval.artifacts import content_version, model_dir
from retrieval.cli import job_main
from retrieval.config import Config, ConfigError
from retrieval.encoder.distributed import launch
from retrieval.spark_tables import read_table
from retrieval.visual.model import VisualConfig
from retrieval.visual.train import VisualArgs, train_worker

log = logging.getLogger(__name__)


def model_config(cfg: Config) -> VisualConfig:
    return VisualConfig(dim=cfg.visual.dim, width=cfg.visual.width, size=cfg.visual.size)


def train_one(spark: Any, cfg: Config, variant: str, groups_uri: str, n_groups: int) -> dict[str, Any]:
    v = cfg.visual
    mcfg = model_config(cfg)
    hyper = {
        k: getattr(v, k)
        for k in (
            "epochs",
            "batch_products",
            "views",
            "shop_views",
            "lr",
            "mining",
            "margin",
            "per_style",
            "feed",
        )
    }
    version = content_version(
        {"model": mcfg.to_dict(), "variant": variant, **hyper, "groups": n_groups, "seed": cfg.seed}
    )
    out_dir = storage.absolute(model_dir(cfg.paths.root, f"visual/{variant}", version))
    args = dataclasses.asdict(
        VisualArgs(
            groups=storage.absolute(groups_uri),
            model_dir=out_dir,
            variant=variant,
            model=mcfg.to_dict(),
            feed=v.feed,
            epochs=v.epochs,
            batch_products=v.batch_products,
            views=v.views,
            shop_views=v.shop_views,
            lr=v.lr,
            margin=v.margin,
            mining=v.mining,
            seed=cfg.seed,
            use_gpu=v.use_gpu,
            threads=v.threads,
            progress_s=cfg.train.progress_s,
        )
    )
    t = cfg.train
    trained = launch(
        train_worker, args, v.num_processes, v.local_mode, v.use_gpu, t.retries, t.fallback_single
    )
    return {**trained, "model_dir": out_dir, "version": version}


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, v = cfg.paths.root, cfg.visual
    visual_pairs.ensure_pairs(spark, cfg)  # a new gallery: its pairs first
    groups = read_table(spark, root, tables.VISUAL_GROUPS)
    n_groups = groups.count()
    if n_groups < v.batch_products * v.num_processes:
        raise ConfigError(
            f"{n_groups} training products but visual.batch_products={v.batch_products} on each of "
            f"{v.num_processes} process(es): lower the batch or use more products (visual.max_products)"
        )
    groups_uri = tables.path(root, tables.VISUAL_GROUPS)
    results = {}
    for variant in v.variants:
        log.info("train_visual: variant %s", variant)
        results[variant] = train_one(spark, cfg, variant, groups_uri, n_groups)
    summary = []
    for variant, r in results.items():
        last = r["history"][-1]
        summary.append(
            f"{variant:<11} {len(r['history'])} epochs x {r['steps_per_epoch']} steps, last loss {last['loss']:.4f}, "
            f"{last['images_per_s']:,.0f} images/s on {r['world']} process(es) -> {r['model_dir']}"
        )
    return {
        "gallery": visual_pairs.gallery_signature(
            cfg
        ),  # what the models were trained on (evaluate checks it)
        "variants": {
            k: {"version": r["version"], "history": r["history"], "world": r["world"]}
            for k, r in results.items()
        },
        "models": {k: r["model_dir"] for k, r in results.items()},
        "train_products": n_groups,
        "rows_out": n_groups,
        "outputs": {f"models/visual/{k}": r["model_dir"] for k, r in results.items()},
        "summary": [
            f"{n_groups:,} training products; mining {v.mining}, {v.batch_products} x {1 + v.views} per batch",
            *summary,
        ],
    }


if __name__ == "__main__":
    job_main("train_visual", run, __doc__)
