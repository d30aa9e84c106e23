"""Spark glue of the serving handoff: the ``recs`` table loaded into Redis from the executors.

Each task packs its partition's carousels (``store.pack``) and writes them in pipelined batches to
the version's keys; only the rows each task wrote come back to the driver. A retried task rewrites
the same keys with the same values, so a retry leaves nothing behind twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from retrieval.spark import map_in_pandas

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame


def load_recs(recs: DataFrame, url: str, namespace: str, version: str, batch: int) -> int:
    """Writes every row of ``recs`` (offer_id, recs array<struct<offer_id, score>>) to Redis under
    ``version``; returns the rows written."""

    def load_partition(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from retrieval.serving.store import RedisStore, connect, pack_recs

        store, n = RedisStore(connect(url), namespace), 0
        for df in frames:
            rows = (
                (int(o), pack_recs(rs))
                for o, rs in zip(df["offer_id"].to_numpy(), df["recs"].to_numpy(), strict=True)
            )
            n += store.load(version, rows, batch)
        yield pd.DataFrame({"rows": [n]})

    counts = map_in_pandas(recs.select("offer_id", "recs"), load_partition, "rows long").collect()
    return sum(int(r["rows"]) for r in counts)
