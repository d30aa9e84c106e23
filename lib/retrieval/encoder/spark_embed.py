"""Distributed batch inference with the encoder: every offer -> its embedding, where the offers are.

The model travels as a broadcast of its ``state_dict`` bytes (no shared disk needed, no pickled
modules) and is built once per Python worker, not per batch (:func:`worker_model`). Each task sets
its torch threads (so concurrent tasks do not oversubscribe an executor's cores) and uses CUDA when
Spark gave the task a GPU (``spark.task.resource.gpu.amount``).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.encoder.features import OfferFeatures

if TYPE_CHECKING:
    import pandas as pd
    from pyspark import Broadcast
    from pyspark.sql import DataFrame, SparkSession

_MODELS: dict[str, Any] = {}  # per Python worker: the last broadcast's model, built once
OFFER_CONTENT = ["offer_id", "title", "category_id", "price", "seller_id"]


def broadcast_model(spark: SparkSession, model: Any) -> Broadcast[tuple[str, bytes, dict[str, Any]]]:
    """(token, state_dict bytes, config dict) of ``model`` as a broadcast; the token keys the worker cache."""
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return spark.sparkContext.broadcast((uuid.uuid4().hex, buf.getvalue(), model.cfg.to_dict()))


def assigned_gpus() -> list[str]:
    """The GPU addresses Spark assigned to the running task (``TaskContext.resources()``, from the
    executor's discovery script and ``spark.task.resource.gpu.amount``); [] outside a task or when the
    job does not schedule GPUs."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    gpus = ctx.resources().get("gpu") if ctx is not None else None
    return list(gpus.addresses) if gpus is not None else []


def task_device(use_gpu: bool = True) -> str:
    """``cuda:<n>`` when this Spark task was assigned GPU n (and torch sees CUDA), else ``cpu``."""
    import torch

    if not use_gpu or not torch.cuda.is_available():
        return "cpu"
    gpus = assigned_gpus()
    return f"cuda:{gpus[0]}" if gpus else "cpu"


def worker_model(
    value: tuple[str, bytes, dict[str, Any]],
    device: str = "cpu",
    build: Callable[[dict[str, Any]], Any] | None = None,
) -> Any:
    """The broadcast model (of :func:`broadcast_model`), built on first use in this Python worker and
    reused by later tasks. ``build`` makes the module from its config dict (default: the encoder's
    tower). A worker keeps one model: a job that walks through several (evaluate_visual scores eight)
    does not pile them up in long-lived workers, or on their GPU."""
    import torch

    from retrieval.encoder.model import EncoderConfig, OfferTower

    token, state, cfg = value
    key = f"{token}:{device}"
    if key not in _MODELS:
        _MODELS.clear()
        model = build(cfg) if build is not None else OfferTower(EncoderConfig.from_dict(cfg))
        model.load_state_dict(torch.load(io.BytesIO(state), map_location=device, weights_only=True))
        _MODELS[key] = model.to(device).eval()
    return _MODELS[key]


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
    model_bc: Broadcast[tuple[str, bytes, dict[str, Any]]],
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

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd
        import torch

        torch.set_num_threads(max(1, threads))
        device = task_device(use_gpu)
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

    fn: Any = run
    return rows.mapInPandas(fn, "offer_id bigint, vector array<float>, model_version string")
