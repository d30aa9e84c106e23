"""Benchmark: carousel lookups from the serving store (Redis) under a bounded concurrent load, beside
the 120 ms a marketplace budgets for a whole search request.

    .venv/bin/python -m benchmarks.serving [--root work/local] [--clients 16] [--seconds 60]
        [--redis-url redis://127.0.0.1:6379/0] [--out benchmarks/results/serving.json]

Publishes the recs table of a pipeline run under ``--root`` (read with pyarrow, loaded through
``retrieval.serving.store``, as ``publish_recs`` does from Spark) into a Redis it starts on a free
loopback port (Debian's ``redis-server``; or ``--redis-url``'s), then runs ``--clients`` client
processes for ``--seconds``, each looking up one random offer's carousel at a time (a page view) with
``RedisStore.get``, as fast as it can. Halfway through, a second version of the same carousels is
loaded beside the live one and the alias flipped to it, under the load: every lookup of an offer with
recs must find its carousel (``missing`` counts the ones that did not). Prints lookups/s and the p50 /
p99 / p99.9 latency seen by the clients (client and server share this machine's cores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lib"))

from retrieval.serving.store import RedisStore, connect, pack_recs  # noqa: E402

BUDGET_MS = 120.0  # the reference system's budget for a whole search request


def start_redis(work: str) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("no redis-server: apt-get install redis-server, or pass --redis-url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        exe,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        work,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            connect(url)
            return proc, url
        except ConnectionError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit(f"redis-server did not answer on {url}")


def read_recs(root: str) -> tuple[np.ndarray, list[bytes]]:
    """Every offer id of the recs table and its packed carousel."""
    import pyarrow.dataset as ds

    from retrieval import tables

    t = ds.dataset(tables.path(root, tables.RECS), format="parquet").to_table(columns=["offer_id", "recs"])
    ids = t.column("offer_id").to_numpy()
    blobs = [pack_recs(rs) for rs in t.column("recs").to_pylist()]
    return ids, blobs


def client(
    url: str, ns: str, offers: np.ndarray, seconds: float, seed: int, ready: Any, go: Any, out: Any
) -> None:
    store = RedisStore(connect(url), ns)
    rng = np.random.default_rng(seed)
    latencies, missing, versions = [], 0, set()
    ready.put(seed)
    go.wait()
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        offer = int(offers[rng.integers(len(offers))])
        t0 = time.perf_counter()
        got = store.get([offer])
        latencies.append(time.perf_counter() - t0)
        versions.add(got.version)
        missing += got.recs[offer] is None
    out.put((np.asarray(latencies, dtype=np.float64), missing, sorted(v for v in versions if v)))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="work/local")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--redis-url", default="")
    p.add_argument("--namespace", default="bench:recs")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "serving.json"))
    a = p.parse_args(argv)

    work = tempfile.mkdtemp(prefix="serving-bench-")
    proc, url = (None, a.redis_url) if a.redis_url else start_redis(work)
    try:
        ids, blobs = read_recs(a.root)
        store = RedisStore(connect(url), a.namespace)
        t0 = time.perf_counter()
        store.load("one", zip(ids.tolist(), blobs, strict=True))
        store.mark_loaded("one", len(ids))
        load_s = time.perf_counter() - t0
        store.flip("one")
        with_recs = ids[[len(b) > 0 for b in blobs]]
        print(
            f"loaded {len(ids):,} carousels in {load_s:.1f} s; {a.clients} clients for {a.seconds:.0f} s",
            flush=True,
        )
        ctx = mp.get_context("spawn")
        queue, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [
            ctx.Process(target=client, args=(url, a.namespace, with_recs, a.seconds, i, ready, go, queue))
            for i in range(a.clients)
        ]
        for pr in procs:
            pr.start()
        for _ in procs:  # every client connected: then they all start at once
            ready.get()
        go.set()
        started = time.perf_counter()
        time.sleep(a.seconds / 2)  # halfway: a new version loaded beside the live one, then the flip
        t1 = time.perf_counter()
        store.load("two", zip(ids.tolist(), blobs, strict=True))
        store.mark_loaded("two", len(ids))
        store.flip("two")
        flip_s = time.perf_counter() - t1
        results = [queue.get() for _ in procs]
        for pr in procs:
            pr.join()
        elapsed = time.perf_counter() - started
        store.retain(2)
        store.drop("one")
        lat = np.concatenate([r[0] for r in results]) * 1000.0
        out = {
            "kind": "benchmark",
            "what": "carousel lookups from Redis (RedisStore.get, one offer per call) under a concurrent load",
            "carousels": len(ids),
            "clients": a.clients,
            "seconds": round(elapsed, 1),
            "lookups": len(lat),
            "lookups_per_second": round(len(lat) / elapsed),
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "p999_ms": round(float(np.percentile(lat, 99.9)), 3),
            "max_ms": round(float(lat.max()), 3),
            "budget_ms": BUDGET_MS,
            "load_seconds": round(load_s, 1),
            "reload_and_flip_under_load_seconds": round(flip_s, 1),
            "missing": int(sum(r[1] for r in results)),
            "versions_seen": sorted({v for r in results for v in r[2]}),
            "redis": connect(url).info("server")["redis_version"],
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        }
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{out['lookups_per_second']:,} lookups/s; p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms, "
        f"p99.9 {out['p999_ms']} ms (budget {BUDGET_MS:.0f} ms); {out['missing']} missing across the flip "
        f"(versions seen: {', '.join(out['versions_seen'])})"
    )
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {a.out}")
    return out


if __name__ == "__main__":
    main()
