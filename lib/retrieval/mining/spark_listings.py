"""The ``listings`` table on Spark: one row per offer shown in a search, graded, with features and propensity.

Features use the training period only (no leakage into the test split): popularity and CTR /
purchase-rate priors are counted on training sessions. A training row's priors are *out of fold*:
training sessions fall into ``listings.prior_folds`` folds by a hash, and a row's priors count the
other folds only. (Leaving just the row's own outcome out is not enough: for a given offer its
clicked rows then get a lower prior than its unclicked rows, a ranker that can recognise the offer
learns "lower prior, more clicks", and on the embedded marketplace that cost XGBoost 0.16 nDCG@10.) Text features (BM25, token overlap) use IDF over the offers' titles, which is content,
not behaviour. The examination curve is fitted once on the driver from aggregated, bounded cells
(a model with one parameter per position), then applied to every row as a column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.config import ListingsSection
from retrieval.mining.listings import LABEL_GRADES, PositionBias, fit_position_bias
from retrieval.tables import LISTING_FEATURES

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

FEATURES = list(LISTING_FEATURES)


def tokens(col: Column) -> Column:
    """Spark twin of ``listings.tokenize``: lower-cased alphanumeric runs."""
    from pyspark.sql import functions as F

    return F.filter(F.split(F.lower(F.coalesce(col, F.lit(""))), "[^0-9a-z]+"), lambda t: F.length(t) > 0)


def searches(events: DataFrame) -> DataFrame:
    """One row per search: query_id, session_id, ts, query_text, listing."""
    from pyspark.sql import functions as F

    return events.where(F.col("event") == "search").select(
        "query_id", "session_id", "ts", "query_text", "listing"
    )


def shown(events: DataFrame, splits: DataFrame) -> DataFrame:
    """Every (search, offer shown) with its grade, narrow: query_id, offer_id, position (1-based),
    label, split, ``_qh`` (a hash of the query's normalised text) and ``_sh`` (a hash of its session).
    A query_id names one search.

    The split and the grades are joined per search (a search's grades as one offer -> grade map)
    before its listing is exploded, so the rows shown, ~100 per search, are never shuffled for them;
    the search's own attributes (session, time, text) stay in the search and are joined back after
    :func:`add_features` has thinned the rows, so they are not carried (persisted, shuffled) ~100 times.
    """
    from pyspark.sql import functions as F

    grade = F.create_map(*[x for k, v in LABEL_GRADES.items() for x in (F.lit(k), F.lit(v))])
    grades = (
        events.where(
            F.col("event").isin(*LABEL_GRADES) & F.col("query_id").isNotNull() & F.col("offer_id").isNotNull()
        )
        .groupBy("query_id", "offer_id")
        .agg(F.max(grade[F.col("event")]).alias("label"))
        .groupBy("query_id")
        .agg(F.map_from_entries(F.collect_list(F.struct("offer_id", "label"))).alias("_grades"))
    )
    per_search = searches(events).join(splits, "session_id").join(grades, "query_id", "left")
    return per_search.select(
        "query_id",
        "split",
        F.xxhash64(F.array_join(tokens(F.col("query_text")), " ")).alias("_qh"),
        F.xxhash64("session_id").alias("_sh"),
        "_grades",
        F.posexplode("listing").alias("_pos", "offer_id"),
    ).select(
        "query_id",
        "offer_id",
        (F.col("_pos") + 1).cast("int").alias("position"),
        F.coalesce(F.element_at("_grades", F.col("offer_id")), F.lit(0)).cast("int").alias("label"),
        "split",
        "_qh",
        "_sh",
    )


def fit_propensity(rows: DataFrame, cfg: ListingsSection, seed: int) -> tuple[PositionBias, dict[str, int]]:
    """Fits the examination curve on training rows; returns it and the size of what it was fitted on.

    Cells are (normalised query text, offer, position) with impressions and clicks, restricted to pairs seen at
    two or more positions. If there are more than ``cfg.propensity_max_rows`` cells, whole pairs are
    sampled (by a hash, so reruns agree) down to that bound: the driver holds a bounded sample, never
    the log.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    k = cfg.propensity_positions
    cells = (
        rows.where((F.col("split") == "train") & (F.col("position") <= k))
        .groupBy("_qh", "offer_id", "position")
        .agg(F.count(F.lit(1)).alias("n"), F.sum((F.col("label") > 0).cast("long")).alias("c"))
        .withColumn("_npos", F.count(F.lit(1)).over(Window.partitionBy("_qh", "offer_id")))
        .where(F.col("_npos") >= 2)
    )
    total = cells.count()
    if total > cfg.propensity_max_rows:
        keep = cfg.propensity_max_rows / total
        cells = cells.where(
            (F.abs(F.xxhash64("_qh", "offer_id", F.lit(seed))) % 1_000_000) < int(keep * 1_000_000)
        )
    pdf: Any = cells.select(F.xxhash64("_qh", "offer_id").alias("g"), "position", "n", "c").toPandas()
    model = fit_position_bias(
        pdf["g"].to_numpy(),
        pdf["position"].to_numpy(),
        pdf["n"].to_numpy(),
        pdf["c"].to_numpy(),
        k,
        cfg.propensity_iterations,
    )
    return model, {"cells_available": int(total), "cells_fitted": len(pdf)}


def propensity_column(model: PositionBias, max_position: int) -> Column:
    """A Column giving the propensity of ``position`` (a lookup array up to the longest listing)."""
    from pyspark.sql import functions as F

    curve = model.propensity(np.arange(1, max_position + 1))
    lookup = F.array(*[F.lit(float(x)) for x in curve])
    return F.coalesce(
        F.element_at(lookup, F.col("position")),
        F.lit(float(model.examination[-1])) * F.pow(F.col("position") / len(model.examination), -model.eta),
    )


@dataclass
class TitleStats:
    avgdl: float
    n_docs: int


def title_index(offers: DataFrame) -> tuple[DataFrame, DataFrame, TitleStats]:
    """(offer_id -> title token frequencies map, title length), (token -> idf), corpus stats."""
    from pyspark.sql import functions as F

    toks = offers.select("offer_id", tokens(F.col("title")).alias("_t"))
    tf = toks.select(
        "offer_id",
        F.map_from_entries(
            F.transform(
                F.array_distinct("_t"), lambda t: F.struct(t, F.size(F.filter("_t", lambda x: x == t)))
            )
        ).alias("title_tf"),
        F.size("_t").alias("title_len"),
    )
    stats = toks.agg(F.count(F.lit(1)).alias("n"), F.avg(F.size("_t")).alias("avgdl")).first()
    assert stats is not None
    n = int(stats["n"])
    idf = (
        toks.select(F.explode(F.array_distinct("_t")).alias("token"))
        .groupBy("token")
        .agg(F.count(F.lit(1)).alias("df"))
        .select("token", F.log(1.0 + (F.lit(n) - F.col("df") + 0.5) / (F.col("df") + 0.5)).alias("idf"))
    )
    return tf, idf, TitleStats(float(stats["avgdl"] or 0.0), n)


def sample_impressions(rows: DataFrame, cfg: ListingsSection, seed: int) -> DataFrame:
    """Keeps every row of a test listing, and of a training listing every clicked (label > 0) row and
    every row in the top ``cfg.keep_top`` positions; of the other training rows (unclicked, below the
    top) a seeded hash keeps ``cfg.negative_rate``. ``weight`` is the inverse of a row's keep
    probability (1, or 1 / rate), so sums over the kept rows estimate sums over all of them."""
    from pyspark.sql import functions as F

    if cfg.negative_rate >= 1.0:
        return rows.withColumn("weight", F.lit(1.0))
    certain = (F.col("split") != "train") | (F.col("label") > 0) | (F.col("position") <= cfg.keep_top)
    drawn = (F.abs(F.xxhash64("query_id", "offer_id", F.lit(seed))) % 1_000_000) < int(
        cfg.negative_rate * 1_000_000
    )
    return rows.where(certain | drawn).withColumn(
        "weight", F.when(certain, F.lit(1.0)).otherwise(F.lit(1.0 / cfg.negative_rate))
    )


def add_features(
    rows: DataFrame,
    events: DataFrame,
    offers: DataFrame,
    splits: DataFrame,
    model: PositionBias,
    cfg: ListingsSection,
    max_position: int,
    seed: int = 0,
    partitions: int | None = None,
) -> DataFrame:
    """Adds propensity and every feature of ``FEATURES`` (see the module docstring) to ``shown`` rows,
    and ``weight``, and the search's session_id, ts and query_text. The features of a row's listing
    (size, price rank and z-score, category share) and the priors see every row shown; then
    :func:`sample_impressions` thins the training rows, before the per-row work (the title and query
    joins, BM25), the search's attributes and the write. ``partitions``: hash-partition the rows by
    query_id into that many partitions before the attributes are joined (the write's layout)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    k = cfg.prior_folds
    rows = rows.withColumn("propensity", propensity_column(model, max_position)).withColumn(
        "_fold",
        F.when(F.col("split") == "train", F.abs(F.col("_sh")) % k).otherwise(F.lit(-1)),
    )
    train = rows.where(F.col("split") == "train")
    # Priors from the training period: clicks per expected examination, purchases per expected examination.
    sums = [
        F.sum("propensity").alias("_exp"),
        F.sum((F.col("label") > 0).cast("double")).alias("_clk"),
        F.sum((F.col("label") == 3).cast("double")).alias("_buy"),
    ]
    per_offer = train.groupBy("offer_id").agg(*sums)
    per_fold = (
        train.groupBy("offer_id", "_fold")
        .agg(*sums)
        .select("offer_id", "_fold", *[F.col(c).alias(f"{c}_f") for c in ("_exp", "_clk", "_buy")])
    )
    glob = train.agg(
        F.sum("propensity").alias("e"),
        F.sum((F.col("label") > 0).cast("double")).alias("c"),
        F.sum((F.col("label") == 3).cast("double")).alias("b"),
    ).first()
    assert glob is not None
    mu_c = float(glob["c"] or 0.0) / max(float(glob["e"] or 0.0), 1e-12)
    mu_b = float(glob["b"] or 0.0) / max(float(glob["e"] or 0.0), 1e-12)
    views = (
        events.where(F.col("event") == "view")
        .join(splits.where(F.col("split") == "train"), "session_id")
        .groupBy("offer_id")
        .agg(F.count(F.lit(1)).alias("_views"))
    )
    tf, idf, stats = title_index(offers)
    attributes = searches(events).select("query_id", "session_id", "ts", "query_text")
    q_idf = (
        attributes.select("query_id", F.explode(F.array_distinct(tokens(F.col("query_text")))).alias("token"))
        .join(idf, "token", "left")
        .groupBy("query_id")
        .agg(
            F.map_from_entries(F.collect_list(F.struct("token", F.coalesce("idf", F.lit(0.0))))).alias(
                "q_idf"
            )
        )
    )

    def other(c: str) -> Column:
        """A training row's count from the other folds (out-of-fold); a test row's from all of training."""
        return F.coalesce(F.col(c), F.lit(0.0)) - F.coalesce(F.col(f"{c}_f"), F.lit(0.0))

    a = cfg.prior_smoothing
    k1, b = cfg.bm25_k1, cfg.bm25_b
    norm = F.lit(k1) * (1.0 - b + b * F.col("title_len") / F.lit(stats.avgdl if stats.avgdl > 0 else 1.0))

    def term(t: Column) -> Column:
        f = F.coalesce(F.col("title_tf")[t], F.lit(0)).cast("double")
        return F.when(f > 0, F.col("q_idf")[t] * f * (k1 + 1.0) / (f + norm)).otherwise(F.lit(0.0))

    listing = Window.partitionBy("query_id")
    by_price = Window.partitionBy("query_id").orderBy(F.col("price").asc_nulls_last())
    head = Window.partitionBy("query_id", "category_id")
    in_context = (
        rows.join(offers.select("offer_id", "price", "category_id"), "offer_id", "left")
        .withColumn("listing_size", F.count(F.lit(1)).over(listing).cast("int"))
        .withColumn("price_rank", F.rank().over(by_price).cast("int"))
        .withColumn(
            "price_z",
            F.coalesce(
                (F.col("price") - F.avg("price").over(listing))
                / F.nullif(F.stddev("price").over(listing), F.lit(0.0)),
                F.lit(0.0),
            ),
        )
        .withColumn(
            "category_share",
            F.when(
                F.col("category_id").isNotNull(),
                F.sum((F.col("position") <= 10).cast("double")).over(head)
                / F.least(F.lit(10), F.col("listing_size")),
            ).otherwise(F.lit(0.0)),
        )
    )
    out = (
        sample_impressions(in_context, cfg, seed)
        .join(tf, "offer_id", "left")
        .join(q_idf, "query_id", "left")
        .join(per_offer, "offer_id", "left")
        .join(per_fold, ["offer_id", "_fold"], "left")
        .join(views, "offer_id", "left")
        .withColumn("pop_log", F.log1p(F.coalesce(F.col("_views"), F.lit(0)).cast("double")))
        .withColumn("ctr_prior", (other("_clk") + a * mu_c) / (other("_exp") + a))
        .withColumn("buy_prior", (other("_buy") + a * mu_b) / (other("_exp") + a))
        .withColumn("_qt", F.coalesce(F.map_keys("q_idf"), F.array().cast("array<string>")))
        .withColumn("bm25", F.aggregate("_qt", F.lit(0.0), lambda acc, t: acc + term(t)))
        .withColumn(
            "token_overlap",
            F.when(
                F.size("_qt") > 0,
                F.size(F.filter("_qt", lambda t: F.coalesce(F.col("title_tf")[t], F.lit(0)) > 0))
                / F.size("_qt"),
            ).otherwise(F.lit(0.0)),
        )
    )
    out = out.select(
        "query_id", "offer_id", "position", "label", "propensity", "weight", "split", "category_id", *FEATURES
    )
    if partitions:
        out = out.repartition(partitions, "query_id")  # the attributes' join below reuses it
    return out.join(attributes, "query_id").select(
        "query_id",
        "offer_id",
        "position",
        "label",
        "propensity",
        "weight",
        "split",
        "session_id",
        "ts",
        "query_text",
        "category_id",
        *FEATURES,
    )


def curve_against_truth(model: PositionBias, truth: DataFrame | None, positions: int = 30) -> dict[str, Any]:
    """The estimated curve over the first ``positions``, and (synthetic data) the true one and the MAE."""
    from retrieval.mining.listings import propensity_mae

    est = model.propensity(np.arange(1, positions + 1))
    out: dict[str, Any] = {
        "estimated": [round(float(x), 5) for x in est],
        "eta_beyond_fit": round(model.eta, 4),
    }
    if truth is not None:
        t = {
            int(r["position"]): float(r["probability"])
            for r in truth.where(f"position <= {positions}").collect()
        }
        true = np.array([t[p] for p in range(1, positions + 1)])
        out["true"] = [round(float(x / true[0]), 5) for x in true]
        out["mae"] = round(propensity_mae(est, true), 5)
    return out


def split_stats(listings: DataFrame) -> dict[str, dict[str, int]]:
    """Per split: searches, rows, and rows of each label grade (``label_0`` .. ``label_3``)."""
    from pyspark.sql import functions as F

    stats = listings.groupBy("split").agg(
        F.countDistinct("query_id").alias("searches"),
        F.count(F.lit(1)).alias("rows"),
        *[F.sum((F.col("label") == g).cast("long")).alias(f"label_{g}") for g in range(4)],
    )
    return {r["split"]: {k: int(v) for k, v in r.asDict().items() if k != "split"} for r in stats.collect()}


def curve_line(curve: dict[str, Any], positions: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 30)) -> str:
    """The examination curve at a few positions, estimated (and true, with the MAE, where known)."""
    at = "/".join(map(str, positions))
    line = f"examination at positions {at}: estimated " + " ".join(
        f"{curve['estimated'][p - 1]:.3f}" for p in positions
    )
    if curve.get("mae") is not None:
        line += (
            "; true "
            + " ".join(f"{curve['true'][p - 1]:.3f}" for p in positions)
            + f"; MAE {curve['mae']:.4f}"
        )
    return line
