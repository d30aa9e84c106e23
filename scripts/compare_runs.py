"""Compares two runs' outputs (two ``paths.root`` directories): every table row by row, every stage's
metrics key by key, with what differs between runs by design left out.

    .venv/bin/python scripts/compare_runs.py ROOT_A ROOT_B [--tables-only | --metrics-only] [--json OUT]

Tables: every parquet table directory found under both roots (a ``_SUCCESS`` marker), read with
pyarrow, its rows sorted, compared whole, with version ids (``model_version``, committed versions' names) masked;
a quarantine table without its when-quarantined ``ts``.
Metrics: ``_metrics/<stage>.json`` flattened to dotted keys, without timings (``seconds``, ``*_s``,
``*_per_s``), file locations and tracking ids, with the roots' paths and version ids
masked; numbers compared exactly. It prints a line per table and per stage, and every differing
metric with both values, so a person can tell a real change from training noise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from typing import Any

from retrieval import commit
from retrieval.storage import local_path
from retrieval.tables import path as tables_path

# a config hash or weights version (12 hex digits, ``w``-prefixed) or a committed version's name
VERSION = re.compile(r"\bw?[0-9a-f]{12}\b|\bv[0-9]{8}T[0-9]{6}(\.[0-9]{3})?-[0-9a-f]{8}\b")
RATE = re.compile(r"[0-9][0-9,.]* ([a-z ]+)/s")  # a throughput in a summary line
TIMING = re.compile(r"(^|\.)(seconds|[a-z_]*_s|[a-z_]*_per_s|seconds_per_method|xgb_seconds|wall_s)(\.|$)")
WHERE = {
    "config",
    "config_source",
    "metrics_path",
    "tracking_run",
    "outputs",
    "report",
    "examples",
    "artifacts",
}


def tables(root: str) -> list[str]:
    """Table names under ``root`` (directories of parquet files with a ``_SUCCESS`` marker), relative,
    sorted; models (XGBoost's are Spark directories too) are left out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        skip = {"mlartifacts", "models", "index", "visual_index"}
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")) and d not in skip)
        if "_SUCCESS" in filenames and any(f.endswith(".parquet") for f in filenames):
            parent, version = os.path.split(dirpath)
            ptr = commit.read_pointer(parent)
            if ptr is None:
                out.append(os.path.relpath(dirpath, root))  # the layout before versions
            elif ptr.version == version:
                out.append(os.path.relpath(parent, root))  # the committed version (not the one before)
    return sorted(out)


def rows(root: str, name: str) -> list[tuple[Any, ...]]:
    import pyarrow.dataset as ds

    table = ds.dataset(local_path(tables_path(root, name)), format="parquet").to_table()
    if name.startswith(("quarantine/", "visual/quarantine")) and "ts" in table.column_names:
        table = table.drop(["ts"])
    cols = sorted(table.column_names)
    return sorted(
        (
            tuple(VERSION.sub("<version>", json.dumps(r[c], sort_keys=True, default=repr)) for c in cols)
            for r in table.to_pylist()
        ),
    )


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flat(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): value}


def masked(text: str, root: str) -> str:
    return RATE.sub(r"<rate> \1/s", VERSION.sub("<version>", text.replace(root, "<root>")))


def comparable(stage_metrics: dict[str, Any], root: str) -> dict[str, Any]:
    out = {}
    for key, value in flat({k: v for k, v in stage_metrics.items() if k not in WHERE}).items():
        if TIMING.search(key):
            continue
        if isinstance(value, str):
            value = masked(value, root)
        elif isinstance(value, list):
            value = [masked(v, root) if isinstance(v, str) else v for v in value]
        out[VERSION.sub("<version>", key)] = value
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--tables-only", action="store_true")
    p.add_argument("--metrics-only", action="store_true")
    p.add_argument("--json", help="also write the comparison here")
    args = p.parse_args(argv)
    a, b = os.path.abspath(args.a), os.path.abspath(args.b)
    report: dict[str, Any] = {"tables": {}, "metrics": {}}
    if not args.metrics_only:
        names_a, names_b = tables(a), tables(b)
        for name in sorted(set(names_a) | set(names_b)):
            if name not in names_a or name not in names_b:
                report["tables"][name] = f"only under {'A' if name in names_a else 'B'}"
            else:
                ra, rb = rows(a, name), rows(b, name)
                report["tables"][name] = (
                    "equal"
                    if ra == rb
                    else f"differ ({len(ra)} vs {len(rb)} rows, {len(set(ra) ^ set(rb))} rows in one only)"
                )
            print(f"table   {name:<28} {report['tables'][name]}")
    if not args.tables_only:
        stages = sorted(f[:-5] for f in os.listdir(os.path.join(a, "_metrics")) if f.endswith(".json"))
        for stage in stages:
            path_b = os.path.join(b, "_metrics", f"{stage}.json")
            if not os.path.exists(path_b):
                report["metrics"][stage] = "only under A"
                print(f"metrics {stage:<28} only under A")
                continue
            with open(os.path.join(a, "_metrics", f"{stage}.json"), encoding="utf-8") as f:
                ma = comparable(json.load(f), a)
            with open(path_b, encoding="utf-8") as f:
                mb = comparable(json.load(f), b)
            diff = {
                k: [ma.get(k), mb.get(k)] for k in sorted(set(ma) | set(mb)) if not same(ma.get(k), mb.get(k))
            }
            report["metrics"][stage] = diff or "equal"
            print(f"metrics {stage:<28} {'equal' if not diff else f'{len(diff)} keys differ'}")
            for k, (va, vb) in diff.items():
                print(f"          {k}: {va!r} | {vb!r}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
