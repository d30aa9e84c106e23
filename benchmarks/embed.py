"""Benchmark: offers/s of the Spark batch inference (embed_offers) versus a bare single-process torch loop
over the same parquet, same model, same number of threads, one run.

    .venv/bin/python -m benchmarks.embed [--root work/local] [--threads 2] [--rounds 2]

Needs a pipeline run under --root (its offers table and trained encoder). Both paths do the same
work per offer: hash the title, category, price and seller into features and run the tower:
  - Spark: jobs.embed_offers' DataFrame (retrieval.encoder.spark_embed.embed_offers) on local[threads]
    with one torch thread per task, written as parquet;
  - bare: pyarrow reads the same offers parquet, one process with `threads` torch threads runs
    retrieval.encoder.spark_embed.embed_frame over batches of the same size.
Prints offers/s of each and the ratio (goal >= 0.7); results go to benchmarks/results/embed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="work/local")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "embed.json"))
    a = p.parse_args(argv)

    import pyarrow.dataset as ds
    import torch
    from pyspark.sql import functions as F

    from retrieval import config, storage, tables
    from retrieval.artifacts import encoder_dir
    from retrieval.encoder.model import OfferTower
    from retrieval.encoder.spark_embed import OFFER_CONTENT, embed_frame, embed_offers
    from retrieval.spark import get_spark
    from retrieval.spark_tables import read_table
    from retrieval.training.models import load_model
    from retrieval.training.spark_inference import broadcast_model

    cfg = config.load(None, [f"paths.root={a.root}", f"spark.master=local[{a.threads}]"])
    path = encoder_dir(cfg.paths.root, cfg.embed.model)
    model = load_model(OfferTower, storage.local_path(path))
    offers_path = storage.local_path(tables.path(a.root, tables.OFFERS))
    spark = get_spark(cfg, "bench-embed")
    offers = read_table(spark, a.root, tables.OFFERS)
    n = offers.count()
    no_warm = spark.createDataFrame([], "offer_id bigint")  # both paths embed every offer as cold
    out_dir = os.path.join("work", "bench", "embed")
    spark_s, bare_s = [], []
    for r in range(a.rounds):
        bc = broadcast_model(spark, model)
        t0 = time.perf_counter()
        embed_offers(offers, no_warm, bc, "bench", a.batch_size, threads=1).write.mode("overwrite").parquet(
            out_dir
        )
        spark_s.append(time.perf_counter() - t0)
        bc.unpersist()

        torch.set_num_threads(a.threads)
        t0 = time.perf_counter()
        seen = 0
        for batch in ds.dataset(offers_path, format="parquet").to_batches(
            columns=OFFER_CONTENT, batch_size=a.batch_size
        ):
            df = batch.to_pandas()
            df["warm"] = False
            seen += len(embed_frame(model, df, a.batch_size))
        bare_s.append(time.perf_counter() - t0)
        assert seen == n, (seen, n)
        print(
            f"round {r}: spark {n / spark_s[-1]:,.0f} offers/s, bare torch {n / bare_s[-1]:,.0f} offers/s",
            flush=True,
        )
    written = spark.read.parquet(out_dir).agg(F.count("*")).first()[0]
    assert written == n
    spark.stop()
    shutil.rmtree(out_dir, ignore_errors=True)
    best_spark, best_bare = n / min(spark_s), n / min(bare_s)
    result = {
        "kind": "speed",
        "benchmark": "embed_offers offers/s: Spark mapInPandas vs a bare single-process torch loop, same parquet",
        "command": "python -m benchmarks.embed " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "offers": n,
        "threads": a.threads,
        "batch_size": a.batch_size,
        "rounds": a.rounds,
        "offers_per_s": {"spark": round(best_spark, 1), "bare_torch": round(best_bare, 1)},
        "ratio": round(best_spark / best_bare, 3),
        "goal": ">= 0.7",
        "model": os.path.basename(path),
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"spark / bare torch = {result['ratio']} (goal >= 0.7; best of {a.rounds} rounds)")
    return result


if __name__ == "__main__":
    main()
