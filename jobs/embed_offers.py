"""embed_offers: every offer -> its embedding with the trained encoder (distributed batch inference).

    ./submit.sh embed_offers [--set embed.model=<models/encoder/VERSION>] [--set embed.threads=2]
    ./submit.sh embed_offers --set recs.mode=incremental --set recs.since=2026-10-14

The model (train_encoder's latest unless embed.model names one) is broadcast once and built once per
Python worker; batches of embed.batch_size offers run with embed.threads torch threads per task, on
the task's GPU when Spark assigned one. Offers with training pairs use their id embedding; the others
are embedded from content alone. Writes `embeddings` (offer_id, vector, model_version).
Incremental: only offers with updated_at >= recs.since are embedded; they (and deleted ones, as
tombstones) go to `embeddings_delta`, and `embeddings` is updated with them.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pyspark.sql import functions as F

from retrieval import tables
from retrieval.artifacts import encoder_dir
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.encoder.model import OfferTower
from retrieval.encoder.spark_embed import apply_delta, delta_embeddings, embed_offers, require_model
from retrieval.spark_evaluation import warm_offers
from retrieval.spark_tables import read_table, write_table
from retrieval.training.models import load_model
from retrieval.training.spark_inference import broadcast_model


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, e, r = cfg.paths.root, cfg.embed, cfg.recs
    if r.mode == "compact":
        return {"rows_out": 0, "offers_embedded": 0, "summary": ["recs.mode=compact: nothing to embed"]}
    path = encoder_dir(root, e.model)
    version = os.path.basename(path.rstrip("/"))
    offers = read_table(spark, root, tables.OFFERS)
    model = load_model(OfferTower, path)
    warm = warm_offers(read_table(spark, root, tables.PAIRS), model.cfg.min_id_pairs)
    bc = broadcast_model(spark, model)

    def embed(rows: Any) -> Any:
        return embed_offers(rows, warm, bc, version, e.batch_size, e.threads, e.use_gpu)

    start, deleted = time.perf_counter(), 0
    if r.mode == "full":
        live = offers.where(~F.coalesce("deleted", F.lit(False)))
        outputs = {"embeddings": write_table(embed(live), root, tables.EMBEDDINGS)}
        seconds = time.perf_counter() - start
        n = read_table(spark, root, tables.EMBEDDINGS).count()
    else:
        old = read_table(spark, root, tables.EMBEDDINGS)
        require_model(old, version)
        delta = delta_embeddings(offers, r.since, embed, version)
        outputs = {"embeddings_delta": write_table(delta, root, tables.EMBEDDINGS_DELTA)}
        seconds = time.perf_counter() - start
        delta = read_table(spark, root, tables.EMBEDDINGS_DELTA)
        outputs["embeddings"] = write_table(apply_delta(old, delta), root, tables.EMBEDDINGS)
        counts = {row["deleted"]: int(row["count"]) for row in delta.groupBy("deleted").count().collect()}
        n, deleted = counts.get(False, 0), counts.get(True, 0)
    bc.unpersist()
    rate = n / max(seconds, 1e-9)
    since = f" since {r.since}" if r.mode == "incremental" else ""
    return {
        "offers_embedded": n,
        "offers_deleted": deleted,
        "offers_per_s": round(rate, 1),
        "model_version": version,
        "mode": r.mode,
        "rows_out": n,
        "outputs": outputs,
        "summary": [
            f"{n:,} offers embedded ({r.mode}{since}{f', {deleted:,} deleted' if deleted else ''}) "
            f"with encoder {version}: {rate:,.0f} offers/s"
        ],
    }


if __name__ == "__main__":
    job_main("embed_offers", run, __doc__)
