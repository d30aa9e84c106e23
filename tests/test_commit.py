"""The commit primitive and the one-writer lock, without Spark: versions, pointers, multi-object
intents, retention, recovery, crash points; lock groups, staleness, takeover, fencing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval import commit, runlock, storage

REPO = Path(__file__).resolve().parents[1]


def _write(root: str, name: str, text: str) -> str:
    with commit.committed(root, name) as uri:
        storage.write_text_atomic(storage.join(uri, "data.txt"), text)
    return uri


def _read(root: str, name: str) -> str | None:
    uri = commit.resolve(root, name)
    return None if uri is None else storage.read_text(storage.join(uri, "data.txt"))


def _new_staged_over_old(root: str) -> commit.Transaction:
    """Objects a and b committed as "old", and a transaction that staged "new" for both (not committed)."""
    for name in ("a", "b"):
        _write(root, name, "old")
    tx = commit.Transaction(root, "stage")
    for name in ("a", "b"):
        storage.write_text_atomic(storage.join(tx.stage(name), "data.txt"), "new")
    return tx


def test_an_object_is_readable_only_once_its_pointer_is_written(tmp_path: Path) -> None:
    root = str(tmp_path)
    assert commit.resolve(root, "obj") is None
    _write(root, "obj", "one")
    uri, tx = commit.stage(root, "obj")  # a second writer's data, not yet committed
    assert tx is None
    storage.write_text_atomic(storage.join(uri, "data.txt"), "two")
    assert _read(root, "obj") == "one"
    commit.publish(root, "obj", uri)
    assert _read(root, "obj") == "two"
    ptr = commit.read_pointer(str(tmp_path / "obj"))
    assert ptr is not None and ptr.version == os.path.basename(uri) and ptr.previous


def test_a_multi_object_commit_is_seen_whole_after_a_kill_between_pointers(tmp_path: Path) -> None:
    """The intent is the commit point: a kill after it but before every pointer is flipped still
    reads as the new set, and the next writer's recover() finishes it."""
    root = str(tmp_path)
    tx = _new_staged_over_old(root)
    intent = storage.join(root, commit.COMMITS, "v-test.json")
    storage.write_json_atomic(intent, {"stage": "stage", "objects": tx.staged})
    commit._write_pointer(str(tmp_path / "a"), tx.staged["a"])  # killed here: b still names "old"
    assert _read(root, "a") == _read(root, "b") == "new"
    assert commit.recover(root) == 1
    assert not os.path.exists(intent)
    assert _read(root, "a") == _read(root, "b") == "new"
    assert commit.read_pointer(str(tmp_path / "b")).version == tx.staged["b"]  # type: ignore[union-attr]


def test_a_kill_before_the_intent_leaves_the_previous_set(tmp_path: Path) -> None:
    root = str(tmp_path)
    tx = _new_staged_over_old(root)
    assert _read(root, "a") == _read(root, "b") == "old"
    _write(root, "a", "next")  # the next writer's retention removes the dead one's version
    assert tx.staged["a"] not in os.listdir(tmp_path / "a")


def test_retention_keeps_the_committed_version_and_the_one_before(tmp_path: Path) -> None:
    root = str(tmp_path)
    uris = [_write(root, "obj", str(i)) for i in range(4)]
    assert sorted(os.listdir(tmp_path / "obj")) == sorted(
        ["CURRENT", os.path.basename(uris[2]), os.path.basename(uris[3])]
    )


def test_a_transaction_reads_its_own_writes_and_nests(tmp_path: Path) -> None:
    root = str(tmp_path)
    _write(root, "obj", "old")
    with commit.transaction(root, "outer") as outer:
        with commit.transaction(root, "inner") as inner:
            assert inner is outer
            _write(root, "obj", "new")
        assert _read(root, "obj") == "new"
        assert commit.read_pointer(str(tmp_path / "obj")).previous == ""  # type: ignore[union-attr]
    assert _read(root, "obj") == "new"


def test_crash_points_kill_the_process_group_at_the_named_visit(tmp_path: Path) -> None:
    code = (
        "from retrieval import commit, storage\n"
        f"root = {str(tmp_path)!r}\n"
        "for text in ('one', 'two'):\n"
        "    with commit.committed(root, 'obj') as uri:\n"
        "        storage.write_text_atomic(storage.join(uri, 'data.txt'), text)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib"), "RETRIEVAL_CRASH_AT": "before_pointer:2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, start_new_session=True, timeout=60)
    assert out.returncode == -9
    assert _read(str(tmp_path), "obj") == "one"


# --- the lock


def _holder(**kw: object) -> dict[str, object]:
    h = {
        "group": "other",
        "host": "elsewhere",
        "pid": 1,
        "started": "2026-12-01T00:00:00Z",
        "heartbeat": time.time(),
        "stale_seconds": 300.0,
        "token": "t",
        "scheduler": False,
    }
    return {**h, **kw}


def test_a_second_run_group_is_refused_naming_the_holder(tmp_path: Path) -> None:
    (tmp_path / runlock.LOCK).write_text(json.dumps(_holder()))
    with pytest.raises(runlock.LockHeld, match=r"run group other \(host elsewhere, pid 1"):
        runlock.acquire(str(tmp_path))


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / runlock.LOCK).write_text(json.dumps(_holder(heartbeat=time.time() - 900)))
    held = runlock.acquire(str(tmp_path))
    assert held.took and "taking over the stale lock" in caplog.text
    runlock.release(held)
    assert not (tmp_path / runlock.LOCK).exists()


def test_a_lock_whose_process_on_this_host_died_is_stale(tmp_path: Path) -> None:
    import socket

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    here = {"host": socket.gethostname(), "pid": int(dead.stdout), "pid_namespace": runlock.pid_namespace()}
    h = runlock.Holder(**_holder(**here))  # type: ignore[arg-type]
    assert "is gone" in runlock.is_stale(h)
    assert runlock.is_stale(runlock.Holder(**{**h.__dict__, "scheduler": True})) == ""
    # the same host name in another pid namespace (another container): its pids are not ours to test
    assert runlock.is_stale(runlock.Holder(**{**h.__dict__, "pid_namespace": "other-boot/4026531836"})) == ""


def test_a_pending_intent_that_a_later_commit_passed_is_not_read(tmp_path: Path) -> None:
    """An intent left by a kill, then a writer that committed the object without finishing it (no
    recover): readers see the later commit, not the dead intent's older version."""
    root = str(tmp_path)
    tx = _new_staged_over_old(root)
    storage.write_json_atomic(
        storage.join(root, commit.COMMITS, f"{commit.new_version()}.json"), {"objects": tx.staged}
    )
    assert _read(root, "a") == "new"  # the intent is the commit point: pending is committed
    _write(root, "a", "newer")
    assert _read(root, "a") == "newer" and _read(root, "b") == "new"
    assert commit.recover(root) == 1
    assert _read(root, "a") == "newer" and _read(root, "b") == "new"


def test_recover_leaves_a_live_processs_intent_to_it(tmp_path: Path) -> None:
    """A parallel stage of the same run group is between its intent and its pointers: another process
    joining the lock leaves that intent alone; once that process is gone, it finishes it."""
    import socket

    root = str(tmp_path)
    tx = _new_staged_over_old(root)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        intent = storage.join(root, commit.COMMITS, f"{commit.new_version()}.json")
        here = {"host": socket.gethostname(), "pid": live.pid, "pid_namespace": runlock.pid_namespace()}
        storage.write_json_atomic(intent, {"objects": tx.staged, **here})
        assert commit.recover(root) == 0 and storage.exists(intent)
    finally:
        live.kill()
        live.wait()
    assert commit.recover(root) == 1 and not storage.exists(intent)
    for name in ("a", "b"):
        ptr = commit.read_pointer(commit.object_uri(root, name))
        assert ptr is not None and ptr.version == tx.staged[name] and _read(root, name) == "new"


def test_the_same_group_joins_and_only_the_taker_releases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(runlock.GROUP_ENV, "weekly-2026-12-06")
    root = str(tmp_path)
    with runlock.hold(root) as first:
        assert first.took
        joined = runlock.acquire(root)
        assert not joined.took and joined.holder.token == first.holder.token
        runlock.release(joined)
        assert (tmp_path / runlock.LOCK).exists()
    assert not (tmp_path / runlock.LOCK).exists()


def test_a_run_whose_lock_was_taken_over_cannot_commit(tmp_path: Path) -> None:
    root = str(tmp_path)
    with runlock.hold(root):
        (tmp_path / runlock.LOCK).write_text(json.dumps(_holder()))  # another group took it over
        with pytest.raises(runlock.LockHeld, match="not committing"):
            _write(root, "obj", "late")
    assert _read(root, "obj") is None


def test_the_scheduler_holds_the_lock_across_its_stages(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib"), runlock.GROUP_ENV: "daily-1"}
    cmd = [sys.executable, "-m", "retrieval.runlock"]
    ok = subprocess.run([*cmd, "acquire", "--root", str(tmp_path)], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    other = {**env, runlock.GROUP_ENV: "weekly-1"}
    refused = subprocess.run(
        [*cmd, "acquire", "--root", str(tmp_path)], env=other, capture_output=True, text=True
    )
    assert refused.returncode == 1 and "run group daily-1" in refused.stderr
    assert "Traceback" not in refused.stderr
    done = subprocess.run([*cmd, "release", "--root", str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and not (tmp_path / runlock.LOCK).exists()


# --- weights-addressed models


def test_a_models_version_is_the_hash_of_its_weights(tmp_path: Path) -> None:
    """A retrain that changes the weights publishes a new version and leaves the old one as it was;
    the same weights publish to the same version, written once, with their provenance."""
    import torch

    from retrieval.artifacts import publish_model, run_dir
    from retrieval.ranking.dnn import Reranker, RerankerConfig
    from retrieval.training.models import load_model, save_model, saved_config

    root = str(tmp_path)
    torch.manual_seed(0)
    model = Reranker(RerankerConfig(features=["a", "b"], hidden=8))
    trained = run_dir(root, "reranker", "cfg1")
    save_model(model, trained)
    v1, d1 = publish_model(root, "reranker", trained, {"seed": 1, "data_version": {"slates": "v1"}})
    assert v1.startswith("w") and d1.endswith(v1)
    assert publish_model(root, "reranker", trained, {"seed": 1})[0] == v1  # same weights, same version
    assert saved_config(d1)["provenance"]["data_version"] == {"slates": "v1"}
    first = {k: v.clone() for k, v in load_model(Reranker, d1).state_dict().items()}

    with torch.no_grad():  # a retrain in the same run directory (same config): other weights
        next(model.parameters()).add_(0.5)
    save_model(model, trained)
    v2, d2 = publish_model(root, "reranker", trained, {"seed": 1})
    assert v2 != v1 and d2 != d1
    again = load_model(Reranker, d1).state_dict()
    assert all(torch.equal(again[k], first[k]) for k in first)  # the old weights are untouched


def test_model_retention_keeps_two_publishing_stages_and_what_an_index_names(tmp_path: Path) -> None:
    """Each publishing stage records what it made; retention keeps that and the stage before's, the
    weights a committed index was built from, and only the current run directory's checkpoints."""
    import torch

    from retrieval.artifacts import publish_model, retain_models, run_dir
    from retrieval.ranking.dnn import Reranker, RerankerConfig
    from retrieval.training.models import save_model

    root = str(tmp_path)
    torch.manual_seed(0)
    model = Reranker(RerankerConfig(features=["a", "b"], hidden=8))
    made = []
    for i in range(4):  # four stages, each a retrain in a run directory of its own
        with torch.no_grad():
            next(model.parameters()).add_(0.5)
        trained = run_dir(root, "reranker", f"cfg{i}")
        save_model(model, trained)
        made.append(publish_model(root, "reranker", trained, {"seed": i})[0])
        if i == 0:  # the index is built from the first stage's weights
            with commit.committed(root, "index") as uri:
                storage.write_json_atomic(storage.join(uri, "manifest.json"), {"model_version": made[0]})
        retain_models(root, "reranker", {made[-1]}, {trained})
    left = sorted(p.name for p in (tmp_path / "models" / "reranker").iterdir())
    assert left == sorted(["PUBLISHED", "runs", made[0], made[2], made[3]])  # made[1] is gone
    assert [p.name for p in (tmp_path / "models" / "reranker" / "runs").iterdir()] == ["cfg3"]
    retain_models(root, "reranker", {made[3]}, {trained})  # the same weights published again
    left = sorted(p.name for p in (tmp_path / "models" / "reranker").iterdir())
    assert left == sorted(["PUBLISHED", "runs", made[0], made[2], made[3]])  # the stage before's stay
