"""Kill anywhere: SIGKILL a stage's whole process group at each step of the commit primitive and
inside its main work, then check what readers see and re-run it.

After each kill, every table the stage writes is either all as before (killed before its commit point)
or all as a clean run writes it (killed after the intent): never a mix, never unreadable. After the
re-run, each table equals a clean run's, row for row (sorted; a quarantined row's when-written ``ts``
aside); tables made by a trained model (which may differ within the stated tolerances) are compared
by their row counts. The root is left tidy: no pending intent, no lock, at most two versions per table.

CI runs a few points (ingest's four tables and build_index's manifest); ``RETRIEVAL_KILLS=all`` runs
every point of every stage (slow: ~2 runs of a stage per point).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, TEST_CONFIG
from retrieval import commit, runlock, stages
from test_cluster import DETERMINISTIC, rows

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# Points of the commit primitive (lib/retrieval/commit.py); ":n" is the n-th visit in the process.
SINGLE = ["after_data:1", "before_commit", "before_pointer:1"]
MULTI = ["after_data:1", "after_intent", "between_pointers:1"]
POINTS: dict[str, list[str]] = {
    "generate": MULTI,
    "ingest": MULTI,
    "mine_pairs": SINGLE,
    "mine_listings": SINGLE,
    "train_encoder": ["after_checkpoint", *MULTI],
    "embed_offers": SINGLE,
    "build_index": ["between_manifest_and_pointer", *SINGLE],
    "precompute_recs": SINGLE,
    "train_ranker": ["after_checkpoint", *MULTI],
    "visual_pairs": MULTI,
    "train_visual": ["after_checkpoint"],
    "embed_images": MULTI,
}
CI = [("ingest", "after_data:1"), ("ingest", "after_intent"), ("ingest", "between_pointers:1")]
CI += [("build_index", "between_manifest_and_pointer")]
CASES = CI if os.environ.get("RETRIEVAL_KILLS") != "all" else [(s, p) for s, ps in POINTS.items() for p in ps]
SURVIVED: list[str] = []


def tables_of(stage: str) -> list[str]:
    return [t for t in stages.get(stage).writes if not t.startswith("models/") and "index" not in t]


def snapshot(root: Path, stage: str) -> dict[str, Any]:
    """What readers see of the stage's outputs: each table's rows (or row count), the index manifest."""
    out: dict[str, Any] = {}
    for t in tables_of(stage):
        if commit.resolve(str(root), t) is None:
            out[t] = None
        elif t in DETERMINISTIC or t in ("encoder/offer_features", "encoder/train_examples", "embeddings"):
            out[t] = rows(root, t)
        else:
            out[t] = len(rows(root, t))
    for name in ("index", "visual_index"):
        if name in stages.get(stage).writes:
            uri = commit.resolve(str(root), name)
            manifest = Path(uri or "", "manifest.json")
            out[name] = sorted(e["sha256"] for e in json.loads(manifest.read_text())["shards"])
    return out


def commit_an_older_version(root: Path, stage: str) -> None:
    """Commits, for every table of the stage, a version holding half its rows: the "previous output"
    then differs from what the stage writes, so a mix of old and new tables would show."""
    import pyarrow.parquet as pq

    for t in tables_of(stage):
        uri = commit.resolve(str(root), t)
        if uri is None:
            continue
        table = pq.read_table(uri)
        version, _ = commit.stage(str(root), t)
        os.makedirs(version)
        pq.write_table(table.slice(0, table.num_rows // 2), os.path.join(version, "part-00000.parquet"))
        commit.publish(str(root), t, version)


def run_stage(stage: str, root: Path, crash: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRIEVAL_")}
    env |= {"PYTHONPATH": f"{REPO}:{REPO / 'lib'}", **({"RETRIEVAL_CRASH_AT": crash} if crash else {})}
    cmd = [sys.executable, "-m", f"jobs.{stage}", "--config", TEST_CONFIG, "--set", f"paths.root={root}"]
    # its own session: the crash point kills the process group (the JVM, Python workers, training processes)
    return subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, start_new_session=True
    )


@pytest.fixture(scope="module")
def clean(local_pipeline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every stage's outputs as the clean pipeline run wrote them."""
    root = Path(local_pipeline["root"])
    return {s: snapshot(root, s) for s in {s for s, _ in CASES}}


@pytest.mark.parametrize(("stage", "point"), CASES, ids=[f"{s}@{p}" for s, p in CASES])
def test_a_killed_stage_leaves_whole_outputs_and_its_rerun_equals_a_clean_run(
    stage: str, point: str, local_pipeline: dict[str, Any], clean: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    shutil.copytree(local_pipeline["root"], root, ignore=shutil.ignore_patterns("report", "checkpoints"))
    commit_an_older_version(root, stage)
    before = snapshot(root, stage)
    killed = run_stage(stage, root, crash=point)
    assert killed.returncode == -9, (
        f"{stage} was not killed at {point}:\n{killed.stdout[-3000:]}{killed.stderr[-3000:]}"
    )
    seen = snapshot(root, stage)  # readable, and all old or all new
    assert seen in (before, clean[stage]), f"{stage} killed at {point}: a mix of old and new outputs"
    rerun = run_stage(stage, root)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert snapshot(root, stage) == clean[stage]
    assert not (root / runlock.LOCK).exists()
    assert not (root / commit.COMMITS).exists() or not os.listdir(root / commit.COMMITS)
    for t in tables_of(stage):
        if (root / t).exists():  # embeddings_delta exists only after an incremental update
            assert len([v for v in os.listdir(root / t) if v != commit.POINTER]) <= 2, os.listdir(root / t)
    SURVIVED.append(f"{stage}@{point}")
    print(f"kills survived so far: {len(SURVIVED)} ({', '.join(SURVIVED)})")
