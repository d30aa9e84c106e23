"""One writer per root: a lock ``<paths.root>/_lock.json`` held by a run group (DESIGN.md "Commits").

A run group is one pipeline run, one stage run alone, or one scheduler run: ``RETRIEVAL_RUN_GROUP``
names it (the Airflow DAGs set it to the DAG run's id, so one weekly run's parallel stages share the
lock); without it, each process is its own group. A process of the holding group joins the lock; any
other group gets :class:`LockHeld`, naming the holder.

The lock file records the group, the host, pid and start time of the process that took it, and a
heartbeat that a thread of every process holding or joining it renews. It is stale, and taken over
with a warning, when its heartbeat is older than its ``stale_seconds``, or when it was taken by a
process on this host that is no longer alive (not for a scheduler's lock, taken by a short command:
``python -m retrieval.runlock acquire``). Commits check that the lock is still theirs
(:func:`assert_held`), so a writer whose lock was taken over cannot commit over the new holder.

Taking the lock is atomic on local and shared POSIX filesystems (a hard link that fails when the file
exists). On object stores through fsspec it is a write that is read back to check the token: two
writers starting within one round trip of each other can both believe they won, a limit stated here
and in the README; a store with conditional PUT (``If-None-Match``) closes it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from retrieval import storage

log = logging.getLogger(__name__)

LOCK = "_lock.json"
GROUP_ENV = "RETRIEVAL_RUN_GROUP"
_PROCESS_GROUP = f"run-{uuid.uuid4().hex[:12]}"  # this process's group when the environment names none


class LockHeld(RuntimeError):
    """Another run group holds the root's lock."""


@dataclass
class Holder:
    group: str
    host: str
    pid: int
    started: str
    heartbeat: float
    stale_seconds: float
    token: str
    scheduler: bool = False  # taken by a scheduler's command: its pid says nothing about the group
    pid_namespace: str = ""  # the pid's namespace (containers on one host name share no pids)

    def describe(self, now: float | None = None) -> str:
        age = (now or time.time()) - self.heartbeat
        return (
            f"run group {self.group} (host {self.host}, pid {self.pid}, since {self.started}, "
            f"last heartbeat {age:.0f} s ago)"
        )


def group() -> str:
    """This process's run group: ``RETRIEVAL_RUN_GROUP``, else one of its own."""
    return os.environ.get(GROUP_ENV, "") or _PROCESS_GROUP


def lock_uri(root: str) -> str:
    return storage.join(root, LOCK)


def read_holder(root: str) -> Holder | None:
    try:
        return Holder(**json.loads(storage.read_text(lock_uri(root))))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise LockHeld(
            f"{lock_uri(root)} is not a lock this project wrote ({e}): remove it by hand"
        ) from None


def pid_namespace() -> str:
    """This process's pid namespace and boot ("" where the system does not say): a pid means the same
    process only within one."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def on_this_host(host: str, namespace: str) -> bool:
    """Whether a process recorded as on ``host`` in pid ``namespace`` is one whose pid this process
    can test (the same host name and pid namespace)."""
    return host == socket.gethostname() and namespace == pid_namespace()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host is alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(h: Holder, now: float | None = None) -> str:
    """Why ``h`` is stale ("" when it is not)."""
    now = now or time.time()
    if now - h.heartbeat > h.stale_seconds:
        return f"no heartbeat for {now - h.heartbeat:.0f} s (stale after {h.stale_seconds:.0f} s)"
    if not h.scheduler and on_this_host(h.host, h.pid_namespace) and not pid_alive(h.pid):
        return f"its process {h.pid} on this host is gone"
    return ""


def _create(root: str, h: Holder) -> bool:
    """Writes the lock file only if none exists; True if this call created it."""
    uri = lock_uri(root)
    data = json.dumps(asdict(h), indent=2) + "\n"
    if storage.is_local(uri):
        path = storage.local_path(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{h.token}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data)
        try:
            os.link(tmp, path)  # fails if the lock exists: atomic on POSIX filesystems, NFS included
            return True
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)
    if storage.exists(uri):
        return False
    storage.write_text_atomic(uri, data)
    got = read_holder(root)
    return got is not None and got.token == h.token


def _write(root: str, h: Holder) -> None:
    storage.write_text_atomic(lock_uri(root), json.dumps(asdict(h), indent=2) + "\n")


@contextlib.contextmanager
def _mutex(root: str) -> Iterator[None]:
    """Serialises the lock file's read-then-write changes (renew, take over, release) between the
    processes that share a POSIX filesystem (``flock`` on ``<root>/_lock.mutex``): a heartbeat cannot
    write back a lock another group took over meanwhile, nor two takers both remove a stale lock. On
    object stores there is no such primitive (the limit in the module's docstring)."""
    uri = lock_uri(root)
    if not storage.is_local(uri):
        yield
        return
    path = storage.local_path(uri)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path[: -len('.json')]}.mutex", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class Held:
    """A lock this process holds (``took``: it took it, and releases it) or joined."""

    root: str
    holder: Holder
    took: bool
    _stop: threading.Event | None = None

    def renew(self) -> None:
        """A heartbeat, unless the lock is no longer this group's (then it is left alone)."""
        with _mutex(self.root):
            now = read_holder(self.root)
            if now is None or now.token != self.holder.token:
                log.error(
                    "the lock of %s is no longer this run's (now %s)", self.root, now and now.describe()
                )
                return
            now.heartbeat = time.time()
            _write(self.root, now)


_HELD: dict[str, Held] = {}
_MUTEX = threading.Lock()


def acquire(root: str, stale_seconds: float = 300.0, scheduler: bool = False) -> Held:
    """Takes or joins the lock of ``root`` for this process's run group.

    Raises:
        LockHeld: another group holds it (and it is not stale).
    """
    g = group()
    for _ in range(5):
        h = read_holder(root)
        if h is not None and h.group == g:
            return Held(root, h, took=False)
        if h is not None:
            why = is_stale(h)
            if not why:
                raise LockHeld(
                    f"{storage.absolute(root)} is being written by {h.describe()}: one run group writes a "
                    f"root at a time. Wait for it to finish, or use another paths.root. "
                    f"(Lock file {lock_uri(root)}; it is taken over once stale.)"
                )
            with _mutex(root):
                again = read_holder(root)
                if again is None or again.token != h.token:
                    continue  # it changed hands meanwhile: look again
                log.warning("taking over the stale lock of %s: %s was %s", root, h.describe(), why)
                storage.remove(lock_uri(root))
        mine = Holder(
            group=g,
            host=socket.gethostname(),
            pid=os.getpid(),
            started=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            heartbeat=time.time(),
            stale_seconds=float(stale_seconds),
            token=uuid.uuid4().hex,
            scheduler=scheduler,
            pid_namespace=pid_namespace(),
        )
        if _create(root, mine):
            return Held(root, mine, took=True)
    raise LockHeld(f"could not take the lock of {root}: it changed hands five times while trying")


def release(held: Held) -> None:
    """Removes the lock if this process took it and it is still its own."""
    if not held.took:
        return
    with _mutex(held.root):
        now = read_holder(held.root)
        if now is not None and now.token == held.holder.token:
            storage.remove(lock_uri(held.root))


@contextlib.contextmanager
def hold(root: str, stale_seconds: float = 300.0) -> Iterator[Held]:
    """Holds (or joins) the root's lock for the block, with a heartbeat thread; re-entrant."""
    with _MUTEX:
        inner = _HELD.get(root)
    if inner is not None:
        yield inner
        return
    held = acquire(root, stale_seconds)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(max(1.0, held.holder.stale_seconds / 5)):
            with contextlib.suppress(Exception):
                held.renew()

    thread = threading.Thread(target=beat, name="root-lock-heartbeat", daemon=True)
    with _MUTEX:
        _HELD[root] = held
    thread.start()
    try:
        if not held.took:
            held.renew()
        yield held
    finally:
        stop.set()
        thread.join(5)
        with _MUTEX:
            _HELD.pop(root, None)
        release(held)


def assert_held(root: str) -> None:
    """Raises :class:`LockHeld` when this process holds or joined the lock of ``root`` and it has
    since passed to another group (a commit must not land over the new holder's work)."""
    with _MUTEX:
        held = _HELD.get(root)
    if held is None:
        return
    now = read_holder(root)
    if now is None or now.group != held.holder.group:
        raise LockHeld(
            f"the lock of {root} was taken over by {now.describe() if now else 'nobody'} while this run "
            "wrote: not committing"
        )


def command(action: str, root: str, stale_seconds: float = 6 * 3600.0) -> int:
    """``acquire`` / ``release`` / ``show`` the lock of ``root`` for the scheduler's run group
    (``RETRIEVAL_RUN_GROUP``), which takes it before its first stage and releases it after its last:
    prints one line; returns the exit status."""
    if action == "show":
        h = read_holder(root)
        print(h.describe() if h else f"{root} is not locked")
        return 0
    if not os.environ.get(GROUP_ENV):
        print(f"error: set {GROUP_ENV} to the scheduler's run id", file=sys.stderr)
        return 2
    if action == "acquire":
        try:
            held = acquire(root, stale_seconds, scheduler=True)
        except LockHeld as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        held.renew()
        from retrieval import commit

        commit.recover(root)  # what a killed run left pending, before the group's first stage
        print(f"{root}: held by run group {group()}")
        return 0
    with _mutex(root):
        h = read_holder(root)
        mine = h is not None and h.group == group()
        if mine:
            storage.remove(lock_uri(root))
    print(
        f"{root}: {'released' if mine else 'not held'} by run group {group()}{'' if mine else '; nothing to release'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m retrieval.runlock", description=command.__doc__)
    p.add_argument("action", choices=("acquire", "release", "show"))
    p.add_argument("--root", required=True)
    p.add_argument("--stale-seconds", type=float, default=6 * 3600.0, help="for acquire (default 6 h)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return command(a.action, a.root, a.stale_seconds)


if __name__ == "__main__":
    raise SystemExit(main())
