"""Spark glue of the encoder: hashed offer features for every offer, and training examples as parquet."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from retrieval.encoder.features import Vocab, offer_row_features
from retrieval.spark import map_in_pandas

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

FEATURE_COLUMNS = ["word_ids", "char_ids", "category", "price_bucket", "seller", "offer"]
FEATURES_DDL = "offer_id bigint, word_ids array<int>, char_ids array<int>, category int, price_bucket int, seller int, offer int"


def _featurize(vocab_dict: dict[str, Any]) -> Any:
    def featurize_partition(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        vocab = Vocab(**{**vocab_dict, "char_n": tuple(vocab_dict["char_n"])})
        for df in frames:
            rows = [offer_row_features(r, vocab) for r in df.to_dict("records")]
            out = pd.DataFrame(rows, columns=FEATURE_COLUMNS)
            out.insert(0, "offer_id", df["offer_id"].to_numpy())
            yield out

    return featurize_partition


def featurize_offers(offers: DataFrame, vocab: Vocab) -> DataFrame:
    """Every offer's hashed features (the pure ``offer_row_features``, applied per partition)."""
    cols = offers.select("offer_id", "title", "category_id", "price", "seller_id")
    return map_in_pandas(cols, _featurize(dataclasses.asdict(vocab)), FEATURES_DDL)


def with_trained_ids(features: DataFrame, pairs: DataFrame, min_id_pairs: int) -> DataFrame:
    """``features`` with the id bucket 0 (the padding, whose embedding is zero) for offers with fewer
    than ``min_id_pairs`` training pairs (``spark_evaluation.warm_offers``): ids are trained and used
    only where there is enough to learn them from (``encoder.min_id_pairs``)."""
    from pyspark.sql import functions as F

    from retrieval.spark_evaluation import warm_offers

    if min_id_pairs <= 1:
        return features
    trained = warm_offers(pairs, min_id_pairs).withColumn("_trained", F.lit(True))
    return (
        features.join(trained, "offer_id", "left")
        .withColumn("offer", F.when(F.col("_trained"), F.col("offer")).otherwise(F.lit(0)))
        .drop("_trained")
    )


def training_examples(pairs: DataFrame, features: DataFrame, split: str = "train") -> DataFrame:
    """Pairs of ``split`` joined with both sides' features, plus log_q of each candidate (its share of
    the split's positives: the in-batch sampling probability that logQ correction removes)."""
    from pyspark.sql import functions as F

    p = pairs.where(F.col("split") == split).select("query_offer_id", "item_offer_id")
    per_item = p.groupBy("item_offer_id").agg(F.count(F.lit(1)).alias("_n"))
    total = p.agg(F.count(F.lit(1)).alias("_total"))  # one row, broadcast by the cross join
    log_q = per_item.crossJoin(total).select(
        "item_offer_id", F.log(F.col("_n") / F.col("_total")).alias("log_q")
    )

    def side(prefix: str, key: str) -> DataFrame:
        return features.select(
            F.col("offer_id").alias(key), *[F.col(c).alias(f"{prefix}{c}") for c in FEATURE_COLUMNS]
        )

    return (
        p.join(log_q, "item_offer_id")
        .join(side("q_", "query_offer_id"), "query_offer_id")
        .join(side("c_", "item_offer_id"), "item_offer_id")
        .select(
            "query_offer_id",
            "item_offer_id",
            "log_q",
            *[f"{s}{c}" for s in ("q_", "c_") for c in FEATURE_COLUMNS],
        )
    )


def uniform_pool(features: DataFrame, pairs: DataFrame, n: int, seed: int) -> tuple[DataFrame, int]:
    """Mixed negatives' pool (``encoder.negatives.UniformPool``): about ``n`` offers drawn uniformly
    from ``features`` (by a hash of the id, so nothing is collected), with ``unigram_log_q``, the log
    of their share of the training positives (-inf for offers no training pair names); and the number
    of offers drawn from."""
    from pyspark.sql import functions as F

    total = features.count()
    p = pairs.where(F.col("split") == "train").select(F.col("item_offer_id").alias("offer_id"))
    share = (
        p.groupBy("offer_id")
        .agg(F.count(F.lit(1)).alias("_n"))
        .crossJoin(p.agg(F.count(F.lit(1)).alias("_total")))
    )
    buckets = 1 << 20
    keep = F.pmod(F.xxhash64("offer_id", F.lit(seed)), F.lit(buckets)) < F.lit(
        int(buckets * min(1.0, n / max(total, 1)))
    )
    pool = (
        features.where(keep)
        .join(share, "offer_id", "left")
        .withColumn(
            "unigram_log_q",
            F.coalesce(F.log(F.col("_n") / F.col("_total")), F.lit(float("-inf"))),
        )
        .drop("_n", "_total")
    )
    return pool, total
