"""A Spark standalone cluster on this machine: a master and N workers from the installed pyspark.

For the cluster tests and the cluster benchmark, and for anyone who wants to see the jobs leave
``local[*]`` without a cluster at hand::

    .venv/bin/python -m retrieval.standalone --workers 2     # runs until Ctrl-C; prints the master URL
    ./submit.sh pipeline --config conf/test.yaml --set spark.master=spark://127.0.0.1:7077

The pip pyspark has no ``sbin/start-master.sh``; ``bin/spark-class`` runs the master and worker classes
directly (it execs java, so the process we start is the JVM). Each worker is started in its own process
group: its executor JVM and their Python workers join that group, so :meth:`StandaloneCluster.kill_worker`
takes a whole "node" down at once, as a machine failure would. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO


def spark_home() -> str:
    """``$SPARK_HOME``, else the installed pyspark's directory (it carries bin/ and jars/)."""
    home = os.environ.get("SPARK_HOME")
    if home:
        return home
    import pyspark

    return os.path.dirname(os.path.abspath(pyspark.__file__))


def free_port(preferred: int = 0) -> int:
    """``preferred`` when it is free on 127.0.0.1, else a free port the OS picks."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # as the JVM binds: a port whose last connections linger in TIME_WAIT is free to it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except (OSError, ValueError):
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")  # pragma: no cover - the OS always has one for port 0


@dataclass
class Node:
    """One started daemon (master or worker)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: str
    log: TextIO
    args: list[str] = field(default_factory=list)
    ui_port: int = 0

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class StandaloneCluster:
    """Starts a master and ``workers`` workers (``cores`` and ``memory`` each, own work dirs under
    ``workdir``); :meth:`stop` ends every process it started, by process group."""

    def __init__(
        self,
        workdir: str,
        workers: int = 2,
        cores: int = 1,
        memory: str = "2g",
        port: int = 7077,
        python: str | None = None,
        worker_resources: Mapping[str, tuple[int, str]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``worker_resources``: e.g. {"gpu": (1, "/path/discovery.sh")} (amount and discovery script
        of each worker), as a GPU node advertises them; ``env`` reaches the daemons and executors."""
        self.workdir = os.path.abspath(workdir)
        self.n_workers, self.cores, self.memory = workers, cores, memory
        self.port = free_port(port)
        self.ui_port = free_port(8080)
        self.python = python or sys.executable
        self.worker_resources = dict(worker_resources or {})
        self.extra_env = dict(env or {})
        self.master: Node | None = None
        self.workers: list[Node] = []

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SPARK_HOME": spark_home(),
                "SPARK_LOCAL_IP": "127.0.0.1",
                "PYSPARK_PYTHON": self.python,
                "SPARK_NO_DAEMONIZE": "1",
            }
        )
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    def _spawn(self, name: str, args: list[str], extra_env: Mapping[str, str] | None = None) -> Node:
        spark_class = os.path.join(spark_home(), "bin", "spark-class")
        log_path = os.path.join(self.workdir, "logs", f"{name}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open while the daemon runs
        proc = subprocess.Popen(
            [spark_class, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._env(extra_env),
            start_new_session=True,  # its own process group: executors and Python workers join it
        )
        return Node(name, proc, log_path, log, args)

    def state(self) -> dict[str, Any]:
        """The master's JSON status (workers, applications)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
            return dict(json.loads(r.read().decode()))

    def alive_workers(self) -> int:
        try:
            return sum(1 for w in self.state().get("workers", []) if w.get("state") == "ALIVE")
        except (OSError, ValueError):
            return 0

    def _wait(self, what: str, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            for node in [self.master, *self.workers]:
                if node is not None and not node.alive:
                    raise RuntimeError(f"{node.name} exited: see {node.log_path}\n{_tail(node.log_path)}")
            time.sleep(0.3)
        raise TimeoutError(f"{what} not ready after {timeout:.0f} s; logs under {self.workdir}/logs")

    def start(self, timeout: float = 90.0) -> StandaloneCluster:
        self.master = self._spawn(
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--webui-port",
                str(self.ui_port),
            ],
        )

        def master_up() -> bool:
            try:
                return self.state().get("status") == "ALIVE"
            except (OSError, ValueError):  # not listening yet, or a page other than JSON
                return False

        self._wait("master", master_up, timeout)
        for i in range(self.n_workers):
            self.workers.append(self._start_worker(i))
        self._wait(f"{self.n_workers} workers", lambda: self.alive_workers() >= self.n_workers, timeout)
        return self

    def _start_worker(self, i: int) -> Node:
        work = os.path.join(self.workdir, f"worker-{i}")
        os.makedirs(work, exist_ok=True)
        ui_port = free_port()
        opts = [
            f"-Dspark.worker.resource.{name}.amount={amount} "
            f"-Dspark.worker.resource.{name}.discoveryScript={script}"
            for name, (amount, script) in self.worker_resources.items()
        ]
        # RETRIEVAL_WORKER_INDEX reaches the worker and its executors: a fake GPU discovery script can hand out distinct addresses.
        extra = {"SPARK_WORKER_OPTS": " ".join(opts), "RETRIEVAL_WORKER_INDEX": str(i)}
        node = self._spawn(
            f"worker-{i}",
            [
                "org.apache.spark.deploy.worker.Worker",
                self.url,
                "--host",
                "127.0.0.1",
                "--cores",
                str(self.cores),
                "--memory",
                self.memory,
                "--work-dir",
                work,
                "--webui-port",
                str(ui_port),
            ],
            extra,
        )
        node.ui_port = ui_port
        return node

    def worker_state(self, i: int) -> dict[str, Any]:
        """Worker ``i``'s JSON status (its executors, their applications)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.workers[i].ui_port}/json/", timeout=5) as r:
            return dict(json.loads(r.read().decode()))

    def worker_of_executor(self, app_id: str, executor_id: str) -> int | None:
        """The index of the worker that runs executor ``executor_id`` of application ``app_id``."""
        for i, node in enumerate(self.workers):
            if not node.alive:
                continue
            try:
                state = self.worker_state(i)
            except (OSError, ValueError):
                continue
            for ex in state.get("executors", []):
                if str(ex.get("id")) == str(executor_id) and ex.get("appid") == app_id:
                    return i
        return None

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i``'s whole process group (worker, executor, Python workers): a node lost."""
        node = self.workers[i]
        _kill_group(node.proc, signal.SIGKILL)
        node.proc.wait(timeout=30)

    def restart_worker(self, i: int, timeout: float = 90.0) -> None:
        """Starts worker ``i`` again (after :meth:`kill_worker`) and waits until the master has
        registered it: a new worker id, ALIVE (the master lists the dead one as ALIVE until its
        heartbeat times out, so counting ALIVE workers would not tell)."""
        if self.workers[i].alive:
            return
        known = {w.get("id") for w in self.state().get("workers", [])}
        self.workers[i].log.close()
        self.workers[i] = self._start_worker(i)

        def registered() -> bool:
            try:
                workers = self.state().get("workers", [])
            except (OSError, ValueError):
                return False
            return any(w.get("id") not in known and w.get("state") == "ALIVE" for w in workers)

        self._wait(f"worker-{i}", registered, timeout)

    def stop(self) -> None:
        """Stops the workers (and their executors), then the master: SIGTERM, SIGKILL after 15 s."""
        for node in [*self.workers, *([self.master] if self.master else [])]:
            if node.alive:
                _kill_group(node.proc, signal.SIGTERM)
        for node in [*self.workers, *([self.master] if self.master else [])]:
            try:
                node.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _kill_group(node.proc, signal.SIGKILL)
                node.proc.wait(timeout=15)
            # executors left in the group after the daemon went
            _kill_group(node.proc, signal.SIGKILL)
            node.log.close()

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the daemon's pid


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def java_available() -> bool:
    return shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cores", type=int, default=1, help="cores per worker")
    p.add_argument("--memory", default="2g", help="memory per worker")
    p.add_argument("--port", type=int, default=7077)
    p.add_argument("--workdir", default=os.path.join("work", "standalone"))
    a = p.parse_args(argv)
    cluster = StandaloneCluster(a.workdir, a.workers, a.cores, a.memory, a.port)
    # SIGTERM (kill, a scheduler stopping us) leaves through the context manager too: no orphaned JVMs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with cluster:
        print(f"master {cluster.url} (UI http://127.0.0.1:{cluster.ui_port}); logs in {a.workdir}/logs")
        print(f"  ./submit.sh pipeline --config conf/test.yaml --set spark.master={cluster.url}", flush=True)
        try:
            while all(n.alive for n in cluster.workers):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
