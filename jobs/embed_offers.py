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
from retrieval.config import Config, ConfigError
from retrieval.encoder.model import load
from retrieval.encoder.spark_embed import broadcast_model, embed_offers
from retrieval.encoder.spark_eval import warm_offers
from retrieval.spark_tables import read_table, write_table


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root, e, r = cfg.paths.root, cfg.embed, cfg.recs
    if r.mode == "compact":
        return {"rows_out": 0, "offers_embedded": 0, "summary": ["recs.mode=compact: nothing to embed"]}
    path = encoder_dir(cfg.paths.root, cfg.embed.model)
    model = load(path)
    version = os.path.basename(path.rstrip("/"))
    offers = read_table(spark, root, tables.OFFERS)
    warm = warm_offers(read_table(spark, root, tables.PAIRS))
    live = F.coalesce(F.col("deleted"), F.lit(False)) == F.lit(False)
    bc = broadcast_model(spark, model)
    start = time.perf_counter()
    if r.mode == "full":
        uri = write_table(
            embed_offers(offers.where(live), warm, bc, version, e.batch_size, e.threads, e.use_gpu),
            root,
            tables.EMBEDDINGS,
        )
        seconds = time.perf_counter() - start
        n = read_table(spark, root, tables.EMBEDDINGS).count()
        outputs, deleted = {"embeddings": uri}, 0
    else:
        old = read_table(spark, root, tables.EMBEDDINGS)
        old_versions = [
            row["model_version"] for row in old.select("model_version").distinct().limit(2).collect()
        ]
        if old_versions and old_versions != [version]:
            raise ConfigError(
                f"embeddings were made by model {old_versions}, not {version}: an incremental update cannot mix "
                "models; run embed_offers, build_index and precompute_recs in full mode"
            )
        changed = offers.where(F.col("updated_at") >= F.to_timestamp(F.lit(r.since)))
        fresh = embed_offers(changed.where(live), warm, bc, version, e.batch_size, e.threads, e.use_gpu)
        gone = changed.where(~live).select(
            "offer_id",
            F.lit(None).cast("array<float>").alias("vector"),
            F.lit(version).alias("model_version"),
        )
        delta_uri = write_table(
            fresh.withColumn("deleted", F.lit(False)).unionByName(gone.withColumn("deleted", F.lit(True))),
            root,
            tables.EMBEDDINGS_DELTA,
        )
        seconds = time.perf_counter() - start
        delta = read_table(spark, root, tables.EMBEDDINGS_DELTA)
        merged = old.join(delta.select("offer_id"), "offer_id", "left_anti").unionByName(
            delta.where(~F.col("deleted")).select("offer_id", "vector", "model_version")
        )
        uri = write_table(merged, root, tables.EMBEDDINGS)
        counts = {row["deleted"]: int(row["count"]) for row in delta.groupBy("deleted").count().collect()}
        n, deleted = counts.get(False, 0), counts.get(True, 0)
        outputs = {"embeddings_delta": delta_uri, "embeddings": uri}
    bc.unpersist()
    rate = n / max(seconds, 1e-9)
    return {
        "offers_embedded": n,
        "offers_deleted": deleted,
        "offers_per_s": round(rate, 1),
        "model_version": version,
        "mode": r.mode,
        "rows_out": n,
        "outputs": outputs,
        "summary": [
            f"{n:,} offers embedded ({r.mode}{' since ' + r.since if r.mode == 'incremental' else ''}"
            f"{f', {deleted:,} deleted' if deleted else ''}) with encoder {version}: {rate:,.0f} offers/s"
        ],
    }


if __name__ == "__main__":
    job_main("embed_offers", run, __doc__)
