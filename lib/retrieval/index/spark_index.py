"""Spark glue of the sharded index: build shards where the embeddings are, search them per query block,
turn neighbours into the ``recs`` table. The logic itself is in ``shards.py`` and ``recs.py``.

The driver holds the trained quantizer (bytes, broadcast) and the manifest, never per-offer data:
sampling for training is bounded by ``index.train_size``, and every per-offer step is a Spark job.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval import storage
from retrieval.evaluation import NO_ITEM
from retrieval.index import shards
from retrieval.index.recs import carousel
from retrieval.spark import map_in_arrow, map_in_pandas
from retrieval.spark_tables import TableError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from retrieval.config.sections import RecsSection

NEIGHBOURS_DDL = "offer_id bigint, neighbours array<bigint>, scores array<float>"


LOOK_SIZE = 64  # pixels of the photos product matching compares (matching.photo_look)
INDEX = "index"  # the offer index: <root>/index/<version>/, committed by <root>/index/CURRENT


def current(root: str, name: str = INDEX) -> tuple[str, shards.Manifest]:
    """(index uri, manifest) of the committed version of the index ``<root>/<name>``."""
    from retrieval import commit

    uri = commit.resolve(root, name)
    if uri is None or not storage.exists(storage.join(uri, shards.MANIFEST)):
        raise TableError(
            f"no index under {storage.join(root, name)}: it is written by the 'build_index' stage"
        )
    return uri, shards.Manifest.from_dict(storage.read_json(storage.join(uri, shards.MANIFEST)))


def single_model_version(embeddings: DataFrame) -> str:
    """The model every embedding comes from; TableError when they come from none or several."""
    versions = [r["model_version"] for r in embeddings.select("model_version").distinct().limit(2).collect()]
    if len(versions) != 1:
        raise TableError(f"embeddings must come from one model; found {versions or 'no rows'}")
    return str(versions[0])


def arrow_vectors(batches: Sequence[pa.RecordBatch]) -> tuple[np.ndarray, np.ndarray]:
    """(offer_id [n], vectors [n, d] float32) of a task's Arrow batches, without a per-row Python step."""
    import pyarrow as pa

    batches = [b for b in batches if b.num_rows]
    if not batches:
        return np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
    table = pa.Table.from_batches(batches)
    ids = table.column("offer_id").to_numpy()
    col = table.column("vector").combine_chunks()
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if col.null_count or len(flat) % len(ids):
        raise ValueError("vectors must be non-null and all of one length")
    return ids, flat.reshape(len(ids), -1)


def arrow_lists(values: np.ndarray, keep: np.ndarray) -> pa.Array:
    """A list column from the kept cells of each row of ``values`` [n, k] (``keep`` [n, k] bool)."""
    import pyarrow as pa

    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[keep]))


def sample_vectors(embeddings: DataFrame, n: int, seed: int, with_ids: bool = False) -> Any:
    """Up to ``n`` vectors, a hash sample (the same on every run), collected to the driver: [m, d]
    (with ``with_ids``: (ids [m], vectors [m, d]))."""
    from pyspark.sql import functions as F

    # an ordered limit brings each partition's first n to the driver: keep only the smallest hashes
    # first (~1.5 n of them: xxhash64 is uniform over the longs), which are the ones the limit takes,
    # so ~n rows come back however many partitions and rows there are, and the same n as without
    h = F.xxhash64("offer_id", F.lit(seed))
    total = embeddings.count()
    thinned = embeddings
    if total > n:
        keep = min(1.0, (1.5 * n + 50) / total)
        below = min(-(2**63) + int(keep * 2**64), 2**63 - 1)
        thinned = embeddings.where(h < F.lit(below))

    def first_n(rows: DataFrame) -> Any:
        return rows.orderBy(h, "offer_id").limit(n).select("offer_id", "vector").toArrow()

    table = first_n(thinned)
    if table.num_rows < min(n, total):  # ~8 standard deviations short: take them from every row
        table = first_n(embeddings)
    ids, vecs = arrow_vectors(table.to_batches())
    return (ids, vecs) if with_ids else vecs


def exact_neighbours(embeddings: DataFrame, query_ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-``k`` ids of each query among all embeddings (self excluded): [Q, k].

    Each batch of every partition computes its own top-k for the broadcast queries, Spark merges them
    per query, and the driver receives Q x k rows (queries are a bounded sample)."""
    spark = embeddings.sparkSession
    bc = spark.sparkContext.broadcast((query_ids, queries, k))

    def partition_top_k(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
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

    from pyspark.sql import Window
    from pyspark.sql import functions as F

    scored = map_in_pandas(
        embeddings.select("offer_id", "vector"), partition_top_k, "q long, item long, score float"
    )
    # every batch's best k per query, merged where they are: the driver gets Q x k rows, whatever n is
    order = Window.partitionBy("q").orderBy(F.desc("score"), "item")  # score descending, ties by id
    best = (
        scored.where(F.col("item") != F.lit(NO_ITEM))
        .withColumn("_r", F.row_number().over(order))
        .where(F.col("_r") <= k)
    )
    out = np.full((len(query_ids), k), NO_ITEM, dtype=np.int64)
    for r in best.collect():
        out[r["q"], r["_r"] - 1] = r["item"]
    bc.unpersist()
    return out


def write_shards(
    embeddings: DataFrame,
    trained: bytes,
    index_uri: str,
    n_shards: int,
    prefix: str = "shard",
    generation: int = 0,
    threads: int = 1,
) -> list[shards.ShardEntry]:
    """Hash-partitions ``embeddings`` into ``n_shards`` partitions; each task adds its vectors to a copy of
    the trained index and writes ``<prefix>-NNNNN.faiss`` (atomically). Returns the entries, in order."""
    from pyspark.sql import functions as F

    spark = embeddings.sparkSession
    bc = spark.sparkContext.broadcast(trained)

    def build_shard(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import faiss
        import pyarrow as pa
        from pyspark import TaskContext

        faiss.omp_set_num_threads(max(1, threads))
        ctx = TaskContext.get()
        part = ctx.partitionId() if ctx is not None else 0
        ids, vecs = arrow_vectors(list(batches))
        data = shards.to_bytes(shards.build_shard(bc.value, vecs, ids))
        name = f"{prefix}-{part:05d}.faiss"
        storage.write_bytes_atomic(storage.join(index_uri, name), data)
        yield pa.RecordBatch.from_pydict(
            {"file": [name], "count": [len(ids)], "sha256": [shards.checksum(data)]}
        )

    partitions = embeddings.select("offer_id", "vector").repartition(n_shards, F.col("offer_id"))
    rows = map_in_arrow(partitions, build_shard, "file string, count bigint, sha256 string").collect()
    bc.unpersist()
    got = {r["file"]: r for r in rows}
    entries = []
    for part in range(n_shards):  # a partition that received no rows may run no task: write it empty
        name = f"{prefix}-{part:05d}.faiss"
        if name not in got:
            data = shards.to_bytes(
                shards.build_shard(trained, np.zeros((0, 1), np.float32), np.zeros(0, np.int64))
            )
            storage.write_bytes_atomic(storage.join(index_uri, name), data)
            entries.append(shards.ShardEntry(name, 0, shards.checksum(data), generation))
        else:
            entries.append(shards.ShardEntry(name, int(got[name]["count"]), got[name]["sha256"], generation))
    return entries


def load_shard(index_uri: str, entry: shards.ShardEntry, nprobe: int, k_factor: float) -> Any:
    """One shard from storage, checksum verified, search parameters set."""
    data = storage.read_bytes(storage.join(index_uri, entry.file))
    if shards.checksum(data) != entry.sha256:
        raise OSError(
            f"{entry.file} in {index_uri} does not match the manifest's checksum (a partial write?)"
        )
    index = shards.from_bytes(data)
    shards.set_search_params(index, nprobe, k_factor)
    return index


def write_tombstones(ids: DataFrame, index_uri: str, generation: int) -> str:
    """Writes the superseded offer ids of a generation as parquet inside the index; returns its name."""
    name = f"tombstones-{generation:03d}.parquet"
    ids.select("offer_id").coalesce(1).write.mode("overwrite").parquet(
        storage.to_uri(storage.join(index_uri, name))
    )
    return name


def load_tombstones(index_uri: str, manifest: shards.Manifest) -> dict[str, frozenset[int]]:
    """The superseded ids of every generation (read where the search runs, not on the driver)."""
    import pyarrow.dataset as ds

    out = {}
    for gen, name in manifest.tombstones.items():
        uri = storage.join(index_uri, name)
        fs, path = storage.filesystem(uri)
        data = ds.dataset(path, format="parquet", filesystem=fs)
        out[gen] = frozenset(data.to_table(columns=["offer_id"]).column("offer_id").to_numpy().tolist())
    return out


def search_neighbours(
    queries: DataFrame,
    manifest: shards.Manifest,
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

    def search_block(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import faiss
        import pyarrow as pa

        faiss.omp_set_num_threads(max(1, threads))
        ids, vecs = arrow_vectors(list(batches))
        if len(ids) == 0:
            return
        m = shards.Manifest.from_dict(bc.value)
        dead = load_tombstones(index_uri, m)
        loaded = ((load_shard(index_uri, e, nprobe, k_factor), m.excluded_for(e, dead)) for e in m.shards)
        d, i = shards.search_shards(loaded, vecs, k, exclude=ids.reshape(-1, 1))
        for lo in range(0, len(ids), 50000):
            dd, ii = d[lo : lo + 50000], i[lo : lo + 50000]
            keep = np.isfinite(dd)
            yield pa.RecordBatch.from_arrays(
                [pa.array(ids[lo : lo + 50000]), arrow_lists(ii, keep), arrow_lists(dd, keep)],
                names=["offer_id", "neighbours", "scores"],
            )

    return map_in_arrow(queries.select("offer_id", "vector"), search_block, NEIGHBOURS_DDL)


def product_keys(
    offers: DataFrame, price_band: float = 1.5, min_tokens: int = 2, look_distance: float = 0.0
) -> DataFrame:
    """(offer_id, key, category_id, matched_by): every offer's collapse key (``matching.collapse_keys``:
    the catalogue's product, else the product its photo, title or, with ``look_distance`` > 0, what its
    photo shows matches within its category, else its category and normalised title) and how an offer
    without product_id was matched (null: it was not). One category's offers are matched in one task;
    photos are loaded (``visual.spark_visual.load_image``) only for offers whose title fits several
    products, and for those products' offers."""

    def keys_of_category(df: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        from retrieval.index.matching import Offer, collapse_keys, match, normalise

        look = cached_look()
        offers_ = [
            Offer(
                int(o),
                None if pd.isna(p) else int(p),
                None if pd.isna(c) else int(c),
                None if pd.isna(x) else float(x),
                normalise(t if isinstance(t, str) else None),
                i if isinstance(i, str) else None,
            )
            for o, p, c, x, t, i in zip(
                df["offer_id"],
                df["product_id"],
                df["category_id"],
                df["price"],
                df["title"],
                df["image_ref"],
                strict=True,
            )
        ]
        found = match(offers_, price_band, min_tokens, look if look_distance > 0 else None, look_distance)
        keys = collapse_keys(offers_, found)
        ids = [o.offer_id for o in offers_]
        return pd.DataFrame(
            {
                "offer_id": ids,
                "key": [keys[i] for i in ids],
                "category_id": df["category_id"].to_numpy(),
                "matched_by": [found[i].by if i in found else None for i in ids],
            }
        )

    columns = offers.select("offer_id", "product_id", "category_id", "price", "title", "image_ref")
    return columns.groupBy("category_id").applyInPandas(
        keys_of_category, "offer_id bigint, key string, category_id int, matched_by string"
    )


def matched_keys(offers: DataFrame, embeddings: DataFrame, neighbours: Any, r: RecsSection) -> DataFrame:
    """Every live offer's collapse key as precompute_recs uses it, cached: :func:`product_keys` by
    the catalogue, photo, title and look, then, with ``r.match_neighbours`` > 0 (``r``: the config's
    section), :func:`near_duplicate_keys` (``neighbours(queries, k)``: a search of the index)."""
    keys = product_keys(offers, r.match_price_band, r.match_min_tokens, r.match_look_distance).cache()
    if not r.match_neighbours:
        return keys
    near = near_duplicate_keys(
        keys,
        offers,
        embeddings,
        neighbours,
        r.match_neighbours,
        r.match_price_band,
        r.match_shared_words,
        r.match_near_look_distance,
    ).cache()
    near.count()  # materialised before the keys it was made from are let go
    keys.unpersist()
    return near


def cached_look() -> Any:
    """photo reference -> ``matching.photo_look`` of the photo at ``LOOK_SIZE`` pixels, each photo
    loaded once per function returned (one category's group, or one partition's); None for a photo
    that cannot be read."""
    from retrieval.index.matching import photo_look
    from retrieval.visual.spark_visual import load_image

    looks: dict[str, Any] = {}

    def look(ref: str) -> Any:
        if ref not in looks:
            try:
                looks[ref] = photo_look(load_image(ref, LOOK_SIZE))
            except (OSError, ValueError):  # a photo that cannot be read matches nothing
                looks[ref] = None
        return looks[ref]

    return look


def near_duplicate_keys(
    keys: DataFrame,
    offers: DataFrame,
    embeddings: DataFrame,
    neighbours: Any,
    k: int,
    price_band: float = 1.5,
    min_shared: int = 2,
    look_distance: float = 0.12,
) -> DataFrame:
    """``keys`` (:func:`product_keys`' rows) where every offer no product matched (a ``t`` key) takes
    the key of a near duplicate among its ``k`` nearest offers by embedding (``neighbours(queries,
    k)``: :func:`search_neighbours` rows; ``matching.near_duplicate_key``), with matched_by "near"
    where that key is a product's. Only those offers are searched, and photos are loaded only for
    neighbours whose price and title could be the offer's."""
    from pyspark.sql import functions as F

    info = offers.select("offer_id", "price", "title", "image_ref").join(
        keys.select("offer_id", "key"), "offer_id"
    )
    unmatched = keys.where(F.col("key").startswith("t")).join(
        offers.where(F.col("image_ref").isNotNull()).select("offer_id"), "offer_id"
    )  # an offer without a photo has no near duplicate (matching.same_listing)
    queries = embeddings.join(unmatched.select("offer_id"), "offer_id")
    found = neighbours(queries.select("offer_id", "vector"), k)
    near = F.struct(
        *(F.col(c).alias(c) for c in ("rank", "n_offer_id", "n_key", "n_price", "n_title", "n_image_ref"))
    )
    rows = (
        found.select("offer_id", F.posexplode("neighbours").alias("rank", "n_offer_id"))
        .join(info.select(*(F.col(c).alias(f"n_{c}") for c in info.columns)), "n_offer_id")
        .groupBy("offer_id")
        .agg(F.sort_array(F.collect_list(near)).alias("near"))
        .join(info, "offer_id")
    )

    def decide(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from retrieval.index.matching import Listing, near_duplicate_key, normalise

        def listing(oid: Any, key: Any, price: Any, title: Any, ref: Any) -> Listing:
            known = price is not None and not pd.isna(price)
            text = title if isinstance(title, str) else None
            photo = ref if isinstance(ref, str) and ref else None
            return Listing(int(oid), str(key), float(price) if known else None, normalise(text), photo)

        look = cached_look()
        for df in frames:
            ids, new = [], []
            for oid, key, price, title, ref, near_ in zip(
                df["offer_id"], df["key"], df["price"], df["title"], df["image_ref"], df["near"], strict=True
            ):
                mine = listing(oid, key, price, title, ref)
                cands = [
                    listing(n["n_offer_id"], n["n_key"], n["n_price"], n["n_title"], n["n_image_ref"])
                    for n in near_
                ]
                chosen = near_duplicate_key(mine, cands, look, price_band, min_shared, look_distance)
                if chosen is not None and chosen != mine.key:
                    ids.append(mine.offer_id)
                    new.append(chosen)
            yield pd.DataFrame(
                {"offer_id": pd.Series(ids, dtype="int64"), "near_key": pd.Series(new, dtype=object)}
            )

    taken = map_in_pandas(rows, decide, "offer_id bigint, near_key string")
    matched_by = F.when(F.col("near_key").startswith("p"), F.lit("near")).otherwise(F.col("matched_by"))
    return keys.join(taken, "offer_id", "left").select(
        "offer_id", F.coalesce("near_key", "key").alias("key"), "category_id", matched_by.alias("matched_by")
    )


def probe_reachable(pairs: DataFrame, embeddings: DataFrame, index_uri: str, nprobe: int) -> DataFrame:
    """The rows of ``pairs`` (offer_id = a query offer, rec_id = an offer in the index, ...) that a
    search from the query offer (:func:`search_neighbours`, ``nprobe`` lists) can return: those whose
    offer ``rec_id`` is stored in one of the lists the query probes. Every row for a non-IVF index.

    An IVF search is not symmetric: a reverse search from ``rec_id`` probing wider finds queries
    whose own search never opens ``rec_id``'s list; a carousel patched with such an offer would hold
    what a rebuild of the same index cannot find.
    """
    from pyspark.sql import functions as F

    trained = storage.read_bytes(storage.join(index_uri, shards.QUANTIZER))
    if not shards.nlist(trained):
        return pairs
    bc = pairs.sparkSession.sparkContext.broadcast(trained)
    vectors = embeddings.select("offer_id", "vector")
    both = (
        pairs.select("offer_id", "rec_id")
        .join(vectors, "offer_id")
        .join(
            vectors.select(F.col("offer_id").alias("rec_id"), F.col("vector").alias("rec_vector")), "rec_id"
        )
    )

    def reachable(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import faiss
        import pyarrow as pa

        index = shards.from_bytes(bc.value)  # held: the quantizer is owned by it
        quantizer = faiss.extract_index_ivf(index).quantizer
        lists = min(nprobe, quantizer.ntotal)
        for batch in batches:
            if not batch.num_rows:
                continue
            _, q = arrow_vectors([batch])
            _, r = arrow_vectors(
                [
                    pa.RecordBatch.from_arrays(
                        [batch.column("rec_id"), batch.column("rec_vector")], names=["offer_id", "vector"]
                    )
                ]
            )
            _, probed = quantizer.search(q, lists)
            _, home = quantizer.search(r, 1)
            keep = pa.array((probed == home).any(axis=1))
            yield pa.RecordBatch.from_arrays(
                [batch.column("offer_id").filter(keep), batch.column("rec_id").filter(keep)],
                names=["offer_id", "rec_id"],
            )

    found = map_in_arrow(
        both.select("offer_id", "rec_id", "vector", "rec_vector"), reachable, "offer_id bigint, rec_id bigint"
    )
    return pairs.join(found, ["offer_id", "rec_id"])


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

    def carousels(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        for df in frames:
            recs = []
            for oid, key, cands in zip(df["offer_id"], df["key"], df["cands"], strict=True):
                cs = [(int(c["cand"]), float(c["score"]), c["cand_key"], c["cand_cat"]) for c in cands]
                recs.append(
                    [{"offer_id": o, "score": s} for o, s in carousel(int(oid), key, cs, k, category_cap)]
                )
            yield pd.DataFrame({"offer_id": df["offer_id"], "recs": recs, "model_version": model_version})

    from retrieval import tables

    return map_in_pandas(grouped, carousels, tables.RECS.ddl())


def recs_stats(recs: DataFrame, live: int, k: int) -> dict[str, Any]:
    """How many offers have recs (any, and all ``k``), and the share of the ``live`` offers that some
    carousel recommends (catalogue coverage)."""
    from pyspark.sql import functions as F

    stats = recs.agg(
        F.count("*").alias("offers"),
        F.sum((F.size("recs") > 0).cast("long")).alias("with_recs"),
        F.sum((F.size("recs") >= k).cast("long")).alias("full"),
    ).first()
    assert stats is not None
    covered = recs.select(F.explode("recs.offer_id").alias("o")).distinct().count()
    return {
        "offers": int(stats["offers"]),
        "offers_with_recs": int(stats["with_recs"] or 0),
        "offers_with_k_recs": int(stats["full"] or 0),
        "catalog_coverage": round(covered / max(live, 1), 4),
        "live": live,
    }
