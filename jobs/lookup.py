"""lookup: an offer's title and its recommended offers' titles, to judge the recs table by eye.

    ./submit.sh lookup 1234567 [89101112 ...] [--config conf/local.yaml]
    ./submit.sh lookup                      # three sampled offers

Reads `recs` and `offers` under paths.root; prints each offer (title, category, seller, product)
and its carousel with scores, marking recommendations of the same product cluster where the
synthetic ground truth is there to tell.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from pyspark.sql import functions as F

from retrieval import tables
from retrieval.cli import load_config, parser, setup_logging
from retrieval.spark_tables import TableError, exists, read_table


def lookup(spark: Any, root: str, offer_ids: Sequence[int], limit: int = 3) -> list[str]:
    recs = read_table(spark, root, tables.RECS)
    offers = read_table(spark, root, tables.OFFERS).select(
        "offer_id", "title", "category_id", "seller_id", "product_id"
    )
    if not offer_ids:
        offer_ids = [
            r["offer_id"]
            for r in recs.where(F.size("recs") > 0)
            .orderBy(F.xxhash64("offer_id"), "offer_id")
            .limit(limit)
            .collect()
        ]
    rows = {r["offer_id"]: r["recs"] for r in recs.where(F.col("offer_id").isin(list(offer_ids))).collect()}
    wanted = set(offer_ids) | {x["offer_id"] for rs in rows.values() for x in rs}
    info = {r["offer_id"]: r for r in offers.where(F.col("offer_id").isin(list(wanted))).collect()}
    cluster: dict[int, int] = {}
    truth_uri = tables.path(root, tables.TRUTH_OFFER_PRODUCT)
    if exists(spark, truth_uri):
        truth = read_table(spark, root, tables.TRUTH_OFFER_PRODUCT)
        cluster = {
            r["offer_id"]: r["cluster_id"]
            for r in truth.where(F.col("offer_id").isin(list(wanted))).collect()
        }

    def describe(oid: int) -> str:
        o = info.get(oid)
        if o is None:
            return f"{oid} (not in offers)"
        return f"{o['title']!r}  cat {o['category_id']} seller {o['seller_id']} product {o['product_id']}"

    out = []
    for oid in offer_ids:
        out.append(f"offer {oid}: {describe(oid)}")
        if oid not in rows:
            out.append("   no recs for this offer (unknown, deleted, or recs not computed)")
            continue
        for rank, rec in enumerate(rows[oid], 1):
            same = " *" if cluster and cluster.get(rec["offer_id"]) == cluster.get(oid) else ""
            out.append(
                f"  {rank:>3}. {rec['score']:.3f}{same:2} {rec['offer_id']}: {describe(rec['offer_id'])}"
            )
    if cluster:
        out.append("(* = same product cluster in the synthetic ground truth)")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    setup_logging()
    p = parser("lookup", __doc__)
    p.add_argument("offer_ids", nargs="*", type=int, help="offer ids (none: three sampled offers)")
    args = p.parse_args(argv)
    cfg, _ = load_config("lookup", __doc__, [a for a in (argv or sys.argv[1:]) if not a.isdigit()])
    from retrieval.spark import get_spark

    spark = get_spark(cfg, "lookup")
    try:
        print("\n".join(lookup(spark, cfg.paths.root, args.offer_ids)), flush=True)
    except TableError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
