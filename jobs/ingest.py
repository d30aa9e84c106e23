"""ingest: raw offers and events -> validated `offers` and `events` + `quarantine/<table>` with reasons.

    ./submit.sh ingest [--config conf/local.yaml] [--set ingest.max_session_events=500]
    ./submit.sh ingest --set ingest.offers=data/offers.csv --set ingest.events='data/events/*.jsonl'

Reads <root>/raw/offers and raw/events (what generate writes), or a user's files in their place:
parquet, CSV or JSON lines (`ingest.offers`, `ingest.events`, `ingest.format`; README, Bring your own
data); a record whose values do not parse is quarantined with its original text (`unparsable`).

Malformed rows (null keys, unparsable timestamps, bad prices, events on unknown offers) go to
quarantine with their reason; exact duplicates are removed and counted; bot sessions go to
quarantine whole. The job fails unless rows_in = rows_accepted + rows_quarantined + rows_duplicate.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pyspark.sql import functions as F

from retrieval import tables
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.ingest.spark_ingest import check_accounting, ingest_events, ingest_offers, with_unparsable
from retrieval.ingest.spark_read import raw_rows
from retrieval.spark_tables import quarantine_rows, write_quarantine, write_table


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root = cfg.paths.root
    raw_offers, bad_offers = raw_rows(spark, root, tables.RAW_OFFERS, cfg.ingest.offers, cfg.ingest.format)
    raw_events, bad_events = raw_rows(spark, root, tables.RAW_EVENTS, cfg.ingest.events, cfg.ingest.format)
    offers = with_unparsable(ingest_offers(raw_offers, cfg.ingest), bad_offers)
    check_accounting("offers", offers)
    events = with_unparsable(ingest_events(raw_events, offers.accepted, cfg.ingest), bad_events)
    check_accounting("events", events)
    parts = cfg.ingest.events_partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    outputs = {
        "offers": write_table(
            offers.accepted.repartition(parts, "offer_id").sortWithinPartitions("offer_id"),
            root,
            tables.OFFERS,
        ),
        "events": write_table(
            events.accepted.repartition(parts, "session_id").sortWithinPartitions(
                "session_id", "ts", "event", F.col("offer_id").asc_nulls_first(), "query_id", "position"
            ),
            root,
            tables.EVENTS,
        ),
        "quarantine/offers": write_quarantine(
            quarantine_rows(offers.quarantined, tables.RAW_OFFERS.column_names, "ingest").coalesce(1),
            root,
            "offers",
        ),
        "quarantine/events": write_quarantine(
            quarantine_rows(events.quarantined, tables.RAW_EVENTS.column_names, "ingest").coalesce(1),
            root,
            "events",
        ),
    }
    totals = Counter(offers.counts) + Counter(events.counts)
    reasons = dict(sorted((Counter(offers.reasons) + Counter(events.reasons)).items()))
    return {
        **{k: totals[k] for k in ("rows_in", "rows_accepted", "rows_quarantined", "rows_duplicate")},
        "quarantine_reasons": reasons,
        "tables": {
            "offers": {**offers.counts, "quarantine_reasons": offers.reasons},
            "events": {**events.counts, "quarantine_reasons": events.reasons},
        },
        "rows_out": totals["rows_accepted"],
        "outputs": outputs,
        "summary": [
            f"offers: {offers.counts['rows_accepted']:,} accepted of {offers.counts['rows_in']:,}; "
            f"events: {events.counts['rows_accepted']:,} accepted of {events.counts['rows_in']:,}",
            f"quarantined {totals['rows_quarantined']:,} ({', '.join(f'{k} {v}' for k, v in reasons.items())}); "
            f"duplicates removed {totals['rows_duplicate']:,}",
        ],
    }


if __name__ == "__main__":
    job_main("ingest", run, __doc__)
