"""The serving handoff against a real Redis (Debian's redis-server, started per module on a free
loopback port): packed carousels, versioned loads, the atomic alias flip under concurrent readers,
retention, and publish_recs from a recs table written by Spark."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import make_config
from retrieval.serving.store import RedisStore, connect, pack, unpack

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS is None, reason="no redis-server: `apt-get install redis-server` (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from benchmarks.serving import start_redis

    proc, url = start_redis(str(tmp_path_factory.mktemp("redis")))
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def store(redis_url: str, request: pytest.FixtureRequest) -> RedisStore:
    client = connect(redis_url)
    return RedisStore(client, f"test:{request.node.name}")


def carousel(offer: int, version: int, k: int = 5) -> tuple[list[int], list[float]]:
    """A carousel that says which offer and which version it belongs to."""
    return [offer * 1000 + version * 100 + j for j in range(k)], [float(version) + j / 10 for j in range(k)]


def load(store: RedisStore, version: int, offers: range) -> str:
    name = f"v{version}"
    store.load(name, ((o, pack(*carousel(o, version))) for o in offers), batch=64)
    store.mark_loaded(name, len(offers))
    return name


def test_a_packed_carousel_reads_back_as_written() -> None:
    ids, scores = unpack(pack([7, 2**40, -1], [0.5, 0.25, -1.0]))
    assert ids.tolist() == [7, 2**40, -1] and scores.tolist() == [0.5, 0.25, -1.0]
    assert unpack(pack([], []))[0].size == 0
    with pytest.raises(ValueError, match="12 bytes"):
        unpack(b"\x00" * 13)


def test_nothing_is_served_before_a_version_is_flipped_to(store: RedisStore) -> None:
    assert store.get([1, 2]).version is None
    name = f"v{1}"
    store.load(name, [(1, pack(*carousel(1, 1)))])
    with pytest.raises(Exception, match="not loaded"):  # not marked loaded: the flip refuses
        store.flip(name)
    store.mark_loaded(name, 1)
    assert store.flip(name) is None
    got = store.get([1, 2])
    assert got.version == "v1" and got.recs[2] is None
    ids, scores = got.recs[1]  # type: ignore[misc]
    assert ids.tolist() == carousel(1, 1)[0] and np.allclose(scores, carousel(1, 1)[1])


def test_a_flip_under_concurrent_readers_gives_no_missing_and_no_mixed_carousels(
    store: RedisStore, redis_url: str
) -> None:
    offers = range(1, 401)
    store.flip(load(store, 1, offers))
    stop, seen, bad = threading.Event(), set(), []

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        client_store = RedisStore(connect(redis_url), store.ns)  # a client of its own, as a server has
        while not stop.is_set():
            asked = [int(o) for o in rng.choice(offers, 20, replace=False)]
            got = client_store.get(asked)
            seen.add(got.version)
            version = int(str(got.version)[1:])
            for o in asked:
                c = got.recs[o]
                if c is None or c[0].tolist() != carousel(o, version)[0]:
                    bad.append((got.version, o, None if c is None else c[0].tolist()))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for version in (2, 3, 4):  # load beside the live version, flip, and drop the oldest
            store.flip(load(store, version, offers))
            store.retain(2)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not bad, bad[:5]
    assert seen <= {"v1", "v2", "v3", "v4"} and len(seen) >= 2, seen  # the readers saw flips happen
    assert store.current() == "v4" and store.versions() == ["v3", "v4"]
    assert store.count("v1") == 0 and store.count("v2") == 0 and store.count("v4") == len(offers)


def test_retention_keeps_the_live_and_previous_versions_and_finishes_a_drop_cut_short(
    store: RedisStore,
) -> None:
    for version in (1, 2, 3):
        store.flip(load(store, version, range(1, 11)))
    with pytest.raises(ValueError, match="is live"):
        store.drop("v3")
    assert store.retain(3) == []  # live v3, previous v2, and one more: v1
    # a drop of v1 cut short after its mark and some of its keys: v1 can't be flipped to any more, and
    # the next retain finishes the drop
    store.client.hset(f"{store.ns}:meta:v1", "dropping", 1)
    store.client.delete(store.key("v1", 1), store.key("v1", 2))
    assert store.loaded("v1") is None
    with pytest.raises(Exception, match="not loaded"):
        store.flip("v1")
    assert store.retain(2) == ["v1"]
    assert store.count("v1") == 0 and store.versions() == ["v2", "v3"]
    assert store.flip("v2") == "v3"  # a rollback
    assert store.get([5]).version == "v2"


@pytest.mark.spark
def test_publish_recs_loads_the_recs_table_and_a_rerun_loads_nothing(
    spark: Any, tmp_path: Path, redis_url: str
) -> None:
    from pyspark.sql import types as T

    from jobs.publish_recs import run
    from retrieval import tables
    from retrieval.spark_tables import write_table

    schema = T.StructType(
        [
            T.StructField("offer_id", T.LongType()),
            T.StructField(
                "recs",
                T.ArrayType(
                    T.StructType(
                        [T.StructField("offer_id", T.LongType()), T.StructField("score", T.FloatType())]
                    )
                ),
            ),
            T.StructField("model_version", T.StringType()),
        ]
    )

    def recs_table(version: int) -> Any:
        rows = [
            (o, [{"offer_id": i, "score": s} for i, s in zip(*carousel(o, version), strict=True)], "m")
            for o in range(1, 301)
        ]
        rows.append((301, [], "m"))  # an offer without recs keeps an empty carousel
        return spark.createDataFrame(rows, schema).repartition(3)

    cfg = make_config(tmp_path, f"serving.redis_url={redis_url}", "serving.namespace=test:publish")
    write_table(recs_table(1), str(tmp_path), tables.RECS)
    first = run(spark, cfg)
    assert first["rows"] == first["rows_loaded"] == 301 and first["replaced"] is None
    again = run(spark, cfg)
    assert again["rows_loaded"] == 0 and again["version"] == first["version"]
    write_table(recs_table(2), str(tmp_path), tables.RECS)
    second = run(spark, cfg)
    assert second["replaced"] == first["version"] and second["rows_loaded"] == 301
    store = RedisStore(connect(redis_url), "test:publish")
    got = store.get([7, 301, 999])
    assert got.version == second["version"]
    assert got.recs[7][0].tolist() == carousel(7, 2)[0]  # type: ignore[index]
    assert got.recs[301][0].size == 0 and got.recs[999] is None  # type: ignore[index]


def test_publish_recs_without_a_redis_url_says_what_to_set(tmp_path: Path) -> None:
    from jobs.publish_recs import run
    from retrieval.config import ConfigError

    with pytest.raises(ConfigError, match=r"serving\.redis_url"):
        run(None, make_config(tmp_path))


def test_an_unreachable_redis_is_named(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        connect(f"redis://127.0.0.1:{port}/0")
