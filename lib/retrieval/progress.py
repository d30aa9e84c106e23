"""Progress of long driver-side loops, as log lines at steady intervals (not a terminal bar).

Batch jobs run under spark-submit, YARN or a scheduler, where output goes to a log file: a bar that
redraws itself with carriage returns becomes thousands of lines there. :class:`Progress` logs one line
every ``every_s`` seconds (and at the end) with the count, the share done, the rate and the time left::

    with Progress("encoder epoch 3", total=feed.steps, unit="steps") as p:
        for batch in feed.epoch(3):
            ...
            p.update(1, loss=f"{loss:.4f}")
"""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import Any

log = logging.getLogger("retrieval.progress")


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class Progress:
    """Counts work done and logs ``what: done/total (pct), rate, elapsed, left`` every ``every_s`` seconds."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        unit: str = "items",
        every_s: float = 15.0,
        logger: logging.Logger | None = None,
        clock: Any = time.monotonic,
        enabled: bool = True,
    ) -> None:
        """``every_s`` <= 0: only the closing line; ``enabled=False``: no lines (other ranks than 0)."""
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.log = logger or log
        self.clock = clock
        self.done = 0
        self.start = self.last = clock()
        self.fields: dict[str, Any] = {}
        self.lines = 0
        self.enabled = enabled

    def update(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        self.fields.update(fields)
        now = self.clock()
        if self.every_s > 0 and now - self.last >= self.every_s:
            self.last = now
            self.emit()

    def line(self) -> str:
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.what}: {self.done:,}"]
        if self.total:
            parts[0] += f"/{self.total:,} {self.unit} ({100.0 * self.done / self.total:.0f}%)"
        else:
            parts[0] += f" {self.unit}"
        parts.append(f"{rate:,.1f} {self.unit}/s" if rate >= 1 else f"{rate:.2g} {self.unit}/s")
        parts.append(f"{_duration(elapsed)} elapsed")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"~{_duration((self.total - self.done) / rate)} left")
        parts += [f"{k} {v}" for k, v in self.fields.items()]
        return ", ".join(parts)

    def emit(self) -> None:
        if not self.enabled:
            return
        self.lines += 1
        self.log.info("%s", self.line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.emit()


def spark_stage_line(what: str, stages: list[dict[str, Any]], elapsed: float) -> str | None:
    """One line on a stage's running Spark stages (Spark's status tracker, as plain dicts: ``job``,
    ``stage``, ``name``, ``tasks``, ``done``, ``running``, ``failed``), or None when none is running."""
    if not stages:
        return None
    parts = []
    for s in stages:
        part = f"job {s['job']} stage {s['stage']} ({s['name']}): {s['done']:,}/{s['tasks']:,} tasks"
        if s["tasks"]:
            part += f" ({100.0 * s['done'] / s['tasks']:.0f}%)"
        part += f", {s['running']} running" + (f", {s['failed']} failed" if s["failed"] else "")
        parts.append(part)
    return f"{what}: {_duration(elapsed)} elapsed; " + "; ".join(parts)


class SparkProgress:
    """Logs, every ``every_s`` seconds from a daemon thread, the running Spark stages of the job group
    ``group`` (what ``run_stage`` sets for each pipeline stage), from Spark's status tracker: a long
    Spark stage (mine_listings' shuffles, say) shows how far it is instead of running in silence.

    ``every_s`` <= 0: nothing. Reading the tracker never fails the stage: an error ends the thread.
    """

    def __init__(self, sc: Any, group: str, every_s: float, logger: logging.Logger | None = None) -> None:
        import threading

        self.sc, self.group, self.every_s = sc, group, every_s
        self.log = logger or log
        self.lines = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"spark-progress-{group}", daemon=True)
        self.start = time.monotonic()

    def running(self) -> list[dict[str, Any]]:
        """The group's running jobs' active stages, as plain dicts (see :func:`spark_stage_line`)."""
        tracker = self.sc.statusTracker()
        out = []
        for job_id in sorted(tracker.getJobIdsForGroup(self.group)):
            job = tracker.getJobInfo(job_id)
            if job is None or str(job.status) != "RUNNING":
                continue
            for stage_id in sorted(job.stageIds):
                info = tracker.getStageInfo(stage_id)
                if info is None or info.numActiveTasks + info.numCompletedTasks == 0:
                    continue  # not started yet
                if info.numCompletedTasks >= info.numTasks:
                    continue  # done
                out.append(
                    {
                        "job": job_id,
                        "stage": stage_id,
                        "name": info.name.split(" at ")[0],
                        "tasks": info.numTasks,
                        "done": info.numCompletedTasks,
                        "running": info.numActiveTasks,
                        "failed": info.numFailedTasks,
                    }
                )
        return out

    def emit(self) -> None:
        line = spark_stage_line(f"stage {self.group}", self.running(), time.monotonic() - self.start)
        if line:
            self.lines += 1
            self.log.info("%s", line)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.emit()
            except Exception as e:  # progress must never fail the stage
                self.log.debug("spark progress stopped: %s", e)
                return

    def __enter__(self) -> SparkProgress:
        if self.every_s > 0:
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
