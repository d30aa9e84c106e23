"""The scale ladder: the pipeline's stages at s x the embedded default, each measured as it runs.

    .venv/bin/python -m benchmarks.scale                        # rungs 1, 4, 16 (~2 h on 2 cores)
    .venv/bin/python -m benchmarks.scale --factors 1,2 --root work/scale-small
    .venv/bin/python -m benchmarks.scale --report               # the table and fits of what is done

A rung is conf/local.yaml with ``synth.products`` and ``synth.sessions`` multiplied by s (16x: ~1M
offers, ~8M events, ~1.5M searches). Every stage runs as its own Spark application, as a scheduler
runs it (``./submit.sh <stage>``), with Spark's event log on; while it runs, a sampler reads the RSS of
its processes. Per stage and rung it records:

- wall seconds (the application, JVM start included) and the stage's own seconds (its metrics);
- rows in and out (the row counts of the tables it reads and writes, from the parquet footers), and
  rows per second per core;
- peak RSS of the driver's JVM (which holds the executors on a local master), of the driver's Python
  process, of the Python workers (all at once) and of training processes;
- bytes returned to the driver (task result sizes), shuffle read and write, memory and disk spill,
  from the event log's task metrics; the bytes of what it wrote.

Data stages run at full size; training stages on what their config bounds (ranker searches, visual
products) or on every training pair (the encoder), and report examples/s. After the full candidate
path, an incremental day: 1% of the offers changed or deleted (``delta``), then embed_offers,
build_index and precompute_recs incrementally, and a full rebuild of the same catalogue with the same
quantizer to check that the recs agree. Each rung's figures are written as it goes
(``<root>/ladder.json``: resumable, a stage already measured is not run again); once a rung is done
its tables are deleted (``--keep`` keeps them). ``--report`` fits each stage's growth exponent b
(time ~ rows^b, between consecutive rungs), adds the cost model at the reference scale
(``benchmarks/scale_cost.py``) and writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "lib"))

BASE = {"products": 20000, "sessions": 40000}  # conf/local.yaml's marketplace
DATA_STAGES = [
    "generate",
    "ingest",
    "mine_pairs",
    "mine_listings",
    "embed_offers",
    "build_index",
    "precompute_recs",
]
# the candidate path, as the pipeline runs it (benchmarks/driver_bytes.py measures the same stages)
CANDIDATE_PATH = [
    "generate",
    "ingest",
    "mine_pairs",
    "mine_listings",
    "train_encoder",
    "embed_offers",
    "build_index",
    "precompute_recs",
]
LADDER = [
    *CANDIDATE_PATH,
    "delta",
    "incremental_embed_offers",
    "incremental_build_index",
    "incremental_precompute_recs",
    "rebuild",
    "train_ranker",
    "visual_pairs",
    "train_visual",
    "embed_images",
]
DELTA_SINCE = "2030-01-01"  # the incremental day: offers changed after the log's period


def rung_sets(factor: float, root: str) -> list[str]:
    """--set overrides of one rung (conf/local.yaml's marketplace times ``factor``)."""
    return [
        f"paths.root={root}",
        f"synth.products={int(BASE['products'] * factor)}",
        f"synth.sessions={int(BASE['sessions'] * factor)}",
        "spark.driver_memory=10g",
        "tracking.enabled=false",
    ]


# --- measuring one application ---------------------------------------------------------------


def _kind(proc: Any) -> str:
    try:
        name, cmd = proc.name(), " ".join(proc.cmdline())
    except Exception:
        return "other"
    if "java" in name:
        return "jvm"
    if "python" not in name and "python" not in cmd:
        return "other"
    if "pyspark.daemon" in cmd or "pyspark/daemon" in cmd or "pyspark.worker" in cmd:
        return "python_workers"
    if "torch.distributed" in cmd or "torchrun" in cmd or "TorchDistributor" in cmd or "train_fn" in cmd:
        return "training"
    if "jobs/" in cmd or "retrieval.submit" in cmd:
        return "driver_python"
    return "python_workers"  # pyspark's forked workers keep the daemon's command line only sometimes


class Sampler(threading.Thread):
    """Peak RSS, by kind of process, of a process tree (every ``every`` seconds until stopped)."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peaks, self.done = pid, every, dict[str, int](), threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.done.is_set():
            now: dict[str, int] = {}
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    kind = _kind(p)
                    now[kind] = now.get(kind, 0) + p.memory_info().rss
                except psutil.Error:
                    continue
            for kind, rss in now.items():
                self.peaks[kind] = max(self.peaks.get(kind, 0), rss)
            self.done.wait(self.every)


METRICS = (
    "tasks",
    "result_bytes",
    "broadcast_bytes",
    "broadcast_max_bytes",
    "shuffle_read_bytes",
    "shuffle_write_bytes",
    "memory_spill_bytes",
    "disk_spill_bytes",
)


def _log_files(log_dir: str) -> list[tuple[int, str]]:
    """(application number, file) of every event log under ``log_dir``, each application's files in
    order: Spark 4 rolls its log by default (a directory ``eventlog_v2_<app>`` of ``events_<n>_<app>``
    files, n from 1), older ones write a file per application."""
    apps: dict[str, list[tuple[int, str]]] = {}
    for path in glob.glob(os.path.join(log_dir, "**", "*"), recursive=True):
        name = os.path.basename(path)
        if not os.path.isfile(path) or name.startswith(("appstatus", ".")):
            continue
        parent = os.path.dirname(path)
        if os.path.basename(parent).startswith("eventlog_v2_") and name.startswith("events_"):
            apps.setdefault(parent, []).append((int(name.split("_")[1]), path))
        else:
            apps.setdefault(path, []).append((0, path))
    return [(i, p) for i, key in enumerate(sorted(apps)) for _, p in sorted(apps[key])]


def event_totals(log_dir: str, by_group: bool = False) -> dict[str, Any]:
    """Task metrics summed over every task of the applications logged under ``log_dir`` (Spark's event
    log, uncompressed); with ``by_group``, per job group ({stage: totals}: ``cli.run_stage`` names
    each stage's jobs after it).

    ``result_bytes`` are what tasks returned to the driver for actions (collects, counts, and the map
    statuses of shuffles); ``broadcast_bytes`` what broadcast joins' build sides brought to the driver
    (jobs run from SQL's async executions), each join bounded by spark.sql.autoBroadcastJoinThreshold,
    and ``broadcast_max_bytes`` the largest one of them."""
    group_of_stage: dict[int, str] = {}
    broadcast_job: dict[int, int] = {}  # stage -> its job, where the job is a broadcast
    by_job: dict[tuple[str, int], int] = {}
    out: dict[str, dict[str, int]] = {}
    for app, path in _log_files(log_dir):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if '"SparkListenerJobStart"' in line:
                    e = json.loads(line)
                    group = (e.get("Properties") or {}).get("spark.jobGroup.id") or "-"
                    for info in e.get("Stage Infos", []):
                        stage = app * 1_000_000 + int(info["Stage ID"])
                        group_of_stage[stage] = group
                        if "withThreadLocalCaptured" in info.get("Details", ""):
                            broadcast_job[stage] = int(e["Job ID"])
                    continue
                if '"SparkListenerTaskEnd"' not in line:
                    continue
                e = json.loads(line)
                stage = app * 1_000_000 + int(e.get("Stage ID", -1))
                m = e.get("Task Metrics") or {}
                read = m.get("Shuffle Read Metrics") or {}
                group = group_of_stage.get(stage, "-")
                key = group if by_group else "all"
                t = out.setdefault(key, dict.fromkeys(METRICS, 0))
                t["tasks"] += 1
                size = int(m.get("Result Size", 0))
                if stage in broadcast_job and e.get("Task Type") == "ResultTask":
                    t["broadcast_bytes"] += size
                    job = (key, app * 1_000_000 + broadcast_job[stage])
                    by_job[job] = by_job.get(job, 0) + size
                    t["broadcast_max_bytes"] = max(t["broadcast_max_bytes"], by_job[job])
                else:
                    t["result_bytes"] += size
                t["shuffle_read_bytes"] += int(read.get("Remote Bytes Read", 0)) + int(
                    read.get("Local Bytes Read", 0)
                )
                t["shuffle_write_bytes"] += int(
                    (m.get("Shuffle Write Metrics") or {}).get("Shuffle Bytes Written", 0)
                )
                t["memory_spill_bytes"] += int(m.get("Memory Bytes Spilled", 0))
                t["disk_spill_bytes"] += int(m.get("Disk Bytes Spilled", 0))
    if by_group:
        return out
    return out.get("all", dict.fromkeys(METRICS, 0))


def table_rows(root: str, name: str) -> int:
    """Rows of a table under ``root`` from its parquet footers (0 when it is not there)."""
    import pyarrow.parquet as pq

    from retrieval import commit

    uri = commit.resolve(root, name)
    return sum(pq.ParquetFile(f).metadata.num_rows for f in glob.glob(os.path.join(uri or "", "*.parquet")))


def path_bytes(root: str, name: str) -> int:
    """Bytes of the committed version of table ``name`` (not the one kept before it)."""
    from retrieval import tables
    from retrieval.storage import local_path

    try:
        where = local_path(tables.path(root, name))
    except FileNotFoundError:
        return 0
    total = 0
    for dirpath, _, filenames in os.walk(where):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in filenames)
    return total


def run_stage(stage: str, sets: list[str], root: str, log_dir: str) -> dict[str, Any]:
    """One stage as its own application through submit.sh; its measurements."""
    from retrieval import stages, tables

    job = stage.removeprefix("incremental_")
    os.makedirs(log_dir, exist_ok=True)
    extra = ["spark.conf.spark.eventLog.enabled=true", f"spark.conf.spark.eventLog.dir=file://{log_dir}"]
    extra += ["spark.conf.spark.eventLog.compress=false"]
    if stage.startswith("incremental_"):
        extra += ["recs.mode=incremental", f"recs.since={DELTA_SINCE}"]
    cmd = [os.path.join(REPO, "submit.sh"), job]
    for s in [*sets, *extra]:
        cmd += ["--set", s]
    reg = stages.get(job)
    reads = [t for t in reg.reads if t in tables.CONTRACTS]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    output, _ = proc.communicate()
    sampler.done.set()
    sampler.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{output[-5000:]}")
    with open(os.path.join(root, "_metrics", f"{job}.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    written = [t for t in reg.writes if os.path.isdir(os.path.join(root, t))]
    return {
        "wall_s": round(wall, 1),
        "seconds": metrics["seconds"],
        "rows_in": sum(table_rows(root, t) for t in reads),
        "rows_out": int(metrics.get("rows_out", 0)),
        "output_bytes": sum(path_bytes(root, t) for t in written),
        "peak_rss": sampler.peaks,
        **event_totals(log_dir),
        "metrics": {k: metrics[k] for k in QUALITY.get(job, ()) if k in metrics},
    }


# The figures of quality kept per rung, beside the costs.
QUALITY = {
    "train_encoder": ("recall_at_50", "cold_recall_at_50", "share_of_ceiling", "examples_per_s", "training"),
    "precompute_recs": (
        "recall_at_20_test_pairs",
        "recall_at_20_baselines",
        "recall_at_20_test_pairs_ceiling",
        "share_of_ceiling",
        "duplicate_products",
        "product_matching",
        "catalog_coverage",
        "recomputed",
        "patched",
    ),
    "build_index": ("index_factory", "nprobe", "recall_at_10_vs_exact", "vectors"),
    "embed_offers": ("offers_per_s", "offers_embedded"),
    "train_ranker": ("ndcg_at_10", "xgb"),
    "mine_listings": ("listings", "rows"),
    "train_visual": ("variants",),
}


# --- the incremental day ----------------------------------------------------------------------


def make_delta(root: str, share: float, seed: int) -> dict[str, Any]:
    """Rewrites ``offers`` under ``root`` as the next day's catalogue: a hash-chosen ``share`` of the
    offers changed (their titles) or deleted (one in ten of them), updated at DELTA_SINCE. Keeps the
    day's first catalogue as offers_day_one for the rebuild."""
    from pyspark.sql import functions as F

    from retrieval import config, tables
    from retrieval.spark import get_spark
    from retrieval.spark_tables import read_table, write_table

    cfg = config.load(
        os.path.join(REPO, "conf", "local.yaml"), [f"paths.root={root}", "spark.driver_memory=6g"]
    )
    spark = get_spark(cfg, "scale-delta")
    offers = read_table(spark, root, tables.OFFERS)
    h = F.abs(F.xxhash64("offer_id", F.lit(seed))) % 1_000_000
    picked = h < int(share * 1_000_000)
    deleted = h < int(share * 100_000)
    later = F.to_timestamp(F.lit(f"{DELTA_SINCE} 06:00:00"))
    day_two = offers.select(
        "offer_id",
        F.when(picked & ~deleted, F.concat(F.col("title"), F.lit(" refurbished")))
        .otherwise(F.col("title"))
        .alias("title"),
        "category_id",
        "price",
        "seller_id",
        "product_id",
        "image_ref",
        F.when(picked, later).otherwise(F.col("updated_at")).alias("updated_at"),
        F.when(deleted, F.lit(True)).otherwise(F.col("deleted")).alias("deleted"),
    )
    write_table(day_two, root, tables.OFFERS)
    n = (
        read_table(spark, root, tables.OFFERS)
        .agg(
            F.count(F.lit(1)).alias("offers"),
            F.sum((F.col("updated_at") >= later).cast("long")).alias("changed"),
            F.sum(F.coalesce(F.col("deleted"), F.lit(False)).cast("long")).alias("deleted"),
        )
        .first()
    )
    spark.stop()
    assert n is not None
    return {"offers": int(n["offers"]), "changed_or_deleted": int(n["changed"]), "deleted": int(n["deleted"])}


def compare_recs(a_root: str, b_root: str) -> dict[str, Any]:
    """How many carousels of the incremental run differ from the rebuild's (scores within 1e-4)."""
    import pyarrow.dataset as ds

    from retrieval import tables
    from retrieval.storage import local_path

    def recs(root: str) -> dict[int, list[float]]:
        where = local_path(tables.path(root, "recs"))
        t = ds.dataset(where, format="parquet").to_table(columns=["offer_id", "recs"])
        return {
            int(o): [x["score"] for x in r]
            for o, r in zip(t["offer_id"].to_pylist(), t["recs"].to_pylist(), strict=True)
        }

    a, b = recs(a_root), recs(b_root)
    differ = sum(
        1
        for o in a
        if o not in b
        or len(a[o]) != len(b[o])
        or any(abs(x - y) > 1e-4 for x, y in zip(a[o], b[o], strict=True))
    )
    return {
        "offers": len(a),
        "same_offers": set(a) == set(b),
        "carousels_differing": differ,
        "share_differing": round(differ / max(len(a), 1), 5),
    }


def rebuild(root: str, sets: list[str], log_dir: str) -> dict[str, Any]:
    """A full embed + index + recs of the day-two catalogue with the live quantizer, in a copy of the
    root; its seconds, and how the incremental recs compare."""
    copy = root.rstrip("/") + "-rebuild"
    shutil.rmtree(copy, ignore_errors=True)
    for part in ("offers", "pairs", "models", "_metrics", "truth"):
        if os.path.exists(os.path.join(root, part)):
            shutil.copytree(os.path.join(root, part), os.path.join(copy, part))
    from retrieval import commit

    live_dir = commit.resolve(root, "index") or os.path.join(root, "index", "missing")
    quantizer = os.path.join(live_dir, "quantizer.faiss")
    with open(os.path.join(live_dir, "manifest.json"), encoding="utf-8") as f:
        live = json.load(f)
    # the live index's quantizer, factory and nprobe (a rebuild would plan and tune its own)
    sets = [s for s in sets if not s.startswith("paths.root=")] + [
        f"paths.root={copy}",
        f"index.quantizer={quantizer}",
        f"index.factory={live['factory']}",
        f"index.nprobe={live['nprobe']}",
    ]
    seconds = {
        s: run_stage(s, sets, copy, os.path.join(log_dir, s))["seconds"]
        for s in ("embed_offers", "build_index", "precompute_recs")
    }
    out = {"seconds": seconds, **compare_recs(root, copy)}
    shutil.rmtree(copy, ignore_errors=True)
    return out


# --- the ladder -------------------------------------------------------------------------------


def load_state(path: str) -> dict[str, Any]:
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
            return data
    return {"rungs": {}}


def save_state(path: str, state: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, path)


def run_rung(
    factor: float, base: str, state: dict[str, Any], state_path: str, stages: list[str], keep: bool
) -> None:
    name = f"{factor:g}x"
    root = os.path.join(base, name)
    rung = state["rungs"].setdefault(name, {"factor": factor, "cores": os.cpu_count(), "stages": {}})
    sets = rung_sets(factor, root)
    for stage in stages:
        if stage in rung["stages"]:
            continue
        print(f"[{name}] {stage} ...", flush=True)
        log_dir = os.path.join(base, "_eventlogs", name, stage)
        shutil.rmtree(log_dir, ignore_errors=True)
        if stage == "delta":
            t0 = time.perf_counter()
            result: dict[str, Any] = {
                **make_delta(root, 0.01, 7),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
        elif stage == "rebuild":
            result = rebuild(root, sets, log_dir)
        else:
            result = run_stage(stage, sets, root, log_dir)
        rung["stages"][stage] = result
        save_state(state_path, state)
        print(
            f"[{name}] {stage}: {json.dumps({k: v for k, v in result.items() if k != 'metrics'})[:400]}",
            flush=True,
        )
    if set(stages) >= set(LADDER) and not keep:
        for entry in os.listdir(root):
            if entry != "_metrics":
                shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def exponent(t1: float, t2: float, r1: float, r2: float) -> float | None:
    """b in t ~ r^b between two sizes (None where it is undefined)."""
    if min(t1, t2, r1, r2) <= 0 or r1 == r2:
        return None
    return round(math.log(t2 / t1) / math.log(r2 / r1), 3)


def fits(state: dict[str, Any]) -> dict[str, Any]:
    """Each stage's growth exponent between consecutive rungs, time against its rows (rows in where it
    reads a table, else rows out)."""
    rungs = sorted(state["rungs"].values(), key=lambda r: r["factor"])
    out: dict[str, Any] = {}
    # data stages only: training stages run on what their config bounds (their examples/s are kept)
    for stage in [s for s in LADDER if s in DATA_STAGES or s.startswith("incremental_")]:
        pts = [
            (r["factor"], r["stages"][stage])
            for r in rungs
            if isinstance(r["stages"].get(stage, {}).get("seconds"), (int, float))
        ]
        steps = []
        for (f1, a), (f2, b) in itertools.pairwise(pts):
            rows = "rows_in" if a.get("rows_in") else "rows_out"
            ra, rb = a.get(rows) or f1, b.get(rows) or f2
            steps.append(
                {
                    "from": f"{f1:g}x",
                    "to": f"{f2:g}x",
                    "rows": rows,
                    "b": exponent(a["seconds"], b["seconds"], ra, rb),
                }
            )
        if steps:
            out[stage] = steps
    return out


def report(base: str, out_path: str, command: str = "python -m benchmarks.scale") -> dict[str, Any]:
    from benchmarks.scale_cost import cost_model

    state = load_state(os.path.join(base, "ladder.json"))
    result = {
        "kind": "scale",
        "benchmark": "the pipeline's stages at s x the embedded default, one Spark application each",
        "command": command,  # the arguments it was run with (a stage measured before is not re-run)
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "base": BASE,
        "stages_order": LADDER,
        "rungs": state["rungs"],
        "fits": fits(state),
        "cost_model": cost_model(state),
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--factors", default="1,4,16")
    p.add_argument("--root", default=os.path.join(REPO, "work", "scale"))
    p.add_argument("--stages", default=",".join(LADDER), help="comma-separated, in ladder order")
    p.add_argument("--keep", action="store_true", help="keep each rung's tables")
    p.add_argument("--report", action="store_true", help="only write the results of what is measured")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "scale.json"))
    a = p.parse_args(argv)
    base = os.path.abspath(a.root)
    os.makedirs(base, exist_ok=True)
    state_path = os.path.join(base, "ladder.json")
    if not a.report:
        stages = [s for s in LADDER if s in a.stages.split(",")]
        for factor in (float(x) for x in a.factors.split(",")):
            state = load_state(state_path)
            run_rung(factor, base, state, state_path, stages, a.keep)
    args = sys.argv[1:] if argv is None else argv
    result = report(base, a.out, " ".join(["python -m benchmarks.scale", *args]))
    print(json.dumps(result["fits"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
