"""Progress lines of long driver loops (retrieval.progress), on a fake clock."""

from __future__ import annotations

import logging

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
