"""The scale ladder's arithmetic (pure): growth exponents, the event log's totals by stage, the cost
model at the reference scale, and the report's section of a ladder result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from benchmarks.scale import event_totals, exponent, fits
from benchmarks.scale_cost import cost_model


def _stage(seconds: float, rows_in: int, rows_out: int, **metrics: Any) -> dict[str, Any]:
    return {
        "seconds": seconds,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "peak_rss": {"jvm": 2 * 2**30},
        "result_bytes": 10_000,
        "metrics": metrics,
    }


def _state() -> dict[str, Any]:
    def rung(f: float) -> dict[str, Any]:
        n = int(60_000 * f)
        return {
            "factor": f,
            "stages": {
                "ingest": _stage(20 * f, 500_000 * f, 500_000 * f),
                "mine_pairs": _stage(6 * f**1.2, 500_000 * f, 230_000 * f),
                "mine_listings": _stage(
                    130 * f, 500_000 * f, 4_700_000 * f, listings=96_000 * f, rows=4_700_000 * f
                ),
                "embed_offers": _stage(4 * f, n, n),
                "build_index": _stage(4 * f, n, n),
                "precompute_recs": _stage(
                    30 * f**1.5,
                    n,
                    n,
                    recall_at_20_test_pairs=0.2,
                    recall_at_20_baselines={"popularity": 0.16},
                ),
                "delta": {"offers": n, "changed_or_deleted": n // 100},
                "incremental_precompute_recs": _stage(5 * f, n, n, recomputed=n // 20),
                "train_encoder": _stage(60 * f, n, n, recall_at_50={"encoder": 0.25, "popularity": 0.2}),
            },
        }

    return {"rungs": {"1x": rung(1.0), "4x": rung(4.0)}}


def test_growth_exponents_between_rungs() -> None:
    assert exponent(10, 40, 100, 400) == pytest.approx(1.0)
    assert exponent(10, 80, 100, 400) == pytest.approx(1.5)
    assert exponent(0, 1, 1, 2) is None and exponent(1, 2, 3, 3) is None
    got = fits(_state())
    assert got["ingest"][0]["b"] == pytest.approx(1.0)
    assert got["mine_pairs"][0]["b"] == pytest.approx(1.2, abs=1e-3)
    assert got["precompute_recs"][0]["b"] == pytest.approx(1.5, abs=1e-3)
    assert "delta" not in got  # no seconds: not a fitted stage


def test_the_cost_model_prices_the_reference_from_the_largest_rung() -> None:
    cm = cost_model(_state(), gpu_check="/nonexistent", cores=2)
    assert cm["measured_at"] == "4x"
    # ingest: 80 s x 2 cores for 2M events; a day is 20M searches x (2M events / 384k searches)
    events_day = 20e6 * 2e6 / 384_000
    assert cm["daily"]["core_hours"]["ingest_events"] == pytest.approx(160 / 2e6 * events_day / 3600, abs=0.1)
    # a full rebuild's recs: a carousel costs the rung's per offer times sqrt(250M / 240k)
    per = 30 * 4**1.5 * 2 / 240_000
    assert cm["full_rebuild"]["core_hours"]["precompute_recs"] == pytest.approx(
        per * 250e6 * (250e6 / 240_000) ** 0.5 / 3600, rel=1e-3
    )
    # the recs refresh: 5% of the catalogue recomputed at a 1% delta, scaled to 0.8%
    assert cm["daily"]["core_hours"]["recs_refresh"] == pytest.approx(
        per * 250e6 * 0.05 * 0.8 * (250e6 / 240_000) ** 0.5 / 3600, rel=1e-2
    )
    assert cm["cluster"]["daily_cores"] == -(-cm["daily"]["total_core_hours"] // 4)
    assert cm["assumptions"] and cm["weekly_retrain"]["gpu_hours"]["encoder"] is None  # no GPU rates


def test_event_totals_split_collects_from_broadcasts_by_stage(tmp_path: Path) -> None:
    """A rolled event log (Spark 4: a directory per application): a collect's result bytes count for
    its job group, a broadcast job's (an async SQL execution) apart, with the largest one."""
    app = tmp_path / "eventlog_v2_app-1"
    app.mkdir()
    lines = [
        {
            "Event": "SparkListenerJobStart",
            "Job ID": 0,
            "Properties": {"spark.jobGroup.id": "ingest"},
            "Stage Infos": [{"Stage ID": 0, "Details": "collect at x.py:1"}],
        },
        {
            "Event": "SparkListenerJobStart",
            "Job ID": 1,
            "Properties": {"spark.jobGroup.id": "ingest"},
            "Stage Infos": [{"Stage ID": 1, "Details": "SQLExecution$.$anonfun$withThreadLocalCaptured$2"}],
        },
        {
            "Event": "SparkListenerTaskEnd",
            "Stage ID": 0,
            "Task Type": "ResultTask",
            "Task Metrics": {"Result Size": 100},
        },
        {
            "Event": "SparkListenerTaskEnd",
            "Stage ID": 1,
            "Task Type": "ResultTask",
            "Task Metrics": {"Result Size": 700, "Shuffle Write Metrics": {"Shuffle Bytes Written": 5}},
        },
        {
            "Event": "SparkListenerTaskEnd",
            "Stage ID": 1,
            "Task Type": "ShuffleMapTask",
            "Task Metrics": {"Result Size": 30},
        },
    ]
    # rolled: the job starts are in the first file, the task ends in the second (and a tenth file
    # sorts before the second by name, not by number)
    (app / "events_1_app-1").write_text("\n".join(json.dumps(e) for e in lines[:2]) + "\n")
    (app / "events_2_app-1").write_text("\n".join(json.dumps(e) for e in lines[2:4]) + "\n")
    (app / "events_10_app-1").write_text(json.dumps(lines[4]) + "\n")
    (app / "appstatus_app-1").write_text("")
    got = event_totals(str(tmp_path), by_group=True)["ingest"]
    assert (got["tasks"], got["result_bytes"], got["broadcast_bytes"], got["broadcast_max_bytes"]) == (
        3,
        130,
        700,
        700,
    )
    assert event_totals(str(tmp_path))["shuffle_write_bytes"] == 5


def test_the_report_shows_a_ladder_result() -> None:
    from retrieval.report.sections import benchmarks_section, scale_tables

    state = _state()
    d = {
        "kind": "scale",
        "rungs": state["rungs"],
        "fits": fits(state),
        "cost_model": cost_model(state, "/x", 2),
        "stages_order": ["ingest", "mine_pairs", "precompute_recs"],
        "command": "python -m benchmarks.scale",
    }
    t = scale_tables(d)
    assert [r[0] for r in t["costs"]][:3] == ["ingest", "mine_pairs", "precompute_recs"]
    assert t["headers"][1:5] == ["1x s", "1x rows", "1x peak RSS GB", "1x MB to driver"]
    ingest = t["costs"][0]
    assert ingest[1:4] == [20.0, 500_000, 2.0] and ingest[-1] == "1.00"
    assert t["quality"][1] == ["4x", 0.2, 0.16, 0.25, 0.2]
    page = "".join(benchmarks_section([d], "results").parts)
    assert "Scale ladder" in page and "full rebuild (250M offers)" in page
    assert page.count("<img") == 2  # time and memory against size, log-log
