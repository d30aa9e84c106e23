"""Shared fixtures: one local Spark session for the whole run, and one tiny generated marketplace."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the jobs package
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
TEST_CONFIG = str(REPO / "conf" / "test.yaml")


LANE = os.environ.get("RETRIEVAL_LANE", "default")  # set by test.sh: default | petastorm


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``petastorm`` skip in the default lane, which does not install it; in the Petastorm
    lane they run, and fail if it is missing."""
    import importlib.util

    if LANE == "petastorm" or importlib.util.find_spec("petastorm") is not None:
        return
    skip = pytest.mark.skip(reason="petastorm is only in the Petastorm lane (./test.sh --petastorm)")
    for item in items:
        if "petastorm" in item.keywords:
            item.add_marker(skip)


def make_config(root: str | Path, *overrides: str) -> Any:
    """conf/test.yaml with its root moved to ``root`` and any overrides applied."""
    from retrieval import config

    return config.load(TEST_CONFIG, [f"paths.root={root}", *overrides])


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local[2] session with few shuffle partitions and a temporary spark.local.dir."""
    from retrieval.spark import get_spark

    local = tmp_path_factory.mktemp("spark-local")
    cfg = make_config(tmp_path_factory.mktemp("unused"), f"spark.local_dir={local}", "spark.app_name=pytest")
    session = get_spark(cfg, "tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def marketplace(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """conf/test.yaml's marketplace, generated and ingested once: {"cfg", "root", "generate", "ingest"}."""
    from jobs import generate, ingest
    from retrieval.cli import run_stage

    root = tmp_path_factory.mktemp("marketplace")
    cfg = make_config(root)
    out = {"cfg": cfg, "root": str(root)}
    out["generate"] = run_stage(spark, cfg, "generate", generate.run, TEST_CONFIG)
    out["ingest"] = run_stage(spark, cfg, "ingest", ingest.run, TEST_CONFIG)
    return out


@pytest.fixture(scope="session")
def mined(spark: Any, marketplace: dict[str, Any]) -> dict[str, Any]:
    """The marketplace fixture, mined: adds "mine_pairs" and "mine_listings" results."""
    from jobs import mine_listings, mine_pairs
    from retrieval.cli import run_stage

    cfg = marketplace["cfg"]
    marketplace["mine_pairs"] = run_stage(spark, cfg, "mine_pairs", mine_pairs.run, TEST_CONFIG)
    marketplace["mine_listings"] = run_stage(spark, cfg, "mine_listings", mine_listings.run, TEST_CONFIG)
    return marketplace


@pytest.fixture(scope="session")
def trained(spark: Any, mined: dict[str, Any]) -> dict[str, Any]:
    """The mined marketplace with a trained encoder: adds "train_encoder"."""
    from jobs import train_encoder
    from retrieval.cli import run_stage

    mined["train_encoder"] = run_stage(spark, mined["cfg"], "train_encoder", train_encoder.run, TEST_CONFIG)
    return mined


def submit(*args: str, timeout: int = 60, env: dict[str, str] | None = None) -> Any:
    """``./submit.sh args`` from the repo, as a user runs it (CompletedProcess, text)."""
    import subprocess

    return subprocess.run(
        [str(REPO / "submit.sh"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The project's wheel (``pip wheel .``), installed with ``--no-deps`` into a thin venv layered over
    this lane's venv (its site-packages on the path, nothing installed twice), as a platform would take
    it: {"wheel", "python", "retrieval" (the console command), "env"}. Its ``retrieval`` and ``jobs`` are
    the wheel's, not the checkout's: the checkout's editable finder is not on the thin venv's path."""
    import subprocess
    import sysconfig

    tmp = tmp_path_factory.mktemp("installed")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = ["--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(REPO)]
    subprocess.run([*pip, "wheel", *build], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("retrieval_at_scale-*.whl")
    venv = tmp / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    (site / "lane.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)], check=True
    )
    env = {
        **os.environ,
        "PYSPARK_PYTHON": str(venv / "bin" / "python"),
        "RETRIEVAL_BUILD_DIR": str(tmp / "build"),
    }
    env.pop("PYTHONPATH", None)
    return {
        "wheel": wheel,
        "python": venv / "bin" / "python",
        "retrieval": venv / "bin" / "retrieval",
        "env": env,
    }


@pytest.fixture(scope="session")
def local_pipeline(tmp_path_factory: pytest.TempPathFactory, installed: dict[str, Any]) -> dict[str, Any]:
    """``retrieval pipeline --config conf/test.yaml`` on local[2] from the installed wheel, run from a
    directory that is not a checkout, once: {"root", "out"}. The cluster tests (which run ./submit.sh
    from the checkout) compare their outputs with this run's."""
    import subprocess

    root = tmp_path_factory.mktemp("local-pipeline")
    cwd = tmp_path_factory.mktemp("elsewhere")
    out = subprocess.run(
        [
            str(installed["retrieval"]),
            "pipeline",
            "--config",
            "conf/test.yaml",
            "--set",
            f"paths.root={root}",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=installed["env"],
    )
    # spark-submit's PythonRunner merges the driver's stderr into stdout
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    return {"root": root, "out": out}


@pytest.fixture(scope="session")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Spark standalone cluster on 127.0.0.1: a master and two 1-core workers started from the
    installed pyspark (retrieval.standalone), stopped by PID at the end. Each worker advertises one
    fake GPU through deploy/get_gpus_resources.sh (RETRIEVAL_FAKE_GPUS), as a GPU node would."""
    from retrieval.standalone import StandaloneCluster, java_available

    if not java_available():
        pytest.skip("the cluster tests need Java 17 (java on PATH or JAVA_HOME)")
    cluster = StandaloneCluster(
        str(tmp_path_factory.mktemp("standalone")),
        workers=2,
        cores=1,
        memory="2g",
        worker_resources={"gpu": (1, str(REPO / "deploy" / "get_gpus_resources.sh"))},
        env={"RETRIEVAL_FAKE_GPUS": "1"},
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
