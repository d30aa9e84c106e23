"""train_visual: the image encoder, trained with triplet loss, once per variant in visual.variants.

    ./submit.sh train_visual [--set visual.variants='[street]'] [--set visual.epochs=20]
    ./submit.sh train_visual --set visual.images=DIR --set visual.catalog=CSV   # visual_pairs first, if needed

Reads visual/train_groups (visual_pairs, which runs first when the tables under the root come from
another gallery or settings) and trains, for each variant, a small CNN from scratch with P x K batches
(visual.batch_products products x (1 shop photo + visual.views views)) and the triplet loss of
visual.loss: `shop_only` (views are augmented shop photos), `street` (synthetic street photos of every
style) and the ablations `seamless`, `blur`, `natural_bg`, `uniform_bg` (street photos of some styles
only; retrieval.visual.train). Training runs where `training` / `visual.training` say (one process on
the driver by default), fed by the Arrow or Petastorm feed, with a checkpoint per epoch. Writes
models/visual/<variant>/<version>/.
"""

from __future__ import annotations

import logging
from typing import Any

from retrieval import tables
from retrieval.cli import ensure_stage, job_main
from retrieval.config import Config, ConfigError, runtime
from retrieval.spark_tables import read_table
from retrieval.training.components import resolve
from retrieval.visual.gallery import gallery_is_current, gallery_signature
from retrieval.visual.losses import LOSSES
from retrieval.visual.worker import fit_image_encoder

log = logging.getLogger(__name__)


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, v, processes = cfg.paths.root, cfg.visual, runtime(cfg, "visual").num_processes
    resolve(v.loss.name, v.loss.args, LOSSES, "visual.loss")  # a bad loss fails here, not in a worker
    ensure_stage(spark, cfg, "visual_pairs", gallery_is_current(cfg))  # a new gallery: its pairs first
    n_groups = read_table(spark, root, tables.VISUAL_GROUPS).count()
    if n_groups < v.batch_products * processes:
        raise ConfigError(
            f"{n_groups} training products but visual.batch_products={v.batch_products} on each of "
            f"{processes} process(es): lower the batch or use more products (visual.max_products)"
        )
    groups_uri = tables.path(root, tables.VISUAL_GROUPS)
    results = {}
    for variant in v.variants:
        log.info("train_visual: variant %s", variant)
        results[variant] = fit_image_encoder(cfg, variant, groups_uri, n_groups)
    lines = [
        f"{variant:<11} {len(r['history'])} epochs x {r['steps_per_epoch']} steps, last loss {r['history'][-1]['loss']:.4f}, "
        f"{r['history'][-1]['images_per_s']:,.0f} images/s on {r['world']} process(es) -> {r['model_dir']}"
        for variant, r in results.items()
    ]
    return {
        "gallery": gallery_signature(cfg),  # what the models were trained on (evaluate_visual checks it)
        "variants": {
            k: {"version": r["version"], "history": r["history"], "world": r["world"]}
            for k, r in results.items()
        },
        "models": {k: r["model_dir"] for k, r in results.items()},
        "train_products": n_groups,
        "rows_out": n_groups,
        "outputs": {f"models/visual/{k}": r["model_dir"] for k, r in results.items()},
        "summary": [
            f"{n_groups:,} training products; loss {v.loss.name}, {v.batch_products} x {1 + v.views} per batch",
            *lines,
        ],
    }


if __name__ == "__main__":
    job_main("train_visual", run, __doc__)
