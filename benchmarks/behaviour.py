"""Benchmark: how much of the marketplace's co-clicks content alone can explain, by the generator's oracle.

    .venv/bin/python -m benchmarks.behaviour [--config conf/local.yaml] [--queries 2000]
        [--grid "latent_strength=0,1,2 link_share=0,0.5"]

For each setting of the behaviour that no feature shows (``synth.latent_strength``, ``link_share``,
``seller_quality``; the grid's product), generates the clean marketplace in-process
(``retrieval.synth.local``), mines its pairs, and ranks a sample of test query offers by the
generator's full oracle and by the oracle that knows only what content shows
(``retrieval.synth.oracle``, ``hidden=False``). Their Recall@50 ratio is the share of the test
co-clicks that content alone can explain, the figure the defaults were fixed from before any model
was trained on them (README, "The embedded synthetic marketplace"). No model is trained here.
Results go to benchmarks/results/behaviour.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lib"))

from retrieval import config  # noqa: E402
from retrieval.evaluation import recall_at_k  # noqa: E402
from retrieval.mining.pairs import mine_pairs  # noqa: E402
from retrieval.synth.catalog import Catalog  # noqa: E402
from retrieval.synth.local import co_click_targets, fresh_sessions, generate, sample_queries  # noqa: E402
from retrieval.synth.oracle import Oracle, search_click_rates  # noqa: E402

K = 50


def oracle_recall(cfg: config.Config, queries: int, seed: int, fresh: float = 0.0) -> dict[str, Any]:
    """Recall@10/50 of the full and the content oracles on sampled test query offers, warm and all;
    with ``fresh`` > 0, also of item co-occurrence counted on ``fresh`` x the log's sessions simulated
    afresh (an independent estimate of the true ranking, which the oracle should not lose to)."""
    market = generate(cfg, workers=2)
    targets = co_click_targets(market.pairs)
    warm = {p.query_offer_id for p in market.pairs if p.split == "train"}
    q = sample_queries(targets, queries, seed)
    cat = Catalog(market.cfg.synth, market.cfg.seed)
    rates = search_click_rates(cat)
    out: dict[str, Any] = {"pairs_train": sum(p.split == "train" for p in market.pairs), "queries": len(q)}
    is_warm = np.array([int(x) in warm for x in q])
    out["warm_queries"] = int(is_warm.sum())
    for name, hidden in (("full", True), ("content", False)):
        oracle = Oracle(cat, hidden=hidden, rates=rates)
        ranked = np.array([np.pad(oracle.next_offers(int(x), K)[0], (0, K))[:K] for x in q])
        tg = [targets[int(x)] for x in q]
        for subset, mask in (("all", np.ones(len(q), bool)), ("warm", is_warm)):
            sub = [tg[i] for i in np.flatnonzero(mask)]
            for k in (10, K):
                out[f"{name}_{subset}_recall_at_{k}"] = round(recall_at_k(ranked[mask], sub, k), 4)
    if fresh:
        rows = fresh_sessions(market.cfg, int(fresh * cfg.synth.sessions), workers=2)
        rows = rows.select(["session_id", "ts", "event", "offer_id"]).to_pylist()
        counts: dict[int, dict[int, float]] = {}
        for p in mine_pairs(rows, dataclasses.replace(cfg.pairs, min_support=1), "9999-12-31"):
            counts.setdefault(p.query_offer_id, {})[p.item_offer_id] = p.weight
        ranked = np.array(
            [
                np.pad(
                    [b for b, _ in sorted(counts.get(int(x), {}).items(), key=lambda t: (-t[1], t[0]))][:K],
                    (0, K),
                )[:K]
                for x in q
            ]
        )
        tg = [targets[int(x)] for x in q]
        for subset, mask in (("all", np.ones(len(q), bool)), ("warm", is_warm)):
            sub = [tg[i] for i in np.flatnonzero(mask)]
            for k in (10, K):
                out[f"fresh_cooccurrence_{subset}_recall_at_{k}"] = round(
                    recall_at_k(ranked[mask], sub, k), 4
                )
        out["fresh_sessions"] = len({r["session_id"] for r in rows})
    for subset in ("all", "warm"):
        out[f"content_share_{subset}"] = round(
            out[f"content_{subset}_recall_at_{K}"] / out[f"full_{subset}_recall_at_{K}"], 4
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=os.path.join(REPO, "conf", "local.yaml"))
    ap.add_argument("--set", action="append", default=[], help="config overrides, as --set in submit.sh")
    ap.add_argument(
        "--grid", default="", help='"key=v1,v2 key=v1,v2" over synth.<key> (default: as configured)'
    )
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument(
        "--fresh", type=float, default=0.0, help="also co-occurrence on this many x fresh sessions"
    )
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "behaviour.json"))
    args = ap.parse_args(argv)
    base = config.load(args.config, args.set)
    axes = [(k, [float(v) for v in vs.split(",")]) for k, vs in (a.split("=") for a in args.grid.split())]
    runs = []
    for values in itertools.product(*[vs for _, vs in axes]) if axes else [()]:
        setting = dict(zip([k for k, _ in axes], values, strict=True))
        cfg = dataclasses.replace(base, synth=dataclasses.replace(base.synth, **setting))
        t = time.time()
        figures = oracle_recall(cfg, args.queries, base.seed, args.fresh)
        shown = {k: getattr(cfg.synth, k) for k in ("latent_strength", "link_share", "seller_quality")}
        runs.append({"synth": shown, **figures, "seconds": round(time.time() - t, 1)})
        print(json.dumps(runs[-1]), flush=True)
    payload = {
        "kind": "benchmark",
        "what": "share of test co-clicks that content alone can explain (content oracle / full oracle, Recall@50)",
        "config": os.path.relpath(args.config, REPO),
        "overrides": args.set,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "runs": runs,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
