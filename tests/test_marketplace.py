"""generate + ingest on conf/test.yaml: planted structure, exact row accounting, parity with the pure rules."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from retrieval import stage_metrics, tables
from retrieval.ingest import rules
from retrieval.spark_tables import read_table

pytestmark = pytest.mark.spark


def test_every_injected_bad_row_is_handled_by_its_rule(marketplace: dict[str, Any]) -> None:
    injected = marketplace["generate"]["bad_rows_injected"]
    ingest = marketplace["ingest"]
    assert all(
        injected[k] > 0
        for k in ("null_key", "bad_ts", "bad_price", "unknown_offer", "duplicate", "bot_session")
    )
    expected = {k: v for k, v in injected.items() if k != "duplicate"}
    assert ingest["quarantine_reasons"] == expected
    assert ingest["rows_duplicate"] == injected["duplicate"]


def test_row_accounting_closes(marketplace: dict[str, Any]) -> None:
    m = stage_metrics.read_stage_metrics(marketplace["root"], "ingest")
    assert m["rows_in"] == m["rows_accepted"] + m["rows_quarantined"] + m["rows_duplicate"]
    for t in m["tables"].values():
        assert t["rows_in"] == t["rows_accepted"] + t["rows_quarantined"] + t["rows_duplicate"]
    gen = stage_metrics.read_stage_metrics(marketplace["root"], "generate")
    # what survives ingest is exactly the clean log the generator wrote (nothing clean was lost)
    assert m["tables"]["events"]["rows_accepted"] == gen["events"]
    assert m["tables"]["offers"]["rows_accepted"] == gen["offers"]


def test_quarantine_tables_hold_rows_with_reasons(spark: Any, marketplace: dict[str, Any]) -> None:
    root = marketplace["root"]
    q = read_table(spark, root, tables.quarantine("events"))
    reasons = Counter(r["reason"] for r in q.select("reason").collect())
    expected = {k: v for k, v in marketplace["ingest"]["tables"]["events"]["quarantine_reasons"].items()}
    assert dict(reasons) == expected
    assert q.where("raw is null or job != 'ingest'").count() == 0


def test_validated_tables_match_contracts(spark: Any, marketplace: dict[str, Any]) -> None:
    root = marketplace["root"]
    events = read_table(spark, root, tables.EVENTS)
    offers = read_table(spark, root, tables.OFFERS)
    assert events.where("ts is null or session_id is null").count() == 0
    assert offers.where("offer_id is null or price < 0 or isnan(price)").count() == 0
    assert offers.select("offer_id").distinct().count() == offers.count()


def test_metrics_have_the_contract_keys(marketplace: dict[str, Any]) -> None:
    for stage in ("generate", "ingest"):
        m = stage_metrics.read_stage_metrics(marketplace["root"], stage)
        assert stage_metrics.missing_keys(stage, m) == []
        assert m["config"].endswith(f"{stage}.config.yaml")


def test_planted_structure_is_visible(marketplace: dict[str, Any]) -> None:
    g = marketplace["generate"]
    cfg = marketplace["cfg"]
    assert g["zipf"]["fitted_a"] == pytest.approx(cfg.synth.zipf_a, abs=0.35)
    assert 1.5 < g["offers_per_product"]["mean"] < 6 and g["offers_per_product"]["share_single"] > 0.3
    ctr = g["ctr_by_position"]
    assert ctr["1"] > ctr["3"] > ctr["10"] > ctr["30"]


def test_spark_ingest_equals_the_pure_rules(spark: Any, marketplace: dict[str, Any]) -> None:
    """Parity: the pure rules, run on the same raw rows, give the same reasons and the same accepted rows."""
    root, cfg = marketplace["root"], marketplace["cfg"]
    raw_offers = [r.asDict() for r in read_table(spark, root, tables.RAW_OFFERS).collect()]
    raw_events = [r.asDict(recursive=True) for r in read_table(spark, root, tables.RAW_EVENTS).collect()]
    offer_reasons = Counter(rules.offer_reason(r) for r in raw_offers)
    valid_offers = {r["offer_id"] for r in raw_offers if rules.offer_reason(r) is None}
    reasons = Counter()
    survivors: dict[tuple, int] = Counter()
    for r in raw_events:
        reason = rules.event_reason(r, frozenset(valid_offers))
        if reason:
            reasons[reason] += 1
        else:
            survivors[tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in r.items())] += 1
    duplicates = sum(n - 1 for n in survivors.values())
    distinct = [dict(k) for k in survivors]
    bots = rules.bot_sessions(
        distinct,
        cfg.ingest.max_session_events,
        cfg.ingest.max_events_per_minute,
        cfg.ingest.min_events_for_rate,
    )
    reasons[rules.BOT_SESSION] = sum(1 for r in distinct if r["session_id"] in bots)
    spark_events = marketplace["ingest"]["tables"]["events"]
    assert dict(reasons) == spark_events["quarantine_reasons"]
    assert duplicates == spark_events["rows_duplicate"]
    assert {k: v for k, v in offer_reasons.items() if k} == marketplace["ingest"]["tables"]["offers"][
        "quarantine_reasons"
    ]
    accepted = {
        (r["session_id"], r["event"], r["offer_id"], r["query_id"], r["position"])
        for r in distinct
        if r["session_id"] not in bots
    }
    got = {
        (r.session_id, r.event, r.offer_id, r.query_id, r.position)
        for r in read_table(spark, root, tables.EVENTS).collect()
    }
    assert got == accepted
