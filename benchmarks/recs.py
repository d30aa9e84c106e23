"""Benchmark: the Spark recs path (sharded index build + top-K for every offer) versus single-process
faiss with the same factory string and versus exact search, same machine and threads, one run.

    .venv/bin/python -m benchmarks.recs [--sizes 100000,1000000] [--local work/local] [--threads 2]

Data: clustered 64-d unit vectors (a Gaussian mixture of --centres centres, which behaves like
real embeddings; uniform random vectors are IVF's worst case and are not what embeddings look like),
and with --local the encoder's embeddings of a pipeline run (the embedded default). For each:
  - Spark (local[threads]): train the quantizer on a driver sample, write one shard per partition
    (retrieval.index.spark_index.write_shards), search every offer's top-K over every shard
    (search_neighbours) and write them as parquet;
  - faiss, one process with `threads` OpenMP threads: the same factory, trained on the same sample
    size, every vector added, index.search of every offer;
  - exact: brute-force top-K (numpy, the same BLAS threads) timed on a 10k-query sample and scaled to
    every query.
Recall@10 of both ANN paths is measured against exact top-10 on 1,000 sampled queries. Results go
to benchmarks/results/recs.json.
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

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

K = 61  # what precompute_recs searches: recs.candidates (60) + the offer itself


def clustered(n: int, d: int, centres: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.35 * rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def factory_for(n: int) -> str:
    """IVF with ~4 sqrt(n) lists (the usual rule of thumb), rounded to a power of two."""
    return f"IVF{1 << round(float(np.log2(4 * np.sqrt(n))))},Flat"


def exact_top(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    from retrieval.evaluation import exact_search

    return exact_search(q, x, np.arange(len(x)), k, block=max(16, int(2e8 // len(x))))[1]  # bounded memory


def recall10(found: np.ndarray, truth: np.ndarray) -> float:
    from retrieval.evaluation import recall_at_k

    return recall_at_k(found, [set(b[:10].tolist()) for b in truth], 10)


def run_case(
    spark: Any, name: str, x: np.ndarray, threads: int, nprobe: int, work: str, shards: int
) -> dict[str, Any]:
    import faiss
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    from retrieval.index import shards as sh
    from retrieval.index.spark_index import sample_vectors, search_neighbours, write_shards

    n, d = x.shape
    factory = factory_for(n)
    train_size = min(n, 64 * int(factory[3:].split(",")[0]))
    ids = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(0)
    sample_q = rng.choice(n, size=min(1000, n), replace=False)
    print(
        f"[{name}] {n:,} x {d}, {factory}, nprobe {nprobe}, quantizer trained on {train_size:,}", flush=True
    )

    # the embeddings table, as embed_offers would have written it (not timed)
    path = os.path.join(work, name, "embeddings")
    shutil.rmtree(os.path.join(work, name), ignore_errors=True)
    os.makedirs(path)
    per = -(-n // (2 * threads))
    for p in range(2 * threads):
        lo, hi = p * per, min(n, (p + 1) * per)
        pq.write_table(
            pa.table({"offer_id": ids[lo:hi], "vector": list(x[lo:hi])}),
            os.path.join(path, f"part-{p:03d}.parquet"),
        )
    emb = spark.read.parquet(path)

    # Spark path
    t0 = time.perf_counter()
    sample = sample_vectors(emb, train_size, 1)
    trained = sh.train_index(sample, factory, seed=1, threads=threads)
    uri = os.path.join(work, name, "index")
    entries = write_shards(emb, trained, uri, shards, threads=1)
    t_build = time.perf_counter() - t0
    manifest = sh.Manifest("bench", "bench", factory, "inner_product", d, sh.checksum(trained), entries)
    t0 = time.perf_counter()
    out = os.path.join(work, name, "neighbours")
    search_neighbours(emb, manifest, uri, K - 1, nprobe, threads=1).write.mode("overwrite").parquet(out)
    t_search = time.perf_counter() - t0
    spark_s = t_build + t_search
    got = {
        r["offer_id"]: list(r["neighbours"])
        for r in spark.read.parquet(out).where(F.col("offer_id").isin([int(i) for i in sample_q])).collect()
    }

    # single-process faiss, same factory and threads
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    single_trained = sh.train_index(
        x[rng.choice(n, size=train_size, replace=False)], factory, seed=1, threads=threads
    )
    index = sh.build_shard(single_trained, x, ids)
    sh.set_search_params(index, nprobe)
    t_fbuild = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, fi = index.search(x, K)
    t_fsearch = time.perf_counter() - t0
    faiss_s = t_fbuild + t_fsearch

    # exact: timed on 10k queries, scaled
    qn = min(10000, n)
    t0 = time.perf_counter()
    exact_top(x, x[:qn], K)
    exact_s = (time.perf_counter() - t0) * n / qn

    truth = exact_top(x, x[sample_q], 11)
    truth = np.array([[j for j in row if j != q][:10] for row, q in zip(truth, sample_q, strict=True)])
    spark_found = np.array([(got.get(int(q), []) + [-1] * 10)[:10] for q in sample_q])
    faiss_found = np.array([[j for j in fi[q] if j != q][:10] for q in sample_q])
    res = {
        "vectors": n,
        "dim": d,
        "factory": factory,
        "nprobe": nprobe,
        "shards": len(entries),
        "seconds": {
            "spark_build": round(t_build, 1),
            "spark_search_all": round(t_search, 1),
            "spark_total": round(spark_s, 1),
            "faiss_build": round(t_fbuild, 1),
            "faiss_search_all": round(t_fsearch, 1),
            "faiss_total": round(faiss_s, 1),
            "exact_all_scaled": round(exact_s, 1),
        },
        "spark_over_faiss": round(spark_s / faiss_s, 2),
        "exact_over_spark": round(exact_s / spark_s, 1),
        "recall_at_10_vs_exact": {
            "spark": round(recall10(spark_found, truth), 4),
            "faiss": round(recall10(faiss_found, truth), 4),
        },
    }
    print(
        f"[{name}] spark {spark_s:.1f} s (build {t_build:.1f} + search {t_search:.1f}), faiss {faiss_s:.1f} s "
        f"(ratio {res['spark_over_faiss']}), exact {exact_s:.1f} s ({res['exact_over_spark']}x spark); "
        f"recall@10 spark {res['recall_at_10_vs_exact']['spark']}, faiss {res['recall_at_10_vs_exact']['faiss']}",
        flush=True,
    )
    shutil.rmtree(os.path.join(work, name), ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="clustered-vector cases (comma-separated)")
    p.add_argument("--centres", type=int, default=4000)
    p.add_argument(
        "--local", default="work/local", help="a pipeline root whose embeddings to run too ('' = skip)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--nprobe", type=int, default=16)
    p.add_argument("--shards", type=int, default=0, help="index shards (0 = one per thread)")
    p.add_argument("--work", default="work/bench/recs")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "recs.json"))
    a = p.parse_args(argv)

    from retrieval import config
    from retrieval.spark import get_spark

    cfg = config.load(
        None, [f"spark.master=local[{a.threads}]", "spark.driver_memory=8g", "paths.root=" + a.work]
    )
    spark = get_spark(cfg, "bench-recs")
    cases: dict[str, Any] = {}
    for n in [int(s) for s in a.sizes.split(",") if s]:
        cases[f"clustered_{n}"] = run_case(
            spark,
            f"clustered_{n}",
            clustered(n, 64, a.centres, 0),
            a.threads,
            a.nprobe,
            a.work,
            a.shards or a.threads,
        )
    from retrieval import commit

    local = commit.resolve(a.local, "embeddings") if a.local else None
    if local:
        df = spark.read.parquet(local).select("vector").toPandas()
        cases["embedded_default"] = run_case(
            spark,
            "embedded_default",
            np.stack(df["vector"].to_numpy()).astype(np.float32),
            a.threads,
            a.nprobe,
            a.work,
            a.shards or a.threads,
        )
    spark.stop()
    sizes = sorted(v["vectors"] for k, v in cases.items() if k.startswith("clustered"))
    growth = {}
    if len(sizes) >= 2:
        lo, hi = cases[f"clustered_{sizes[0]}"], cases[f"clustered_{sizes[-1]}"]
        growth = {
            "vectors_x": round(sizes[-1] / sizes[0], 1),
            "spark_time_x": round(hi["seconds"]["spark_total"] / lo["seconds"]["spark_total"], 2),
            "faiss_time_x": round(hi["seconds"]["faiss_total"] / lo["seconds"]["faiss_total"], 2),
            "exact_time_x": round(hi["seconds"]["exact_all_scaled"] / lo["seconds"]["exact_all_scaled"], 2),
        }
    result = {
        "kind": "speed",
        "benchmark": "recs for every offer: Spark sharded index vs single-process faiss (same factory) vs exact",
        "command": "python -m benchmarks.recs " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "threads": a.threads,
        "k": K,
        "cases": cases,
        "growth": growth,
        "goals": {"recall_at_10": ">= 0.95", "spark_over_faiss": "<= 1.5", "exact_over_spark": ">= 10"},
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k in ("growth",)}, indent=2))
    return result


if __name__ == "__main__":
    main()
