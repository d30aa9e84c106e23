"""What check_cluster reports of a process and compares with the driver (no Spark): the environment a
process imported (host, directory, Python, library versions), a training process joining its process
group the way training does, and what differs from the driver."""

from __future__ import annotations

import os
import sys
from typing import Any

LIBRARIES = ("retrieval", "pyspark", "torch", "numpy", "pyarrow", "faiss", "xgboost", "petastorm")


def environment() -> dict[str, Any]:
    """This process: host, working directory, Python and library versions."""
    import importlib
    import socket
    import warnings

    versions = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in LIBRARIES:
            try:
                mod = importlib.import_module(name)
                versions[name] = str(getattr(mod, "__version__", "?"))
            except Exception as e:  # reported, not raised: the point is to see it
                versions[name] = f"missing ({type(e).__name__}: {e})"
    import retrieval

    return {
        "retrieval_from": os.path.dirname(os.path.dirname(retrieval.__file__)),  # a zip, or site-packages
        "host": socket.gethostname(),
        "cwd": os.getcwd(),  # standalone: <worker work dir>/<app>/<executor id>; YARN: the container
        "python": ".".join(map(str, sys.version_info[:3])),
        "executable": sys.executable,
        "libraries": versions,
    }


def probe_rank(args: dict[str, Any]) -> dict[str, Any]:
    """One training process (TorchDistributor): joins the process group as training does, checks an
    all-reduce across it, and gathers every rank's report (the same return value on every rank)."""
    import torch
    import torch.distributed as dist

    from retrieval.training.distributed import start_process

    rank, world, local_rank, device = start_process(bool(args["use_gpu"]), 1, 0)
    mine = {
        "rank": rank,
        "local_rank": local_rank,
        "device": device,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        **environment(),
    }
    reports = [mine]
    total = float(rank + 1)
    if dist.is_initialized():
        t = torch.tensor([total], dtype=torch.float64)
        dist.all_reduce(t)
        total = float(t[0])
        reports = [dict[str, Any]() for _ in range(world)]
        dist.all_gather_object(reports, mine)
        dist.barrier()
        dist.destroy_process_group()
    return {"world": world, "all_reduce": total, "ranks": sorted(reports, key=lambda r: r["rank"])}


def mismatches(driver: dict[str, Any], reports: list[dict[str, Any]]) -> list[str]:
    """What an executor (or training process) imported differently from the driver."""
    out = []
    py = driver["python"].rsplit(".", 1)[0]
    for r in reports:
        where = f"{r['host']}:{r['cwd']}"
        if r["python"].rsplit(".", 1)[0] != py:
            out.append(
                f"{where} runs Python {r['python']} ({r['executable']}), the driver {driver['python']}"
            )
        if os.path.basename(r["retrieval_from"]) != os.path.basename(driver["retrieval_from"]):
            out.append(
                f"{where} imports retrieval from {r['retrieval_from']}, the driver {driver['retrieval_from']}"
            )
        for name, version in driver["libraries"].items():
            if r["libraries"].get(name) != version:
                out.append(f"{where} has {name} {r['libraries'].get(name)}, the driver {version}")
    return sorted(set(out))
