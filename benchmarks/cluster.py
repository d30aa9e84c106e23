"""Benchmark: the whole pipeline through ./submit.sh on local[2] and on a 2-worker Spark standalone
cluster (1 core, 2 GB each, started here from the installed pyspark), the same config and data, one run.

    .venv/bin/python -m benchmarks.cluster [--config conf/test.yaml] [--work work/bench/cluster]

Both runs use 2 cores in all, on the same machine: the cluster's figures show what leaving local mode
costs (executor JVMs, task launch over RPC, barrier tasks for training instead of driver-side
processes, shuffle through the block manager), not a speed-up. Each stage's time is the one its
`_metrics/<stage>.json` records (the stage's work, without the application's start). Results go to
benchmarks/results/cluster.json and print as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def pipeline(root: str, config: str, *sets: str) -> dict[str, Any]:
    """Runs the pipeline into ``root``; {stage: seconds}, the wall time and the command."""
    from retrieval.stages import pipeline_stages

    shutil.rmtree(root, ignore_errors=True)
    cmd = ["./submit.sh", "pipeline", "--config", config, "--set", f"paths.root={root}"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}")
    stages = {}
    for stage in (s.name for s in pipeline_stages()):
        with open(os.path.join(root, "_metrics", f"{stage}.json"), encoding="utf-8") as f:
            stages[stage] = round(float(json.load(f)["seconds"]), 1)
    return {"command": " ".join(cmd), "stages": stages, "wall_s": round(wall, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="conf/test.yaml")
    p.add_argument("--work", default="work/bench/cluster")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "cluster.json"))
    a = p.parse_args(argv)

    from retrieval.standalone import StandaloneCluster

    work = os.path.abspath(a.work)
    local = pipeline(os.path.join(work, "local"), a.config, "spark.master=local[2]")
    with StandaloneCluster(os.path.join(work, "standalone"), workers=2, cores=1, memory="2g") as cluster:
        standalone = pipeline(
            os.path.join(work, "standalone-run"),
            a.config,
            f"spark.master={cluster.url}",
            "training.local_mode=false",
            "visual.training.local_mode=false",
        )
    result = {
        "kind": "speed",
        "config": a.config,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "local": local,
        "standalone": {**standalone, "cluster": "master + 2 workers, 1 core and 2g each, on 127.0.0.1"},
    }
    rows = ["| stage | local[2] (s) | standalone, 2 workers (s) | ratio |", "|---|---|---|---|"]
    for stage, t in local["stages"].items():
        c = standalone["stages"][stage]
        rows.append(f"| {stage} | {t:.1f} | {c:.1f} | {c / max(t, 0.1):.2f} |")
    lt, ct = sum(local["stages"].values()), sum(standalone["stages"].values())
    rows.append(f"| **all stages** | **{lt:.1f}** | **{ct:.1f}** | **{ct / lt:.2f}** |")
    rows.append(f"| wall time of ./submit.sh | {local['wall_s']:.1f} | {standalone['wall_s']:.1f} | |")
    print("\n".join(rows))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    return result


if __name__ == "__main__":
    main()
