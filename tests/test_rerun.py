"""Re-running a stage gives identical output; killing one half-way leaves the previous output readable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, TEST_CONFIG, make_config
from retrieval import tables
from retrieval.spark_tables import read_table

pytestmark = pytest.mark.spark

DATA_TABLES = [
    tables.RAW_OFFERS,
    tables.RAW_EVENTS,
    tables.TRUTH_OFFER_PRODUCT,
    tables.TRUTH_RELEVANCE,
    tables.TRUTH_EXAMINATION,
    tables.OFFERS,
    tables.EVENTS,
]


def rows(df: Any) -> list[str]:
    """A DataFrame's rows as sorted reprs (NaN prices compare equal this way, unlike in tuples)."""
    return sorted(repr(tuple(r)) for r in df.collect())


def snapshot(spark: Any, root: str) -> dict[str, list]:
    """Every data table's rows (quarantine tables without their time of quarantine)."""
    out = {c.name: rows(read_table(spark, root, c)) for c in DATA_TABLES}
    for t in ("offers", "events"):
        out[f"quarantine/{t}"] = rows(read_table(spark, root, tables.quarantine(t)).drop("ts"))
    return out


@pytest.mark.slow
def test_rerunning_generate_and_ingest_gives_identical_tables(
    spark: Any, marketplace: dict[str, Any]
) -> None:
    from jobs import generate, ingest
    from retrieval.cli import run_stage

    before = snapshot(spark, marketplace["root"])
    cfg = marketplace["cfg"]
    run_stage(spark, cfg, "generate", generate.run)
    run_stage(spark, cfg, "ingest", ingest.run)
    assert snapshot(spark, marketplace["root"]) == before


@pytest.mark.slow
def test_data_do_not_depend_on_the_number_of_tasks(
    spark: Any, marketplace: dict[str, Any], tmp_path: Path
) -> None:
    """Blocks, not tasks, carry the seeds: a run cut into other partitions writes the same rows."""
    from jobs import generate
    from retrieval.cli import run_stage

    cfg = make_config(tmp_path)
    cfg.spark.shuffle_partitions = 3
    run_stage(spark, cfg, "generate", generate.run)
    for c in (tables.RAW_EVENTS, tables.TRUTH_OFFER_PRODUCT):
        a = read_table(spark, str(tmp_path), c).exceptAll(read_table(spark, marketplace["root"], c))
        assert a.count() == 0


@pytest.mark.slow
def test_killing_ingest_mid_write_keeps_the_previous_output(spark: Any, marketplace: dict[str, Any]) -> None:
    root = marketplace["root"]
    before = rows(read_table(spark, root, tables.EVENTS))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.ingest", "--config", TEST_CONFIG, "--set", f"paths.root={root}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # kill it as soon as it starts writing the first table (a version nobody names yet appears)
        committed = set(os.listdir(os.path.join(root, "offers")))
        deadline = time.time() + 180
        while time.time() < deadline and not set(os.listdir(os.path.join(root, "offers"))) - committed:
            assert proc.poll() is None, "ingest finished before it could be killed"
            time.sleep(0.05)
        assert time.time() < deadline, "ingest never started writing"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert rows(read_table(spark, root, tables.EVENTS)) == before
    assert (
        read_table(spark, root, tables.OFFERS).count()
        == marketplace["ingest"]["tables"]["offers"]["rows_accepted"]
    )


@pytest.mark.slow
def test_a_second_run_on_the_root_is_refused_naming_the_holder(
    spark: Any, marketplace: dict[str, Any]
) -> None:
    """Two ingests on one root: the second exits at once with one line naming the first's run group,
    host and pid; the first finishes and its output is whole."""
    from retrieval import runlock

    root = marketplace["root"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRIEVAL_")}
    env["PYTHONPATH"] = f"{REPO}:{REPO / 'lib'}"
    cmd = [sys.executable, "-m", "jobs.ingest", "--config", TEST_CONFIG, "--set", f"paths.root={root}"]
    first = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        # the test before killed an ingest, so its lock may be there first: the first ingest takes
        # it over (its pid is dead on this host)
        while time.time() < deadline:
            assert first.poll() is None, "the first ingest ended before the second could start"
            holder = runlock.read_holder(root)
            if holder is not None and holder.pid == first.pid:
                break
            time.sleep(0.05)
        assert holder is not None and holder.pid == first.pid
        second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first ingest ended before the second was refused"
        assert second.returncode == 1
        assert f"run group {holder.group} (host {holder.host}, pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr + second.stdout
        out, _ = first.communicate(timeout=600)
        assert first.returncode == 0, out[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert not os.path.exists(os.path.join(root, runlock.LOCK))
    assert (
        read_table(spark, root, tables.OFFERS).count()
        == marketplace["ingest"]["tables"]["offers"]["rows_accepted"]
    )
