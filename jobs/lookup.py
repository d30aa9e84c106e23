"""lookup: an offer's title and its recommended offers' titles, to judge the recs table by eye.

    ./submit.sh lookup 1234567 [89101112 ...] [--config conf/local.yaml]
    ./submit.sh lookup                      # three sampled offers
    ./submit.sh lookup 1234567 --set serving.redis_url=redis://localhost:6379/0   # as served

Reads `recs` and `offers` under paths.root; prints each offer (title, category, seller, product)
and its carousel with scores, marking recommendations of the same product cluster where the
synthetic ground truth is there to tell. With serving.redis_url set, the carousels are the ones live
in Redis (publish_recs), read as a serving client reads them, and the version is printed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from retrieval.cli import load_config, parser, setup_logging
from retrieval.report.spark_report import carousels
from retrieval.spark_tables import TableError


def lookup(spark: Any, root: str, offer_ids: Sequence[int], limit: int = 3, store: Any = None) -> list[str]:
    """The lines to print; ``store``: a ``RedisStore`` to read the carousels from, else the recs table."""

    def describe(oid: int, o: dict[str, Any] | None) -> str:
        if o is None:
            return f"{oid} (not in offers)"
        return f"{o['title']!r}  cat {o['category_id']} seller {o['seller_id']} product {o['product_id']}"

    out, served = [], None
    if store is not None:

        def served(ids: list[int]) -> dict[int, list[dict[str, Any]] | None]:
            got = store.get(ids)
            out.append(f"carousels from {store.ns}, version {got.version or '(none published)'}")
            return {
                o: None
                if c is None
                else [{"offer_id": int(i), "score": float(s)} for i, s in zip(*c, strict=True)]
                for o, c in got.recs.items()
            }

    shown = carousels(spark, root, offer_ids, limit, served)
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

    store = None
    if cfg.serving.redis_url:
        from retrieval.serving.store import RedisStore, connect

        store = RedisStore(connect(cfg.serving.redis_url), cfg.serving.namespace)
    spark = get_spark(cfg, "lookup")
    try:
        print("\n".join(lookup(spark, cfg.paths.root, args.offer_ids, store=store)), flush=True)
    except (TableError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
