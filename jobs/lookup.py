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

from retrieval.cli import load_config, parser, setup_logging
from retrieval.report.spark_report import carousels
from retrieval.spark_tables import TableError


def lookup(spark: Any, root: str, offer_ids: Sequence[int], limit: int = 3) -> list[str]:
    def describe(oid: int, o: dict[str, Any] | None) -> str:
        if o is None:
            return f"{oid} (not in offers)"
        return f"{o['title']!r}  cat {o['category_id']} seller {o['seller_id']} product {o['product_id']}"

    out = []
    shown = carousels(spark, root, offer_ids, limit)
    for c in shown:
        out.append(f"offer {c['offer_id']}: {describe(c['offer_id'], c['offer'])}")
        if not c["found"]:
            out.append("   no recs for this offer (unknown, deleted, or recs not computed)")
            continue
        for rank, rec in enumerate(c["recs"], 1):
            same = " *" if rec["same_cluster"] else ""
            out.append(
                f"  {rank:>3}. {rec['score']:.3f}{same:2} {rec['offer_id']}: {describe(rec['offer_id'], rec['offer'])}"
            )
    if any(r["same_cluster"] is not None for c in shown for r in c["recs"]):
        out.append("(* = same product cluster in the synthetic ground truth)")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    setup_logging()
    p = parser("lookup", __doc__)
    p.add_argument("offer_ids", nargs="*", type=int, help="offer ids (none: three sampled offers)")
    args = p.parse_args(argv)
    cfg, _, _ = load_config("lookup", __doc__, [a for a in (argv or sys.argv[1:]) if not a.isdigit()])
    from retrieval.spark import get_spark

    spark = get_spark(cfg, "lookup")
    try:
        print("\n".join(lookup(spark, cfg.paths.root, args.offer_ids)), flush=True)
    except TableError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
