"""The evaluation report: pure HTML building, and the evaluate stage on the tiny marketplace."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
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
    # the only script is the page's own self-check; a cell's "<script>" is text
    assert page.count("<script>") == 1 and "&lt;script&gt;" in page and "a &lt; b &amp; c" in page
    p = Parsed()
    p.feed(page)
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 1 and imgs[0]["src"].startswith("data:image/png;base64,") and imgs[0]["alt"] == "bars"
    assert not any(
        a.get("href", "").startswith("http") or a.get("src", "").startswith("http") for _, a in p.tags
    )
    assert page.count('class="missing"') == 2  # the stage that has not run, and the empty table
    assert re.search(r'<td class="num">1,234</td>', page)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless Chromium: `apt-get install chromium` (.ci/run installs it)"
)
BODY = re.compile(r"<body([^>]*)>")


def chromium(page: Path, tmp: Path, *args: str) -> str:
    """Runs headless Chromium on ``page`` (own profile, nothing fetched) and returns its stdout."""
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        *args,
        page.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def rendered(page: Path, tmp: Path) -> dict[str, int]:
    """What the page's self-check found once Chromium loaded it (counts on <body data-...>)."""
    dom = chromium(page, tmp, "--virtual-time-budget=5000", "--dump-dom")
    m = BODY.search(dom)
    assert m, dom[:500]
    attrs = dict(re.findall(r'data-([a-z-]+)="(\d+)"', m.group(1)))
    assert attrs.get("rendered") == "1", f"the page's self-check did not run: {m.group(0)}"
    return {k: int(v) for k, v in attrs.items()}


def screenshot(page: Path, tmp: Path, height: int) -> np.ndarray:
    shot = tmp / "screenshot.png"
    chromium(page, tmp, f"--window-size=1280,{height}", f"--screenshot={shot}")
    import matplotlib.image

    return np.asarray(matplotlib.image.imread(str(shot)))


@needs_chromium
@pytest.mark.browser
def test_browser_self_check_catches_a_broken_image(tmp_path: Path) -> None:
    png = plots.grouped_bars(["@5"], {"a": [0.5]}, "t", "nDCG", "cutoff")
    page = tmp_path / "page.html"
    s = Section("x", "X").images([(png, "ok"), (b"not a png", "broken")]).table(["a"], [[1]])
    page.write_text(render("T", "s", [s]), encoding="utf-8")
    assert rendered(page, tmp_path) == {
        "images": 2,
        "broken-images": 1,
        "tables": 1,
        "empty-tables": 0,
        "rendered": 1,
    }


@pytest.fixture(scope="module")
def report(spark: Any, trained: dict[str, Any]) -> dict[str, Any]:
    from conftest import TEST_CONFIG
    from jobs import evaluate
    from retrieval.cli import run_stage

    return run_stage(spark, trained["cfg"], "evaluate", evaluate.run, TEST_CONFIG)


@pytest.mark.slow
def test_evaluate_writes_every_section_with_figures(report: dict[str, Any]) -> None:
    from retrieval import storage

    out = report
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
    if "evaluate_visual" in out["stages_reported"]:
        assert "Street query -&gt; shop gallery" in page or "accuracy@5 by method" in page
    else:
        assert "evaluate_visual has not run" in page
    assert "bot_session" in page  # quarantine reasons of the run
    assert out["stages_reported"][:5] == [
        "generate",
        "ingest",
        "mine_pairs",
        "mine_listings",
        "train_encoder",
    ]


@pytest.mark.slow
@needs_chromium
@pytest.mark.browser
def test_report_renders_in_headless_chromium(report: dict[str, Any], tmp_path: Path) -> None:
    """The real report, opened from disk: every image decodes, no table is empty, the page is drawn."""
    from retrieval import storage

    page = Path(storage.local_path(report["report"]))
    found = rendered(page, tmp_path)
    assert found["images"] >= 3 and found["broken-images"] == 0, found
    assert found["tables"] >= 3 and found["empty-tables"] == 0, found
    pixels = screenshot(page, tmp_path, 3000)
    assert pixels.shape[:2] == (3000, 1280)
    rgb = pixels[..., :3]
    header = np.array([0x23, 0x39, 0x5D]) / 255.0  # the page's header colour: the CSS was applied
    assert np.abs(rgb[20, 600] - header).max() < 0.02
    # something is drawn all the way down (figures and tables), not a blank page under the header
    drawn_rows = (rgb.reshape(3000, -1).std(axis=1) > 0.01).mean()
    assert drawn_rows > 0.5, drawn_rows
    if os.environ.get("RETRIEVAL_KEEP_SCREENSHOT"):
        shutil.copy(tmp_path / "screenshot.png", os.environ["RETRIEVAL_KEEP_SCREENSHOT"])
