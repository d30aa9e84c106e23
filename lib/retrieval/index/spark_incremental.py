"""The incremental-recs rule on Spark: after a day of new, changed and deleted offers, which carousels
must be recomputed so that the recs equal a full rebuild, and the updated ``recs`` table.

A carousel changes when it holds a changed or deleted offer, or when a new vector enters it. The
second is found from the other side: a new offer's nearest neighbours (searched ``REVERSE_FACTOR``
times deeper than a carousel, since kNN is not symmetric) whose current k-th recommendation scores
below the new offer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# An incremental update looks for offers whose carousel a new offer enters among this many times
# recs.candidates neighbours of the new offer (kNN is not symmetric; see affected_offers).
REVERSE_FACTOR = 4


def affected_offers(recs: DataFrame, delta: DataFrame, reverse: DataFrame, k: int) -> DataFrame:
    """Offers whose recs must be recomputed after an update (besides the changed offers themselves):
    those whose carousel holds a changed or deleted offer, and those a new vector would enter: found
    among the new offer's nearest neighbours (``reverse``: offer_id = new offer, neighbours/scores) with
    a score above the neighbour's current k-th recommendation (or a carousel shorter than k)."""
    from pyspark.sql import functions as F

    changed = delta.select(F.col("offer_id").alias("rec_id"))
    holding = (
        recs.select("offer_id", F.explode("recs.offer_id").alias("rec_id"))
        .join(changed, "rec_id")
        .select("offer_id")
    )
    kth = recs.select(
        "offer_id",
        F.when(F.size("recs") >= k, F.element_at("recs.score", k))
        .otherwise(F.lit(float("-inf")))
        .alias("kth"),
    )
    entered = (
        reverse.select(F.explode(F.arrays_zip("neighbours", "scores")).alias("n"))
        .select(F.col("n.neighbours").alias("offer_id"), F.col("n.scores").alias("score"))
        .join(kth, "offer_id")
        .where(F.col("score") >= F.col("kth"))
        .select("offer_id")
    )
    return holding.union(entered).distinct()


def updated_recs(
    old: DataFrame,
    delta: DataFrame,
    embeddings: DataFrame,
    k: int,
    candidates: int,
    neighbours: Callable[[DataFrame, int], DataFrame],
    carousels: Callable[[DataFrame], DataFrame],
) -> tuple[DataFrame, int]:
    """(the new ``recs`` table, how many carousels were recomputed): the kept carousels of ``old`` and
    the recomputed ones, for live offers only.

    Args:
        neighbours: (query rows (offer_id, vector), k) -> their k nearest offers in the live index.
        carousels: neighbour rows -> ``recs`` rows (``spark_index.to_recs`` with the product keys).
    """
    from pyspark.sql import functions as F

    fresh = delta.where(~F.col("deleted")).select("offer_id", "vector")
    reverse = neighbours(fresh, REVERSE_FACTOR * candidates)
    todo = (
        affected_offers(old, delta, reverse, k)
        .union(fresh.select("offer_id"))
        .distinct()
        .join(embeddings.select("offer_id"), "offer_id")  # live offers only
    ).cache()
    recomputed = todo.count()
    new = carousels(neighbours(embeddings.join(todo, "offer_id"), candidates))
    kept = old.join(todo, "offer_id", "left_anti").join(delta.select("offer_id"), "offer_id", "left_anti")
    return kept.unionByName(new), recomputed
