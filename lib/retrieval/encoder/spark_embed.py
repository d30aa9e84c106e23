"""Distributed batch inference with the encoder: every offer -> its embedding, where the offers are.

The model travels as a broadcast of its weights and is built once per Python worker, on the task's
GPU when Spark gave it one (``training.spark_inference``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.encoder.features import OfferFeatures
from retrieval.spark import map_in_pandas
from retrieval.training.spark_inference import task_setup, worker_model

if TYPE_CHECKING:
    import pandas as pd
    from pyspark import Broadcast
    from pyspark.sql import DataFrame

OFFER_CONTENT = ["offer_id", "title", "category_id", "price", "seller_id"]


def rows_to_features(df: pd.DataFrame) -> OfferFeatures:
    """Stored hashed features (the ``encoder/offer_features`` columns) -> an :class:`OfferFeatures` batch."""
    return OfferFeatures(
        np.stack(df["word_ids"].to_numpy()).astype(np.int64),
        np.stack(df["char_ids"].to_numpy()).astype(np.int64),
        *[df[c].to_numpy().astype(np.int64) for c in ("category", "price_bucket", "seller", "offer")],
    )


def embed_frame(model: Any, df: pd.DataFrame, batch_size: int, device: str = "cpu") -> np.ndarray:
    """Embeddings [n, dim] of offers given by their content columns and a ``warm`` flag (pure, no Spark):
    features hashed here, the id embedding used for warm offers only."""
    from retrieval.encoder.features import collate, offer_row_features
    from retrieval.encoder.model import embed

    feats = collate([offer_row_features(r, model.cfg.vocab) for r in df[OFFER_CONTENT].to_dict("records")])
    return embed(model, feats, batch_size, use_id=df["warm"].to_numpy(dtype=bool), device=device)


def embed_offers(
    offers: DataFrame,
    warm: DataFrame,
    model_bc: Broadcast[Any],
    model_version: str,
    batch_size: int,
    threads: int,
    use_gpu: bool = True,
) -> DataFrame:
    """``embeddings`` rows (offer_id, vector, model_version) for every row of ``offers``.

    ``warm``: offer ids whose id embedding was trained (offers with training pairs); the others are
    embedded from content alone, as cold offers.
    """
    from pyspark.sql import functions as F

    rows = offers.select(*OFFER_CONTENT).join(
        warm.select("offer_id", F.lit(True).alias("warm")), "offer_id", "left"
    )
    rows = rows.withColumn("warm", F.coalesce("warm", F.lit(False)))

    def embed_partition(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        device = task_setup(threads, use_gpu)
        model = worker_model(model_bc.value, device)
        for df in frames:
            if len(df) == 0:
                continue
            vectors = embed_frame(model, df, batch_size, device)
            yield pd.DataFrame(
                {
                    "offer_id": df["offer_id"].to_numpy(),
                    "vector": list(vectors),
                    "model_version": model_version,
                }
            )

    return map_in_pandas(rows, embed_partition, "offer_id bigint, vector array<float>, model_version string")


def delta_embeddings(offers: DataFrame, since: str, embed: Any, version: str) -> DataFrame:
    """``embeddings_delta`` rows for the offers updated at or after ``since``: the live ones embedded
    by ``embed`` (offers -> embeddings rows), the deleted ones as tombstones (vector null)."""
    from pyspark.sql import functions as F

    changed = offers.where(F.col("updated_at") >= F.to_timestamp(F.lit(since)))
    live = F.coalesce(F.col("deleted"), F.lit(False)) == F.lit(False)
    gone = changed.where(~live).select(
        "offer_id", F.lit(None).cast("array<float>").alias("vector"), F.lit(version).alias("model_version")
    )
    fresh = embed(changed.where(live))
    return fresh.withColumn("deleted", F.lit(False)).unionByName(gone.withColumn("deleted", F.lit(True)))


def require_model(embeddings: DataFrame, version: str) -> None:
    """Raises ConfigError unless every embedding comes from model ``version`` (an incremental update
    cannot mix the vectors of two models: their spaces differ)."""
    from retrieval.config import ConfigError

    old_versions = [
        r["model_version"] for r in embeddings.select("model_version").distinct().limit(2).collect()
    ]
    if old_versions and old_versions != [version]:
        raise ConfigError(mixed_models("embeddings", old_versions, version))


def mixed_models(what: str, made_by: object, version: str) -> str:
    """The message of an incremental update refused because ``what`` was made by another model."""
    return (
        f"{what} were made by model {made_by}, not {version}: an incremental update cannot mix "
        "models; run embed_offers, build_index and precompute_recs in full mode"
    )


def apply_delta(embeddings: DataFrame, delta: DataFrame) -> DataFrame:
    """``embeddings`` with the delta applied: changed offers replaced, deleted ones gone."""
    from pyspark.sql import functions as F

    return embeddings.join(delta.select("offer_id"), "offer_id", "left_anti").unionByName(
        delta.where(~F.col("deleted")).select("offer_id", "vector", "model_version")
    )
