"""mine_listings: every search with its listing -> `listings` (graded labels, features, propensities).

    ./submit.sh mine_listings [--config conf/local.yaml] [--set listings.propensity_positions=30]

One row per offer shown: label 0 shown, 1 clicked, 2 carted, 3 purchased; features from the training
period only (price, price rank and z-score in the listing, popularity, CTR and purchase-rate priors,
BM25 and token overlap of query and title, category share); the examination propensity of its
position, from a position-based click model fitted by EM. On synthetic data the metrics compare the
estimated examination curve with the true one (`propensity_mae`, first 30 positions).
"""

from __future__ import annotations

from typing import Any

from pyspark import StorageLevel
from pyspark.sql import functions as F

from retrieval import tables
from retrieval.artifacts import save_json_model
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.mining.spark_listings import (
    add_features,
    curve_against_truth,
    curve_line,
    fit_propensity,
    shown,
    split_stats,
)
from retrieval.mining.spark_pairs import session_splits, test_cutoff
from retrieval.spark_tables import exists, read_table, write_table


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root = cfg.paths.root
    events, offers = read_table(spark, root, tables.EVENTS), read_table(spark, root, tables.OFFERS)
    cutoff = test_cutoff(events, cfg.split)
    splits = session_splits(events, cutoff).persist(StorageLevel.MEMORY_AND_DISK)
    rows = shown(events, splits).persist(StorageLevel.MEMORY_AND_DISK)
    model, fit_info = fit_propensity(rows, cfg.listings, cfg.seed)
    fitted = {
        "model": "position_based_click_model",
        "fitted_on": {"test_start": cutoff, **fit_info},
        **model.to_dict(),
    }
    model_uri = save_json_model(root, "position_bias", fitted)
    max_position = int(rows.agg(F.max("position")).first()[0] or 1)  # type: ignore[index]
    parts = int(spark.conf.get("spark.sql.shuffle.partitions"))
    table = add_features(rows, events, offers, splits, model, cfg.listings, max_position, cfg.seed, parts)
    ordered = table.sortWithinPartitions("query_id", "position")
    uri = write_table(ordered, root, tables.LISTINGS)
    by_split = split_stats(read_table(spark, root, tables.LISTINGS))
    rows.unpersist()
    splits.unpersist()
    has_truth = exists(root, tables.TRUTH_EXAMINATION)
    curve = curve_against_truth(
        model, read_table(spark, root, tables.TRUTH_EXAMINATION) if has_truth else None
    )
    n_searches = sum(s["searches"] for s in by_split.values())
    n_rows = sum(s["rows"] for s in by_split.values())
    train = by_split.get("train", {})
    return {
        "listings": n_searches,
        "rows": n_rows,
        "propensity_mae": curve.get("mae"),
        "propensity": {**curve, **fit_info},
        "by_split": by_split,
        "test_start": cutoff,
        "rows_out": n_rows,
        "outputs": {"listings": uri, "position_bias model": model_uri},
        "summary": [
            f"{n_searches:,} searches -> {n_rows:,} rows; labels (train) "
            + " ".join(f"{g}:{train.get(f'label_{g}', 0):,}" for g in range(4)),
            curve_line(curve),
        ],
    }


if __name__ == "__main__":
    job_main("mine_listings", run, __doc__)
