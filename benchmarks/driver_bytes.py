"""Bytes to the driver that do not grow with the data: the candidate path and mine_listings on a Spark
standalone cluster (driver and executors apart), at two or more sizes, with a small
``spark.driver.maxResultSize``, and what every stage's tasks returned to the driver.

    .venv/bin/python -m benchmarks.driver_bytes                   # conf/local.yaml at 1x and 4x (slow)
    .venv/bin/python -m benchmarks.driver_bytes --config conf/test.yaml --factors 0.5,1   # what CI runs

Each size runs as one application (``./submit.sh pipeline --only ...``) with Spark's event log on; a
stage's bytes are the ``Result Size`` of the tasks of its jobs (``cli.run_stage`` names each stage's
jobs after it). What a stage collects must be bounded by a config key (a sample, a cap), and the
config checks each bound against ``spark.driver.maxResultSize`` (``config.sections.driver_bytes``):
with the data growing, the bytes stay (a few per task aside, and tasks follow partitions).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "lib"))

from benchmarks.scale import CANDIDATE_PATH, event_totals  # noqa: E402

STAGES = CANDIDATE_PATH
# the bounds of what these stages collect: small enough for a 4 MB maxResultSize, and reached already
# at the smallest size CI runs (conf/test.yaml at 0.5x: ~2k offers, ~30k EM cells), so that what is
# compared between sizes is everything else a stage brings back
BOUNDS = [
    "spark.conf.spark.driver.maxResultSize=4m",
    "spark.conf.spark.sql.autoBroadcastJoinThreshold=2m",
    "listings.propensity_max_rows=20000",
    "encoder.eval_queries=200",
    "encoder.eval_k=50",
    "index.train_size=1000",
    "index.eval_queries=100",
    "recs.eval_queries=200",
]


def measure(
    master: str, config: str, factors: list[float], work: str, extra: list[str] = ()
) -> dict[str, Any]:  # type: ignore[assignment]
    """{factor: {stage: result bytes (and tasks)}} of the candidate path at each size."""
    from retrieval import config as config_mod

    base = config_mod.load(os.path.join(REPO, config))
    out: dict[str, Any] = {}
    for factor in factors:
        root = os.path.join(work, f"{factor:g}x")
        logs = os.path.join(work, f"events-{factor:g}x")
        shutil.rmtree(logs, ignore_errors=True)  # a rerun's logs would add up with the last one's
        os.makedirs(logs)
        sets = [
            f"paths.root={root}",
            f"spark.master={master}",
            "training.local_mode=false",
            "tracking.enabled=false",
            "spark.conf.spark.scheduler.minRegisteredResourcesRatio=1.0",
            f"synth.products={max(base.synth.products_per_cluster, int(base.synth.products * factor))}",
            f"synth.sessions={int(base.synth.sessions * factor)}",
            "spark.conf.spark.eventLog.enabled=true",
            f"spark.conf.spark.eventLog.dir=file://{logs}",
            "spark.conf.spark.eventLog.compress=false",
            *BOUNDS,
            *extra,
        ]
        cmd = [os.path.join(REPO, "submit.sh"), "pipeline", "--config", config, "--only", ",".join(STAGES)]
        for s in sets:
            cmd += ["--set", s]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-5000:]}\n{done.stderr[-2000:]}")
        totals = event_totals(logs, by_group=True)
        out[f"{factor:g}x"] = {
            s: {k: totals.get(s, {}).get(k, 0) for k in ("result_bytes", "broadcast_max_bytes", "tasks")}
            for s in STAGES
        }
    return out


def main(argv: list[str] | None = None) -> int:
    from retrieval.standalone import StandaloneCluster

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="conf/local.yaml")
    p.add_argument("--factors", default="1,4")
    p.add_argument("--work", default=os.path.join(REPO, "work", "driver-bytes"))
    a = p.parse_args(argv)
    cluster = StandaloneCluster(os.path.join(a.work, "cluster"), workers=2, cores=1, memory="6g")
    cluster.start()
    try:
        got = measure(cluster.url, a.config, [float(x) for x in a.factors.split(",")], a.work)
    finally:
        cluster.stop()
    print(json.dumps(got, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
