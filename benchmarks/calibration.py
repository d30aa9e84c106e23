"""Benchmark: the synthetic marketplace's click log beside a real one (Diginetica), in the figures of
retrieval.sessions.calibration: click concentration, session lengths, repeats within a session and
consecutive clicks within one category.

    .venv/bin/python -m benchmarks.calibration [--root work/local] [--real ../shared/data/diginetica]

Needs an ingested run under --root (its events and offers tables; `./submit.sh pipeline --only
generate,ingest` makes one). The synthetic log's items are offers, its clicks the view and click
events of each session in time order; both logs go through SR-GNN's preprocessing (items seen fewer
than 5 times dropped, then sessions shorter than 2), which the real split already had. Diginetica's
split carries no categories. Prints the table; results go to benchmarks/results/calibration.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
from typing import Any

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lib"))

from retrieval.sessions.calibration import log_stats, sr_gnn_filter, table  # noqa: E402


def synthetic_log(root: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(sessions of offer ids, their categories): view and click events in time order."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from retrieval import tables
    from retrieval.storage import local_path

    try:
        where = {name: local_path(tables.path(root, name)) for name in ("events", "offers")}
    except FileNotFoundError as e:
        raise SystemExit(f"{e}: run ./submit.sh pipeline --only generate,ingest first") from None
    ev = ds.dataset(where["events"], format="parquet").to_table(
        columns=["session_id", "ts", "event", "offer_id"],
        filter=pc.field("event").isin(["view", "click"]) & pc.field("offer_id").is_valid(),
    )
    offers = ds.dataset(where["offers"], format="parquet").to_table(columns=["offer_id", "category_id"])
    df = ev.to_pandas().merge(offers.to_pandas(), on="offer_id", how="left")
    df = df.sort_values(["session_id", "ts"], kind="stable")
    cats = df["category_id"].fillna(-1).astype(np.int64).to_numpy()
    items = df["offer_id"].to_numpy(np.int64)
    _, starts = np.unique(df["session_id"].to_numpy(), return_index=True)
    bounds = [*np.sort(starts), len(df)]
    return (
        [items[a:b] for a, b in itertools.pairwise(bounds)],
        [cats[a:b] for a, b in itertools.pairwise(bounds)],
    )


def real_log(folder: str) -> list[np.ndarray]:
    from retrieval.sessions.benchmark import load

    return [np.asarray(s, dtype=np.int64) for s in load(folder).train]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=os.path.join(REPO, "work", "local"))
    p.add_argument("--real", default=os.path.join(REPO, "..", "shared", "data", "diginetica"))
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "calibration.json"))
    a = p.parse_args(argv)
    sessions, cats = synthetic_log(a.root)
    raw = log_stats(sessions, cats)
    filtered_s, filtered_c = sr_gnn_filter(sessions, cats)
    logs = {
        "synthetic (raw)": raw,
        "synthetic (SR-GNN filtered)": log_stats(filtered_s, filtered_c),
        "diginetica (SR-GNN split, train)": log_stats(real_log(a.real)),
    }
    header, rows = table(logs)
    for line in [header, ["---"] * len(header), *rows]:
        print("| " + " | ".join(line) + " |")
    result = {
        "kind": "calibration",
        "benchmark": "calibration",
        "command": "python -m benchmarks.calibration " + " ".join(argv or sys.argv[1:]),
        "machine": platform.platform(),
        "root": os.path.relpath(os.path.abspath(a.root), REPO),
        "logs": logs,
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
