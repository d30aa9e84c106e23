"""Progress lines of long driver loops (retrieval.progress), on a fake clock, and of a stage's running
Spark stages (Spark's status tracker)."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from retrieval.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_lines_at_steady_intervals_with_rate_and_time_left(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    with (
        caplog.at_level(logging.INFO, logger="retrieval.progress"),
        Progress("epoch 1/3", total=100, unit="steps", every_s=10, clock=clock) as p,
    ):
        for _ in range(100):
            clock.t += 0.5  # 2 steps/s: a line every 20 steps
            p.update(1, loss="1.0")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5 + 1  # at 10, 20, 30, 40, 50 s, and the closing line
    assert lines[0] == "epoch 1/3: 20/100 steps (20%), 2.0 steps/s, 10s elapsed, ~40s left, loss 1.0"
    assert lines[-1] == "epoch 1/3: 100/100 steps (100%), 2.0 steps/s, 50s elapsed, loss 1.0"


def test_unknown_total_quiet_and_disabled(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="retrieval.progress"):
        with Progress("merge", unit="shards", every_s=0, clock=clock) as p:  # only the closing line
            for _ in range(3):
                clock.t += 100
                p.update()
        with Progress("rank 1", total=5, every_s=1, clock=clock, enabled=False) as q:
            clock.t += 10
            q.update(5)
    assert [r.getMessage() for r in caplog.records] == ["merge: 3 shards, 0.01 shards/s, 5m00s elapsed"]


def test_a_spark_stage_line_says_how_far_each_running_stage_is() -> None:
    from retrieval.progress import spark_stage_line

    stages = [
        {"job": 3, "stage": 7, "name": "parquet", "tasks": 400, "done": 180, "running": 2, "failed": 0},
        {"job": 4, "stage": 9, "name": "collect", "tasks": 8, "done": 0, "running": 2, "failed": 1},
    ]
    assert spark_stage_line("stage mine_listings", stages, 95.0) == (
        "stage mine_listings: 1m35s elapsed; job 3 stage 7 (parquet): 180/400 tasks (45%), 2 running; "
        "job 4 stage 9 (collect): 0/8 tasks (0%), 2 running, 1 failed"
    )
    assert spark_stage_line("stage x", [], 1.0) is None


@pytest.mark.spark
def test_spark_progress_reports_a_running_stage_of_its_group(
    spark: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A Spark job of the stage's job group that runs for a few seconds gets progress lines from
    Spark's status tracker while it runs; other groups' jobs get none."""
    import time

    from retrieval.progress import SparkProgress

    def slow(rows: Any) -> Any:
        import time

        time.sleep(0.4)
        return rows

    caplog.set_level(logging.INFO, logger="retrieval.progress")
    sc = spark.sparkContext
    sc.setJobGroup("progress-test", "a slow stage")
    with SparkProgress(sc, "progress-test", every_s=0.3) as p:
        assert sc.parallelize(range(16), 8).mapPartitions(slow).count() == 16
    lines = [r.getMessage() for r in caplog.records if "progress-test" in r.getMessage()]
    assert p.lines >= 1 and lines, "no progress line while the job ran"
    assert re.search(r"stage progress-test: \d+s elapsed; job \d+ stage \d+ \(.+\): \d+/8 tasks", lines[0])
    sc.setJobGroup("elsewhere", "another stage")
    with SparkProgress(sc, "progress-test", every_s=0.3) as quiet:
        sc.parallelize(range(4), 2).mapPartitions(slow).count()
        time.sleep(0.4)
    assert quiet.lines == 0
