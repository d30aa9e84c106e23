"""Spark glue of visual search: catalogue photos -> filtered, de-duplicated gallery -> training groups
and test queries; distributed featurisation (baselines and trained encoders) for evaluation and the index.

The per-image work (render or decode, filter, thumbnail, street synthesis, embedding) is the pure code
of ``retrieval.visual``, mapped over partitions; only duplicate pairs and small evaluation sets reach
the driver.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval import storage
from retrieval.spark import map_in_pandas
from retrieval.spark_tables import TableError
from retrieval.visual.filtering import groups
from retrieval.visual.images import MAX_PIXELS, ImageTooLarge

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

SOURCE_DDL = "image_id bigint, label bigint, source string"
LOADED_DDL = "image_id bigint, label bigint, source string, image binary, thumb array<float>, reason string"


def synthetic_sources(offers: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(sources, quarantined) from the offers table: live offers with a synthetic ``image_ref``; the
    product label is the image's product key (its first 15 hex digits: a non-negative bigint)."""
    from pyspark.sql import functions as F

    live = offers.where(~F.coalesce(F.col("deleted"), F.lit(False)))
    key = F.coalesce(F.regexp_extract("image_ref", r"^synth://img/([0-9a-f]{16})/\d+$", 1), F.lit(""))
    rows = live.select(
        F.col("offer_id").alias("image_id"), F.col("image_ref").alias("source"), key.alias("key")
    )
    ok = rows.where(F.col("key") != "").select(
        "image_id", F.conv(F.substring("key", 1, 15), 16, 10).cast("bigint").alias("label"), "source"
    )
    bad = rows.where(F.col("key") == "").select(
        "image_id",
        F.lit(None).cast("bigint").alias("label"),
        "source",
        F.when(F.col("source").isNull(), "no_image").otherwise("unsupported_image_ref").alias("reason"),
    )
    return ok, bad


def catalog_sources(spark: SparkSession, images: str, catalog: str) -> DataFrame:
    """Sources from a catalogue CSV (columns ``image`` and ``id``): the file is ``<images>/<basename(image)>``
    and the product label is ``id`` (one product per row of the CSV)."""
    from pyspark.sql import functions as F

    df = spark.read.option("header", True).csv(storage.to_uri(catalog))
    missing = [c for c in ("image", "id") if c not in df.columns]
    if missing:
        raise TableError(f"{catalog}: the catalogue needs columns image and id; missing {missing}")
    bad_ids = (
        df.where(F.col("id").isNull() | F.col("id").cast("bigint").isNull()).select("id", "image").limit(5)
    )
    bad = bad_ids.collect()
    if bad:
        raise ValueError(
            f"{catalog}: ids must be integers (one product per row); e.g. {[tuple(r) for r in bad]}"
        )
    base = storage.to_uri(images).rstrip("/")
    return df.select(
        F.col("id").cast("bigint").alias("image_id"),
        F.col("id").cast("bigint").alias("label"),
        F.concat(F.lit(base + "/"), F.element_at(F.split("image", "/"), -1)).alias("source"),
    )


def sample_products(sources: DataFrame, max_products: int, seed: int) -> DataFrame:
    """The sources of at most ``max_products`` products, chosen by a seeded hash (0 = all)."""
    from pyspark.sql import functions as F

    if max_products <= 0:
        return sources
    labels = (
        sources.select("label")
        .distinct()
        .orderBy(F.xxhash64("label", F.lit(seed)), "label")
        .limit(max_products)
    )
    return sources.join(F.broadcast(labels), "label").select("image_id", "label", "source")


def load_image(source: str, size: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A source (a synthetic reference, or a file path/URI) -> float image (size, size, 3)."""
    from retrieval.visual.images import decode
    from retrieval.visual.render import is_synthetic, render_ref

    if is_synthetic(source):
        return render_ref(source, size)
    return decode(storage.read_bytes(source), size, max_pixels)


def load_images(sources: DataFrame, size: int, max_pixels: int = MAX_PIXELS) -> DataFrame:
    """Renders or reads every source, resizes, filters (``reason`` set where unusable: ``no_image``,
    ``too_large`` (over ``max_pixels``, not decoded), ``unreadable: <error>``, or the filter's), thumbnails."""

    def load_partition(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from retrieval.visual.filtering import thumbnail, unusable_reason
        from retrieval.visual.images import encode

        for df in frames:
            images: list[bytes | None] = []
            thumbs: list[list[float] | None] = []
            reasons: list[str | None] = []
            for src in df["source"]:
                img: np.ndarray | None = None
                reason: str | None = "no_image"
                if isinstance(src, str) and src:
                    try:
                        img = load_image(src, size, max_pixels)
                    except ImageTooLarge:
                        reason = "too_large"
                    except (ValueError, OSError) as e:
                        reason = f"unreadable: {type(e).__name__}"
                if img is not None and not (reason := unusable_reason(img)):
                    images.append(encode(img, "PNG"))
                    thumbs.append(thumbnail(img).tolist())
                else:
                    images.append(None)
                    thumbs.append(None)
                reasons.append(reason)
            yield pd.DataFrame(
                {
                    "image_id": df["image_id"],
                    "label": df["label"],
                    "source": df["source"],
                    "image": images,
                    "thumb": thumbs,
                    "reason": reasons,
                }
            )

    return map_in_pandas(sources, load_partition, LOADED_DDL)


def duplicate_pairs(
    loaded: DataFrame, max_rms: float, tables: int = 4, bits: int = 12
) -> list[tuple[int, int]]:
    """Near-duplicate pairs (image_id, image_id) among ``loaded`` (image_id, thumb): LSH buckets on the
    executors, exact check inside each bucket; only the pairs come back."""

    def keys(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from retrieval.visual.filtering import lsh_keys

        for df in frames:
            if df.empty:
                continue
            thumbs = np.stack(df["thumb"].to_numpy()).astype(np.float32)
            k = lsh_keys(thumbs, tables, bits)
            yield pd.DataFrame(
                {
                    "bucket": (np.arange(tables)[None, :] * (1 << bits) + k).reshape(-1),
                    "image_id": np.repeat(df["image_id"].to_numpy(), tables),
                    "thumb": [t for t in thumbs.tolist() for _ in range(tables)],
                }
            )

    def pairs(df: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        from retrieval.visual.filtering import close_pairs

        got = close_pairs(
            df["image_id"].tolist(), np.stack(df["thumb"].to_numpy()).astype(np.float32), max_rms
        )
        return pd.DataFrame({"a": [a for a, _ in got], "b": [b for _, b in got]}, dtype="int64")

    bucketed = map_in_pandas(
        loaded.select("image_id", "thumb"), keys, "bucket bigint, image_id bigint, thumb array<float>"
    )
    rows = bucketed.groupBy("bucket").applyInPandas(pairs, "a bigint, b bigint").distinct().collect()
    return [(int(r["a"]), int(r["b"])) for r in rows]


def dedup(loaded: DataFrame, max_rms: float) -> tuple[DataFrame, DataFrame, dict[int, int]]:
    """(kept, quarantined duplicates, {removed: kept}). Identical sources first (many offers show the
    same photo), then near-duplicates by thumbnail."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first = F.min("image_id").over(Window.partitionBy("source"))
    marked = loaded.withColumn("first", first)
    same_source = marked.where(F.col("image_id") != F.col("first"))
    distinct = marked.where(F.col("image_id") == F.col("first")).drop("first")
    # ~32 images per bucket at any catalogue size (a bucket's exact check is quadratic in its size)
    bits = max(12, math.ceil(math.log2(max(distinct.count(), 1) / 32)))
    dup = groups(duplicate_pairs(distinct, max_rms, bits=bits))
    spark = loaded.sparkSession
    dup_df = spark.createDataFrame([(int(a), int(b)) for a, b in dup.items()], "image_id bigint, kept bigint")
    # a photo shown under several offers: it maps to the first offer, which may itself be a near-duplicate
    removed = same_source.select("image_id", "label", "source", F.col("first").alias("kept")).unionByName(
        distinct.join(F.broadcast(dup_df), "image_id").select("image_id", "label", "source", "kept")
    )
    resolved = removed.join(
        F.broadcast(dup_df.select(F.col("image_id").alias("kept"), F.col("kept").alias("root"))),
        "kept",
        "left",
    ).select("image_id", "label", "source", F.coalesce("root", "kept").alias("kept"))
    quarantined = resolved.select(
        "image_id",
        "label",
        "source",
        F.concat(F.lit("duplicate_of:"), F.col("kept").cast("string")).alias("reason"),
    )
    kept = distinct.join(F.broadcast(dup_df.select("image_id")), "image_id", "left_anti")
    return kept, quarantined, dup


def with_split(df: DataFrame, test_share: float, seed: int) -> DataFrame:
    """Adds ``split`` (train | test) by product: a seeded hash of the label, so a product's photos
    are all on one side."""
    from pyspark.sql import functions as F

    h = F.pmod(F.xxhash64("label", F.lit(seed + 1)), F.lit(1_000_000))
    return df.withColumn("split", F.when(h < F.lit(int(test_share * 1_000_000)), "test").otherwise("train"))


def train_groups(images: DataFrame, seed: int, per_style: int, size: int, partitions: int) -> DataFrame:
    """One row per training product: its shop photos and synthetic street photos (retrieval.visual.data)."""
    from pyspark.sql import functions as F

    from retrieval.visual.train import STYLES, style_column

    grouped = (
        images.where(F.col("split") == "train")
        .groupBy("label")
        .agg(F.sort_array(F.collect_list(F.struct("image_id", "image"))).alias("shots"))
        .repartition(partitions, "label")
    )
    ddl = "label bigint, shop array<binary>, " + ", ".join(f"{style_column(s)} array<binary>" for s in STYLES)

    def synthesize_groups(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from retrieval.visual.data import train_group
        from retrieval.visual.images import decode

        for df in frames:
            rows = [
                train_group(int(label), [decode(s["image"], size) for s in shots], seed, per_style)
                for label, shots in zip(df["label"], df["shots"], strict=True)
            ]
            if rows:
                yield pd.DataFrame(rows)

    return map_in_pandas(grouped, synthesize_groups, ddl)


def test_queries(images: DataFrame, seed: int, size: int, partitions: int) -> DataFrame:
    """One synthetic street photo per held-out product, made from its last shop photo (by image_id)."""
    from pyspark.sql import functions as F

    last = (
        images.where(F.col("split") == "test")
        .groupBy("label")
        .agg(F.max(F.struct("image_id", "image")).alias("s"))
        .select("label", F.col("s.image_id").alias("image_id"), F.col("s.image").alias("image"))
        .repartition(partitions, "label")
    )

    def synthesize_queries(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from retrieval.visual.data import test_query
        from retrieval.visual.images import decode

        for df in frames:
            yield pd.DataFrame(
                {
                    "label": df["label"],
                    "image_id": df["image_id"],
                    "image": [
                        test_query(int(lab), decode(img, size), seed)
                        for lab, img in zip(df["label"], df["image"], strict=True)
                    ],
                }
            )

    return map_in_pandas(last, synthesize_queries, "label bigint, image_id bigint, image binary")


def featurize(
    df: DataFrame,
    method: str,
    size: int,
    model: Any = None,
    batch_size: int = 256,
    threads: int = 1,
    use_gpu: bool = False,
    keep: tuple[str, ...] = ("image_id", "label"),
) -> DataFrame:
    """``df`` (``image`` bytes + ``keep`` columns) -> ``keep`` + ``vector``: raw pixels, a colour
    histogram, or a broadcast encoder (``method="model"``; on the task's GPU when Spark assigned one)."""
    from retrieval.training.spark_inference import task_setup, worker_model

    def featurize_partition(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from retrieval.visual.images import decode
        from retrieval.visual.model import embed, histogram_features, pixel_features

        device = task_setup(threads, use_gpu and method == "model")
        for df in frames:
            if df.empty:
                continue
            imgs = np.stack([decode(b, size) for b in df["image"]])
            if method == "pixels":
                vecs = pixel_features(imgs)
            elif method == "histogram":
                vecs = histogram_features(imgs)
            else:
                encoder = worker_model(model.value, device)
                vecs = embed(encoder, imgs, batch_size, device)
            out = df[list(keep)].copy()
            out["vector"] = list(vecs.astype(np.float32))
            yield out

    types = {"image_id": "bigint", "label": "bigint", "split": "string"}
    ddl = ", ".join(f"{c} {types[c]}" for c in keep) + ", vector array<float>"
    return map_in_pandas(df.select(*keep, "image"), featurize_partition, ddl)


def collect_vectors(df: DataFrame, order: str = "image_id") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, labels, vectors) of a small featurised frame, sorted by ``order``."""
    rows = df.orderBy(order).collect()
    ids = np.asarray([r["image_id"] for r in rows], np.int64)
    labels = np.asarray([r["label"] for r in rows], np.int64)
    vecs = np.asarray([r["vector"] for r in rows], np.float32).reshape(len(rows), -1)
    return ids, labels, vecs


def default_partitions(spark: SparkSession) -> int:
    return max(4, 2 * int(spark.sparkContext.defaultParallelism))


def results_path(results_dir: str, name: str) -> str:
    return os.path.join(results_dir, f"{name}.json")


def gallery_counts(images: DataFrame, quarantine: DataFrame) -> dict[str, Any]:
    """Photos and products per split, and quarantined photos by reason (the first word of it)."""
    from pyspark.sql import functions as F

    by_split = {
        r["split"]: (int(r["images"]), int(r["products"]))
        for r in images.groupBy("split")
        .agg(F.count(F.lit(1)).alias("images"), F.countDistinct("label").alias("products"))
        .collect()
    }
    reasons = {
        r["why"]: int(r["n"])
        for r in quarantine.select(F.regexp_extract("reason", r"^([a-z_]+)", 1).alias("why"))
        .groupBy("why")
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    }
    train, test = by_split.get("train", (0, 0)), by_split.get("test", (0, 0))
    return {"train": train, "test": test, "quarantined": dict(sorted(reasons.items()))}


def gallery_tables(
    sources: DataFrame, unsupported: DataFrame | None, v: Any, seed: int
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(visual/images, visual/quarantine, the loaded photos): ``sources`` sampled to v.max_products,
    rendered or read at v.size, filtered (unusable photos quarantined with their reason), de-duplicated
    (``duplicate_of:<kept id>``) and split by product. The loaded photos are cached, for both tables:
    unpersist them once both are written."""
    from pyspark.sql import functions as F

    loaded = load_images(sample_products(sources, v.max_products, seed), v.size, v.max_pixels).cache()
    kept, duplicates, _ = dedup(loaded.where(F.col("reason").isNull()), v.max_rms)
    images = with_split(kept, v.test_share, seed).select("image_id", "label", "split", "source", "image")
    bad = loaded.where(F.col("reason").isNotNull()).select("image_id", "label", "source", "reason")
    if unsupported is not None:
        bad = bad.unionByName(unsupported)
    return images, bad.unionByName(duplicates), loaded
