"""The click-log figures that calibrate the marketplace (retrieval.sessions.calibration) on logs whose
figures are known by hand, and the real log's where ../shared/data has it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from retrieval.report.sections import benchmarks_section
from retrieval.sessions.calibration import log_stats, sr_gnn_filter, table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGINETICA = os.path.join(REPO, "..", "shared", "data", "diginetica")


def test_log_stats_on_a_log_counted_by_hand() -> None:
    a = np.array
    sessions = [a([1, 2, 1]), a([3]), a([1, 4, 5, 6])]
    cats = [a([7, 7, 7]), a([8]), a([7, 8, 8, 9])]
    s = log_stats(sessions, cats)
    assert (s["sessions"], s["clicks"], s["items"]) == (3, 8, 6)
    assert s["top20_share"] == 1.0  # fewer than 20 items: all of them
    assert s["top1pct_share"] == pytest.approx(3 / 8, abs=1e-4)  # one item (1), clicked 3 times
    assert s["next_click_top20_share"] == 1.0
    assert s["repeat_rate"] == pytest.approx(1 / 8, abs=1e-4)  # the second click on 1
    assert s["same_category_next"] == pytest.approx(3 / 5, abs=1e-4)  # 7-7, 7-7, 8-8 of 5 pairs
    assert s["session_length"] == {"mean": 2.67, "median": 3.0, "p90": 3.8, "share_ge_10": 0.0}
    assert log_stats(sessions)["same_category_next"] is None
    with pytest.raises(ValueError, match="no sessions"):
        log_stats([])


def test_sr_gnn_filter_drops_rare_items_then_short_sessions() -> None:
    a = np.array
    sessions = [a([1, 1, 2]), a([1, 9]), a([1, 1, 3, 1])]  # item 1 seen 6 times, the others once
    kept, cats = sr_gnn_filter(sessions, [s * 10 for s in sessions])
    assert [s.tolist() for s in kept] == [[1, 1], [1, 1, 1]]  # [1, 9] -> [1]: too short
    assert cats is not None and [c.tolist() for c in cats] == [[10, 10], [10, 10, 10]]
    assert sr_gnn_filter([], None) == ([], None)


@pytest.mark.skipif(not os.path.isdir(DIGINETICA), reason="../shared/data/diginetica is absent")
def test_the_real_log_is_as_flat_as_its_published_popularity_baseline() -> None:
    from retrieval.sessions.benchmark import load

    s = log_stats([np.asarray(x) for x in load(DIGINETICA).train])
    assert s["sessions"] == 186_670
    # POP's published P@20 on the test week is 0.89%: the train log's top 20 hold ~1% of clicks
    assert 0.005 < s["next_click_top20_share"] < 0.02 and 0.005 < s["top20_share"] < 0.02


def test_the_calibration_results_render_in_the_report() -> None:
    with open(os.path.join(REPO, "benchmarks", "results", "calibration.json"), encoding="utf-8") as f:
        d = json.load(f)
    header, rows = table(d["logs"])
    assert len(header) == 4 and all(len(r) == 4 for r in rows)
    html = "".join(benchmarks_section([d], "benchmarks/results").parts)
    assert "The marketplace beside a real click log" in html and "clicks on the top 20 items" in html
