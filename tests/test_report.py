"""The evaluation report: pure HTML building, and the evaluate stage on the tiny marketplace."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest

from retrieval.report import plots
from retrieval.report.html import Section, render


class Parsed(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_sections_escape_and_inline_everything() -> None:
    png = plots.grouped_bars(["@5", "@10"], {"a": [0.5, 0.6], "b": [0.4, None]}, "t", "nDCG", "cutoff")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    s = (
        Section("x", "X <1>")
        .text("a < b & c")
        .table(["k", "v"], [["<script>", 0.5], ["n", 1234]])
        .images([(png, "bars")])
    )
    page = render(
        "title",
        "sub",
        [s, Section("y", "Y").missing("stage y has not run"), Section("z", "Z").table(["a"], [])],
    )
    assert "<script>" not in page and "&lt;script&gt;" in page and "a &lt; b &amp; c" in page
    p = Parsed()
    p.feed(page)
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 1 and imgs[0]["src"].startswith("data:image/png;base64,") and imgs[0]["alt"] == "bars"
    assert not any(
        a.get("href", "").startswith("http") or a.get("src", "").startswith("http") for _, a in p.tags
    )
    assert page.count('class="missing"') == 2  # the stage that has not run, and the empty table
    assert re.search(r'<td class="num">1,234</td>', page)


@pytest.mark.slow
def test_evaluate_writes_every_section_with_figures(spark: Any, trained: dict[str, Any]) -> None:
    from conftest import TEST_CONFIG
    from jobs import evaluate
    from retrieval import storage
    from retrieval.cli import run_stage

    out = run_stage(spark, trained["cfg"], "evaluate", evaluate.run, TEST_CONFIG)
    with open(storage.local_path(out["report"]), encoding="utf-8") as f:
        page = f.read()
    for section in ("run", "candidates", "ranking", "visual", "benchmarks", "examples"):
        assert f'<section id="{section}">' in page
    assert page.count("data:image/png;base64,") >= 3  # durations, Recall@K warm and cold
    # other tests may have run later stages on this fixture: a stage that ran shows its examples,
    # one that has not says so instead of showing nothing
    if "precompute_recs" in out["stages_reported"]:
        assert "Recommendations for:" in page
    else:
        assert "precompute_recs has not run" in page
    assert "visual search is not built yet" in page
    assert "bot_session" in page  # quarantine reasons of the run
    assert out["stages_reported"][:5] == [
        "generate",
        "ingest",
        "mine_pairs",
        "mine_listings",
        "train_encoder",
    ]
