"""Spark glue of the sharded index: build shards where the embeddings are, search them per query block,
turn neighbours into the ``recs`` table. The logic itself is in ``shards.py`` and ``recs.py``.

The driver holds the trained quantizer (bytes, broadcast) and the manifest, never per-offer data:
sampling for training is bounded by ``index.train_size``, and every per-offer step is a Spark job.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval import storage
from retrieval.index import shards as sh
from retrieval.index.recs import carousel, product_key

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

NEIGHBOURS_DDL = "offer_id bigint, neighbours array<bigint>, scores array<float>"


def sample_vectors(embeddings: DataFrame, n: int, seed: int, with_ids: bool = False) -> Any:
    """Up to ``n`` vectors, a hash sample (the same on every run), collected to the driver: [m, d]
    (with ``with_ids``: (ids [m], vectors [m, d]))."""
    from pyspark.sql import functions as F

    rows = (
        embeddings.orderBy(F.xxhash64("offer_id", F.lit(seed)), "offer_id")
        .limit(n)
        .select("offer_id", "vector")
        .collect()
    )
    vecs = np.array([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), -1)
    if with_ids:
        return np.array([r["offer_id"] for r in rows], dtype=np.int64), vecs
    return vecs


def exact_neighbours(embeddings: DataFrame, query_ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-``k`` ids of each query among all embeddings (self excluded): [Q, k].

    Each partition computes its own top-k for the broadcast queries; the driver merges Q x partitions
    x k rows (queries are a bounded sample)."""
    spark = embeddings.sparkSession
    bc = spark.sparkContext.broadcast((query_ids, queries, k))

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from retrieval.evaluation import exact_search

        qids, qv, kk = bc.value
        for df in frames:
            if len(df) == 0:
                continue
            d, i = exact_search(
                qv,
                np.stack(df["vector"].to_numpy()).astype(np.float32),
                df["offer_id"].to_numpy(),
                kk,
                exclude=qids,
            )
            yield pd.DataFrame(
                {"q": np.repeat(np.arange(len(qids)), kk), "item": i.reshape(-1), "score": d.reshape(-1)}
            )

    fn: Any = run
    rows = embeddings.select("offer_id", "vector").mapInPandas(fn, "q long, item long, score float").collect()
    bc.unpersist()
    by_q: dict[int, list[tuple[float, int]]] = {}
    for r in rows:
        if r["item"] >= 0:
            by_q.setdefault(r["q"], []).append((float(r["score"]), int(r["item"])))
    out = np.full((len(query_ids), k), -1, dtype=np.int64)
    for q, cands in by_q.items():
        best = sorted(cands, key=lambda t: (-t[0], t[1]))[:k]  # score descending, ties by id
        out[q, : len(best)] = [i for _, i in best]
    return out


def write_shards(
    embeddings: DataFrame,
    trained: bytes,
    index_uri: str,
    shards: int,
    prefix: str = "shard",
    generation: int = 0,
    threads: int = 1,
) -> list[sh.ShardEntry]:
    """Hash-partitions ``embeddings`` into ``shards`` partitions; each task adds its vectors to a copy of
    the trained index and writes ``<prefix>-NNNNN.faiss`` (atomically). Returns the entries, in order."""
    from pyspark.sql import functions as F

    spark = embeddings.sparkSession
    bc = spark.sparkContext.broadcast(trained)

    def build(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import faiss
        import pandas as pd
        from pyspark import TaskContext

        faiss.omp_set_num_threads(max(1, threads))
        frames_ = [f for f in frames if len(f)]
        ctx = TaskContext.get()
        part = ctx.partitionId() if ctx is not None else 0
        ids = (
            np.concatenate([f["offer_id"].to_numpy() for f in frames_]) if frames_ else np.zeros(0, np.int64)
        )
        vecs = (
            np.stack(np.concatenate([f["vector"].to_numpy() for f in frames_]))
            if frames_
            else np.zeros((0, 1), np.float32)
        )
        data = sh.to_bytes(sh.build_shard(bc.value, vecs, ids))
        name = f"{prefix}-{part:05d}.faiss"
        storage.write_bytes_atomic(storage.join(index_uri, name), data)
        yield pd.DataFrame({"file": [name], "count": [len(ids)], "sha256": [sh.checksum(data)]})

    fn: Any = build
    rows = (
        embeddings.select("offer_id", "vector")
        .repartition(shards, F.col("offer_id"))
        .mapInPandas(fn, "file string, count bigint, sha256 string")
        .collect()
    )
    bc.unpersist()
    got = {r["file"]: r for r in rows}
    entries = []
    for part in range(shards):  # a partition that received no rows may run no task: write it empty
        name = f"{prefix}-{part:05d}.faiss"
        if name not in got:
            data = sh.to_bytes(sh.build_shard(trained, np.zeros((0, 1), np.float32), np.zeros(0, np.int64)))
            storage.write_bytes_atomic(storage.join(index_uri, name), data)
            entries.append(sh.ShardEntry(name, 0, sh.checksum(data), generation))
        else:
            entries.append(sh.ShardEntry(name, int(got[name]["count"]), got[name]["sha256"], generation))
    return entries


def load_shard(index_uri: str, entry: sh.ShardEntry, nprobe: int, k_factor: float) -> Any:
    """One shard from storage, checksum verified, search parameters set."""
    data = storage.read_bytes(storage.join(index_uri, entry.file))
    if sh.checksum(data) != entry.sha256:
        raise OSError(
            f"{entry.file} in {index_uri} does not match the manifest's checksum (a partial write?)"
        )
    index = sh.from_bytes(data)
    sh.set_search_params(index, nprobe, k_factor)
    return index


def search_neighbours(
    queries: DataFrame,
    manifest: sh.Manifest,
    index_uri: str,
    k: int,
    nprobe: int,
    k_factor: float = 0.0,
    threads: int = 1,
) -> DataFrame:
    """The ``k`` nearest offers of every query row (offer_id, vector), self excluded, over every shard.

    Each task takes its block of queries and streams the shards through it one at a time (one shard
    in memory), merging per-shard top-k as it goes; no candidate list is shuffled.
    """
    spark = queries.sparkSession
    bc = spark.sparkContext.broadcast(manifest.to_dict())

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import faiss
        import pandas as pd

        faiss.omp_set_num_threads(max(1, threads))
        frames_ = [f for f in frames if len(f)]
        if not frames_:
            return
        ids = np.concatenate([f["offer_id"].to_numpy() for f in frames_])
        vecs = np.stack(np.concatenate([f["vector"].to_numpy() for f in frames_])).astype(np.float32)
        m = sh.Manifest.from_dict(bc.value)
        shards = ((load_shard(index_uri, e, nprobe, k_factor), m.excluded_for(e)) for e in m.shards)
        d, i = sh.search_shards(shards, vecs, k, exclude=ids.reshape(-1, 1))
        for lo in range(0, len(ids), 10000):
            hi = lo + 10000
            yield pd.DataFrame(
                {
                    "offer_id": ids[lo:hi],
                    "neighbours": [row[row >= 0] for row in i[lo:hi]],
                    "scores": [row[np.isfinite(row)] for row in d[lo:hi]],
                }
            )

    fn: Any = run
    out = queries.select("offer_id", "vector").mapInPandas(fn, NEIGHBOURS_DDL)
    return out


def product_keys(offers: DataFrame) -> DataFrame:
    """(offer_id, key, category_id): the collapse key of :func:`recs.product_key` for every offer."""

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        for df in frames:
            keys = [
                product_key(
                    None if pd.isna(p) else int(p),
                    t if isinstance(t, str) else None,
                    None if pd.isna(s) else int(s),
                )
                for p, t, s in zip(df["product_id"], df["title"], df["seller_id"], strict=True)
            ]
            yield pd.DataFrame({"offer_id": df["offer_id"], "key": keys, "category_id": df["category_id"]})

    fn: Any = run
    return offers.select("offer_id", "product_id", "title", "seller_id", "category_id").mapInPandas(
        fn, "offer_id bigint, key string, category_id int"
    )


def to_recs(
    neighbours: DataFrame, keys: DataFrame, k: int, category_cap: int, model_version: str
) -> DataFrame:
    """``recs`` rows: each query's neighbours with the candidates' product keys and categories joined
    in, then :func:`recs.carousel` (self and same product removed, products collapsed, category cap)."""
    from pyspark.sql import functions as F

    cand = keys.select(
        F.col("offer_id").alias("cand"),
        F.col("key").alias("cand_key"),
        F.col("category_id").alias("cand_cat"),
    )
    exploded = neighbours.select(
        "offer_id", F.posexplode_outer(F.arrays_zip("neighbours", "scores")).alias("pos", "n")
    ).select("offer_id", F.col("n.neighbours").alias("cand"), F.col("n.scores").alias("score"))
    grouped = (
        exploded.join(cand, "cand", "left")
        .groupBy("offer_id")
        .agg(
            F.collect_list(
                F.when(F.col("cand").isNotNull(), F.struct("cand", "score", "cand_key", "cand_cat"))
            ).alias("cands")
        )
        .join(keys.select("offer_id", "key"), "offer_id")
    )

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        for df in frames:
            recs = []
            for oid, key, cands in zip(df["offer_id"], df["key"], df["cands"], strict=True):
                cs = [(int(c["cand"]), float(c["score"]), c["cand_key"], c["cand_cat"]) for c in cands]
                recs.append(
                    [{"offer_id": o, "score": s} for o, s in carousel(int(oid), key, cs, k, category_cap)]
                )
            yield pd.DataFrame({"offer_id": df["offer_id"], "recs": recs, "model_version": model_version})

    fn: Any = run
    from retrieval import tables

    return grouped.mapInPandas(fn, tables.RECS.ddl())
