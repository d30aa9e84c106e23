"""From nearest neighbours to a recommendation carousel (pure Python): the rules DESIGN.md gives.

An offer's carousel is its nearest offers by embedding, best first, with the offer itself and every
other offer of its product removed, offers of one product collapsed to the best-scoring one, and at
most ``category_cap`` offers per category when a cap is set. "Same product" is the catalogue's
``product_id``; where it is null, the product the offer's photo, title or look matches, else its
category and normalised title, whoever sells it, unless a near duplicate among its nearest offers
lends it its key (``index.matching``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def carousel(
    query_id: int,
    query_key: str,
    candidates: Sequence[tuple[int, float, str, int | None]],
    k: int,
    category_cap: int = 0,
) -> list[tuple[int, float]]:
    """The top-``k`` (offer_id, score) of ``candidates`` (offer_id, score, product key, category).

    Candidates are taken best score first (ties: smaller id); the query offer and its product are
    dropped, each product key is kept once, and with ``category_cap`` > 0 a category fills at most
    that many slots.
    """
    out: list[tuple[int, float]] = []
    seen_keys = {query_key}
    per_category: dict[int | None, int] = {}
    for offer_id, score, key, category in sorted(candidates, key=lambda c: (-c[1], c[0])):
        if offer_id == query_id or key in seen_keys:
            continue
        if category_cap and per_category.get(category, 0) >= category_cap:
            continue
        seen_keys.add(key)
        per_category[category] = per_category.get(category, 0) + 1
        out.append((int(offer_id), float(score)))
        if len(out) == k:
            break
    return out


def recs_metrics(
    stats: dict[str, Any],
    recall: dict[str, dict[str, Any]],
    k: int,
    mode: str,
    recomputed: int,
    patched: int = 0,
    truth: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """precompute_recs' metrics and summary from its table statistics (``spark_index.recs_stats``),
    Recall@20 figures (``spark_evaluation.recs_recall``) and, on synthetic data (``truth``), their
    ceiling, how often a carousel shows one true product twice (``spark_evaluation.duplicate_products``,
    ``"duplicates"``) and how well offers without product_id were matched (``"matching"``)."""
    share = recomputed / max(stats["live"], 1)
    incremental = (
        f"; incremental: {recomputed:,} recomputed ({share:.1%} of the catalogue), "
        f"{patched:,} patched with entering offers ({patched / max(stats['live'], 1):.1%})"
        if mode != "full"
        else ""
    )
    product, offer = recall["product"], recall["offer"]
    out: dict[str, Any] = {
        **{
            key: stats[key]
            for key in ("offers", "offers_with_recs", "offers_with_k_recs", "catalog_coverage")
        },
        "k": k,
        "recall_at_20_test_pairs": product["recs"],
        "recall_at_20_baselines": {m: v for m, v in product.items() if m != "recs"},
        "recall_at_20_offer_level": offer,
        "mode": mode,
        "recomputed": recomputed,
        "patched": patched,
        "rows_out": stats["offers"],
        "summary": [
            f"{stats['offers']:,} offers with recs ({stats['offers_with_k_recs']:,} with all {k}); "
            f"catalogue coverage {stats['catalog_coverage']:.3f}{incremental}",
            "Recall@20 on test co-clicks of another product, by product: "
            + ", ".join(f"{m} {v}" for m, v in product.items())
            + "; by offer: "
            + ", ".join(f"{m} {v}" for m, v in offer.items()),
        ],
    }
    if "share_of_ceiling" in recall:
        out["recall_at_20_test_pairs_ceiling"] = product.get("ceiling")
        out["share_of_ceiling"] = recall["share_of_ceiling"]
        out["summary"].append(
            f"share of the ceiling (the generator's best carousels, {recall['ceiling_queries']} queries): "
            + ", ".join(f"{m} {v}" for m, v in recall["share_of_ceiling"].items())
        )
    if truth is not None:  # synthetic data: the generator's truth grades the product collapse
        dup, m = truth["duplicates"], truth["matching"]
        out["duplicate_products"], out["product_matching"] = dup, m
        out["summary"] += [
            f"offers without product_id matched to a product: {sum(m['matched'].values()):,} of "
            f"{m['offers_without_product_id']:,} ({m['matched']}), precision {m['precision']}, recall "
            f"{m['recall']} (of {m['matchable']:,} whose product the catalogue knows)",
            f"carousels showing one product twice (the generator's truth): {dup['share']:.1%}, "
            f"{dup['repeated_slots']:.2f} repeated slots of {k} on average",
        ]
    return out
