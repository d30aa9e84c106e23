"""The incremental-recs rule on Spark: after a day of new, changed and deleted offers, which carousels
must change so that the recs equal a full rebuild, and the updated ``recs`` table.

A carousel changes when it holds a changed or deleted offer, or when a new vector enters it. The
first kind is recomputed (the offer that leaves, or whose score and product may have changed, can
let in a candidate the carousel never kept). The second is found from the other side: a new offer's
nearest neighbours (searched ``REVERSE_FACTOR`` times deeper than a carousel, since kNN is not
symmetric) whose current k-th recommendation scores below the new offer. Such a carousel is patched
rather than searched again: with no category cap, the rebuild's carousel of the old candidates and
the entering ones is the carousel of the old carousel and the entering ones (see
:func:`entering_offers`), so only its k offers and the entering ones are collapsed again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# An incremental update looks for offers whose carousel a new offer enters among this many times
# recs.candidates neighbours of the new offer (kNN is not symmetric; see entering_offers), probing
# this many times the index's nprobe lists: the planned nprobe hits its recall at depth 10, and a
# carousel a new offer enters but the reverse search misses keeps its old offers. What it finds is
# then kept only where the carousel's own search would reach the new offer (spark_index.probe_reachable).
REVERSE_FACTOR = 4
REVERSE_PROBE_FACTOR = 4


class Update(NamedTuple):
    recs: DataFrame  # the new recs table
    recomputed: int  # carousels searched again
    patched: int  # carousels that new offers entered, merged without a search


def holding_offers(recs: DataFrame, delta: DataFrame) -> DataFrame:
    """(offer_id): carousels of ``recs`` that hold a changed or deleted offer."""
    from pyspark.sql import functions as F

    changed = delta.select(F.col("offer_id").alias("rec_id"))
    return (
        recs.select("offer_id", F.explode("recs.offer_id").alias("rec_id"))
        .join(changed, "rec_id")
        .select("offer_id")
        .distinct()
    )


def entering_offers(recs: DataFrame, reverse: DataFrame, k: int) -> DataFrame:
    """(offer_id, rec_id, score, full): new offers ``rec_id`` that would enter the carousel of
    ``offer_id``: found among the new offer's nearest neighbours (``reverse``: offer_id = new offer,
    neighbours/scores) with a score at or above the carousel's k-th recommendation; ``full`` is false
    for a carousel shorter than k (every candidate it searched was collapsed away), which a new offer
    may enter by pushing a kept candidate out of the search's depth.

    Why a full carousel can be patched (no category cap): :func:`recs.carousel` walks candidates best
    first and drops only the query's product, products already taken and everything after the k-th.
    Adding a candidate e of a product not yet taken puts e at its rank and shifts the rest, so the
    result is the top k of (old carousel + e); e of a product already taken either replaces that
    offer (higher score) or is dropped. Either way no candidate outside the old carousel comes in, so
    ``carousel(old carousel + entering)`` equals the rebuild's ``carousel(all candidates + entering)``
    (tests/test_index.py checks it on random carousels, ties included). One difference remains at the
    search's depth: a rebuild searches recs.candidates neighbours, so each entering offer pushes the
    deepest one out; where that one was the carousel's k-th and an entering offer replaced another of
    its product, the rebuild's carousel is one short and the patch keeps it (the test of equality with
    a rebuild allows 1% of carousels to differ, as it does for the approximate search).
    """
    from pyspark.sql import functions as F

    kth = recs.select(
        "offer_id",
        (F.size("recs") >= k).alias("full"),
        F.when(F.size("recs") >= k, F.element_at("recs.score", k))
        .otherwise(F.lit(float("-inf")))
        .alias("kth"),
    )
    return (
        reverse.select(
            F.col("offer_id").alias("rec_id"), F.explode(F.arrays_zip("neighbours", "scores")).alias("n")
        )
        .select(F.col("n.neighbours").alias("offer_id"), "rec_id", F.col("n.scores").alias("score"))
        .join(kth, "offer_id")
        .where(F.col("score") >= F.col("kth"))
        .select("offer_id", "rec_id", "score", "full")
    )


def updated_recs(
    old: DataFrame,
    delta: DataFrame,
    embeddings: DataFrame,
    k: int,
    candidates: int,
    neighbours: Callable[[DataFrame, int, int], DataFrame],
    carousels: Callable[[DataFrame], DataFrame],
    patch: bool = True,
    reachable: Callable[[DataFrame], DataFrame] | None = None,
) -> Update:
    """The new ``recs`` table: the kept carousels of ``old``, the patched ones and the recomputed ones,
    for live offers only. Recomputed: new and changed offers, carousels holding a changed or deleted
    offer, and those a new offer enters when they cannot be patched (shorter than k, or ``patch``
    false: with a category cap, an entering offer can push out one of its category and let in a
    candidate the old carousel never kept).

    Args:
        neighbours: (query rows (offer_id, vector), k, nprobe factor) -> their k nearest offers in
            the live index, probing the factor times the index's nprobe lists.
        carousels: neighbour rows (offer_id, neighbours, scores) -> ``recs`` rows
            (``spark_index.to_recs`` with the product keys).
        reachable: entering rows -> those a search from the carousel's offer can return
            (``spark_index.probe_reachable``): the reverse search probes wider than a rebuild would.
    """
    from pyspark.sql import functions as F

    fresh = delta.where(~F.col("deleted")).select("offer_id", "vector")
    live = embeddings.select("offer_id")
    reverse = neighbours(fresh, REVERSE_FACTOR * candidates, REVERSE_PROBE_FACTOR)
    # cached before the reachability filter too: it reads its input twice (the vectors' join and the
    # final one), which would otherwise run the reverse search twice
    entering = entering_offers(old, reverse, k).cache()
    if reachable is not None:
        entering = reachable(entering).cache()
    searched_again = entering if not patch else entering.where(~F.col("full"))
    todo = (
        holding_offers(old, delta)
        .union(searched_again.select("offer_id"))
        .union(fresh.select("offer_id"))
        .distinct()
        .join(live, "offer_id")
    ).cache()
    recomputed = todo.count()
    untouched = old.join(todo, "offer_id", "left_anti").join(
        delta.select("offer_id"), "offer_id", "left_anti"
    )
    patches = (
        entering.where(F.col("full"))
        .join(untouched.select("offer_id"), "offer_id")
        .groupBy("offer_id")
        .agg(F.collect_list(F.struct("rec_id", "score")).alias("entering"))
        .cache()
        if patch
        else None
    )
    patched = patches.count() if patches is not None else 0
    found = neighbours(embeddings.join(todo, "offer_id"), candidates, 1)
    if patches is not None:
        merged = patches.join(untouched, "offer_id").select(
            "offer_id",
            F.concat("recs.offer_id", "entering.rec_id").alias("neighbours"),
            F.concat("recs.score", "entering.score").alias("scores"),
        )
        found = found.unionByName(merged.select(*found.columns))
        untouched = untouched.join(patches.select("offer_id"), "offer_id", "left_anti")
    return Update(untouched.unionByName(carousels(found)), recomputed, patched)
