"""One commit primitive for everything a stage writes: tables, indices, models (DESIGN.md "Commits").

An object (a table, an index, a model set) named ``name`` under a root lives at ``<root>/<name>/``:

    <root>/<name>/<version>/   the data of one version, written in full before anyone points at it
    <root>/<name>/CURRENT      the committed version (first line) and the one it replaced (second)

A new version goes to a new directory; ``CURRENT`` is written last, and that small write is atomic
everywhere: a rename on local disks and HDFS, a single PUT on object stores (where a directory rename
is a copy, so nothing here renames directories). A kill before the pointer leaves the previous
version committed and readable; its leftover directory is removed by the next writer.

A stage that writes several objects commits them together: their data first, then one intent
``<root>/_commits/<id>.json`` naming every object's new version (the commit point), then each
``CURRENT``, then the intent goes. Readers resolve through a pending intent first, so they never see
a mix of a stage's old and new objects; the next writer rolls a pending intent forward
(:func:`recover`, under the root's lock).

Old versions stay until retention (:func:`clean`, after each commit) removes all but the committed
version and the one before it, so a reader of the version that was live when it started keeps it for
one more commit. Inside a transaction, reads see its own staged versions (a stage that writes a table
and reads it back gets what it wrote).

Crash points for the kill-anywhere test: ``RETRIEVAL_CRASH_AT=<point>`` SIGKILLs the process group
at the named point (:func:`crash_point`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from retrieval import runlock, storage

log = logging.getLogger(__name__)

POINTER = "CURRENT"
COMMITS = "_commits"
# files of a committed object directory that are not versions
_RESERVED = (POINTER,)


def crash_point(point: str) -> None:
    """SIGKILLs this process group when ``RETRIEVAL_CRASH_AT`` names ``point`` (the kill-anywhere test).

    ``RETRIEVAL_CRASH_AT=<point>:<n>`` kills at the point's n-th visit in this process (1 is the first)."""
    want = os.environ.get("RETRIEVAL_CRASH_AT", "")
    if not want:
        return
    name, _, nth = want.partition(":")
    if name != point:
        return
    _VISITS[point] = _VISITS.get(point, 0) + 1
    if _VISITS[point] < int(nth or 1):
        return
    log.warning("RETRIEVAL_CRASH_AT=%s: killing the process group", want)
    # the job's own group, which training processes launched in groups of their own inherit by name
    os.killpg(int(os.environ.get("RETRIEVAL_CRASH_PGID") or os.getpgid(0)), signal.SIGKILL)


_VISITS: dict[str, int] = {}
if os.environ.get("RETRIEVAL_CRASH_AT") and not os.environ.get("RETRIEVAL_CRASH_PGID"):
    os.environ["RETRIEVAL_CRASH_PGID"] = str(os.getpgid(0))  # set by the job, inherited by its children


def version_of(uri: str) -> str:
    """The version a version directory's URI names (its last segment)."""
    return _base(uri)


def _base(path: object) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def new_version() -> str:
    """A fresh version name: when it was made, to the millisecond (to read, and to sort: an object's
    versions commit in the order they were made, one writer per root), and a random part (unique)."""
    now = datetime.now(UTC)
    return f"v{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}-{uuid.uuid4().hex[:8]}"


def _newer(version: str, ptr: Pointer | None) -> bool:
    """Whether a pending intent's ``version`` is newer than what ``CURRENT`` names: not yet pointed
    at (the intent is still to finish), rather than committed and since replaced."""
    return ptr is None or version > ptr.version


def object_uri(root: str, name: str) -> str:
    return storage.join(root, name)


@dataclass(frozen=True)
class Pointer:
    version: str
    previous: str = ""


def read_pointer(obj: str) -> Pointer | None:
    """The ``CURRENT`` of the object at ``obj`` (None if it has none)."""
    uri = storage.join(obj, POINTER)
    try:
        lines = storage.read_text(uri).splitlines()
    except FileNotFoundError:
        return None
    if not lines or not lines[0].strip():
        return None
    return Pointer(lines[0].strip(), lines[1].strip() if len(lines) > 1 else "")


def _write_pointer(obj: str, version: str) -> None:
    old = read_pointer(obj)
    previous = old.version if old and old.version != version else (old.previous if old else "")
    crash_point("before_pointer")
    storage.write_text_atomic(storage.join(obj, POINTER), f"{version}\n{previous}\n")


def _intents(root: str) -> list[tuple[str, dict[str, Any]]]:
    """The pending multi-object commits under ``root``, oldest first: (intent uri, its JSON)."""
    out = []
    for uri in storage.list_files(storage.join(root, COMMITS), ".json"):
        try:
            data = storage.read_json(uri)
            if isinstance(data, dict) and isinstance(data.get("objects"), dict):
                out.append((uri, data))
        except (FileNotFoundError, ValueError):
            continue  # removed as we listed: an intent is written atomically or not at all
    return out


def _pending(root: str, name: str, ptr: Pointer | None) -> list[str]:
    """The versions of ``name`` that pending intents name and ``CURRENT`` has not yet reached."""
    named = (str(data["objects"].get(name, "")) for _, data in _intents(root))
    return [v for v in named if v and _newer(v, ptr)]


def current(root: str, name: str) -> str | None:
    """The committed version of object ``name`` under ``root`` (None when it has none): a version the
    active transaction staged, else the newest pending intent's, else the object's ``CURRENT``."""
    for tx in reversed(_ACTIVE):
        if tx.root == root and name in tx.staged:
            return tx.staged[name]
    ptr = read_pointer(object_uri(root, name))
    pending = _pending(root, name, ptr)
    if pending:
        return max(pending)
    return ptr.version if ptr else None


def resolve(root: str, name: str) -> str | None:
    """The URI of the committed version of ``name`` under ``root``, or None when there is none.

    An object written before versions existed (data directly in ``<root>/<name>``, no ``CURRENT``) is
    its own only version."""
    version = current(root, name)
    obj = object_uri(root, name)
    if version:
        return storage.join(obj, version)
    if _is_legacy(obj):
        return obj
    return None


def _is_legacy(obj: str) -> bool:
    """Data files directly in the object's directory (a version directory of a killed writer is not)."""
    fs, path = storage.filesystem(obj)
    if not fs.exists(path) or not fs.isdir(path):
        return False
    return any(
        info.get("type") == "file" and not _base(info["name"]).startswith((".", "_"))
        for info in fs.ls(path, detail=True)
    )


@dataclass
class Transaction:
    """The objects one stage writes, committed together (:func:`transaction`)."""

    root: str
    label: str
    staged: dict[str, str] = field(default_factory=dict)

    def stage(self, name: str) -> str:
        """A new version directory for object ``name`` (not yet created): write its data there."""
        version = new_version()
        self.staged[name] = version
        return storage.join(object_uri(self.root, name), version)

    def commit(self) -> None:
        if not self.staged:
            return
        crash_point("before_commit")
        runlock.assert_held(self.root)
        intent = None
        if len(self.staged) > 1:
            intent = storage.join(self.root, COMMITS, f"{new_version()}.json")
            storage.write_json_atomic(
                intent,
                {
                    "stage": self.label,
                    "objects": self.staged,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "pid_namespace": runlock.pid_namespace(),
                },
            )
            crash_point("after_intent")
        for name, version in self.staged.items():
            _write_pointer(object_uri(self.root, name), version)
            crash_point("between_pointers")
        if intent:
            storage.remove(intent)
        for name in self.staged:
            clean(self.root, name)


_ACTIVE: list[Transaction] = []
_LOCK = threading.Lock()


def _open(root: str) -> Transaction | None:
    """The innermost open transaction on ``root``."""
    with _LOCK:
        return next((t for t in reversed(_ACTIVE) if t.root == root), None)


def _pointed(root: str, name: str) -> str:
    """The version ``CURRENT`` of ``name`` names ("" when none)."""
    ptr = read_pointer(object_uri(root, name))
    return ptr.version if ptr else ""


@contextlib.contextmanager
def transaction(root: str, label: str, join: bool = True) -> Iterator[Transaction]:
    """Everything written through :func:`stage` inside the block commits together when it ends.

    Nested blocks on the same root join the outer one (a stage's transaction holds the tables its
    helpers write), unless ``join`` is False: a stage run inside another (``cli.ensure_stage``) commits
    on its own when it ends, with the metrics it writes then. On an exception nothing is committed: the
    previous versions stay current and the staged directories are left for the next writer's
    :func:`clean`."""
    outer = _open(root)
    if outer is not None and join:
        yield outer
        return
    tx = Transaction(root, label)
    with _LOCK:
        _ACTIVE.append(tx)
    try:
        yield tx
        tx.commit()
    finally:
        with _LOCK:
            _ACTIVE.remove(tx)


def stage(root: str, name: str) -> tuple[str, Transaction | None]:
    """(a new version directory for ``name``, the transaction it belongs to, or None when no
    transaction on ``root`` is open: the caller then commits it alone with :func:`publish`)."""
    tx = _open(root)
    if tx is not None:
        return tx.stage(name), tx
    version = new_version()
    return storage.join(object_uri(root, name), version), None


def publish(root: str, name: str, version_uri: str) -> None:
    """Commits one object alone: its ``CURRENT`` names the version at ``version_uri``; then retention."""
    version = version_of(version_uri)
    runlock.assert_held(root)
    _write_pointer(object_uri(root, name), version)
    clean(root, name)


def register(root: str, name: str, version_uri: str) -> None:
    """The version at ``version_uri`` (from :func:`stage`) is complete: it commits with the open
    transaction on ``root``, or alone now when there is none."""
    version = version_of(version_uri)
    tx = _open(root)
    if tx is not None:
        tx.staged[name] = version
    elif _pointed(root, name) != version:
        publish(root, name, version_uri)


@contextlib.contextmanager
def committed(root: str, name: str) -> Iterator[str]:
    """A new version directory of ``name`` to write in the block; committed when it ends (with the
    open transaction on ``root`` if there is one, else alone)."""
    uri, _ = stage(root, name)
    yield uri
    crash_point("after_data")
    register(root, name, uri)


def recover(root: str) -> int:
    """Rolls forward the multi-object commits a killed writer left pending (their intent was written,
    so they are committed): every ``CURRENT`` they name that has not moved past it, then the intent
    goes. Run by every process that holds or joins the root's lock, before it writes; an intent of a
    live process on this host (a parallel stage of the same run group, committing now) is its own to
    finish. Finishing one twice is harmless: the same pointers are written. Returns how many it
    finished."""
    done = 0
    for uri, data in _intents(root):
        pid = data.get("pid")
        here = runlock.on_this_host(str(data.get("host")), str(data.get("pid_namespace", "")))
        if here and isinstance(pid, int) and pid != os.getpid() and runlock.pid_alive(pid):
            continue
        log.warning(
            "finishing the commit %s that an interrupted run (%s) left pending", uri, data.get("stage")
        )
        for name, version in data["objects"].items():
            obj = object_uri(root, name)
            if _newer(str(version), read_pointer(obj)):
                _write_pointer(obj, str(version))
        storage.remove(uri)
        done += 1
    return done


def clean(root: str, name: str) -> list[str]:
    """Retention of object ``name``: removes every version but the committed one and the one before
    it (versions a killed writer left, older ones), and what earlier layouts left beside it. Only a
    writer holding the root's lock calls this. Returns what it removed."""
    obj = object_uri(root, name)
    ptr = read_pointer(obj)
    if ptr is None:
        return []
    keep = {ptr.version, ptr.previous, *_pending(root, name, ptr), *_RESERVED} - {""}
    fs, path = storage.filesystem(obj)
    removed = []
    for child in fs.ls(path, detail=False):
        base = _base(child)
        if base not in keep:
            fs.rm(child, recursive=True)
            removed.append(base)
    # the earlier layout's hidden siblings: .<name>.tmp-* and .<name>.old-*
    parent, leaf = path.rstrip("/").rsplit("/", 1)
    for child in fs.ls(parent, detail=False):
        base = _base(child)
        if base.startswith((f".{leaf}.tmp-", f".{leaf}.old-")):
            fs.rm(child, recursive=True)
            removed.append(base)
    if removed:
        log.info("retention of %s: removed %s", obj, ", ".join(sorted(removed)))
    return removed
