"""generate: the embedded synthetic marketplace -> raw offers and events, plus its ground truth.

    ./submit.sh generate [--config conf/local.yaml] [--set synth.sessions=200000]

Writes raw/offers and raw/events (with bad rows injected at synth.bad_row_rate, counted per kind),
truth/offer_product, truth/relevance and truth/examination under paths.root; the metrics show the
planted structure (Zipf popularity, offers per product, click-through rate by position).
"""

from __future__ import annotations

from typing import Any

from retrieval import tables
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.spark_tables import write_table
from retrieval.synth.spark_generate import generate, injected_counts, planted_structure


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    gen = generate(spark, cfg)
    root = cfg.paths.root
    outputs = {}
    for contract, df in (
        (tables.RAW_OFFERS, gen.raw_offers),
        (tables.RAW_EVENTS, gen.raw_events),
        (tables.TRUTH_OFFER_PRODUCT, gen.truth_offer_product),
        (tables.TRUTH_RELEVANCE, gen.truth_relevance),
        (tables.TRUTH_EXAMINATION, gen.truth_examination),
    ):
        outputs[contract.name] = write_table(df, root, contract)
    injected = injected_counts(gen)
    stats = planted_structure(gen, cfg)
    offers = gen.truth_offer_product.count()
    events = sum(stats["events_by_type"].values())
    raw_rows = gen.raw_offers.count() + gen.raw_events.count()
    gen.unpersist()
    z, opp, ctr = stats["zipf"], stats["offers_per_product"], stats["ctr_by_position"]
    return {
        "offers": offers,
        "events": events,
        "bad_rows_injected": injected,
        "rows_out": raw_rows,
        **stats,
        "outputs": outputs,
        "summary": [
            f"{offers:,} offers of {stats['products']:,} products; {events:,} events in {stats['sessions']:,} sessions",
            f"bad rows injected: {sum(injected.values()):,} ({', '.join(f'{k} {v}' for k, v in injected.items())})",
            f"popularity Zipf a: configured {z['configured_a']}, fitted {z['fitted_a']}; "
            f"offers/product mean {opp['mean']}, max {opp['max']}, single-seller share {opp['share_single']}",
            "CTR by position 1/2/3/5/10/20/30: "
            + " ".join(str(ctr.get(str(p))) for p in (1, 2, 3, 5, 10, 20, 30)),
        ],
    }


if __name__ == "__main__":
    job_main("generate", run, __doc__)
