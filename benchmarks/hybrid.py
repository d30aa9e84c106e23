"""Benchmark: choosing the hybrid encoder on validation pairs carved from training, never on the test split.

    .venv/bin/python -m benchmarks.hybrid [--config conf/local.yaml] [--set k=v ...] [--epochs 4]
        [--grid "combine=sum,gate,concat id_dropout=0.1,0.3"] [--out benchmarks/results/hybrid.json]

The embedded marketplace is generated in-process (``retrieval.synth.local``); its test sessions are
dropped, and the last ``--validation-days`` days of the training period become the validation split
(pairs mined with the pipeline's rules, ``mining.pairs``: training pairs need ``pairs.min_support``
sessions, validation pairs one). Every setting of the grid trains the encoder (and its
``content_trained`` baseline, on the same batches) on the remaining days, in this process, and is
scored by Recall@50 on validation query offers, warm (with training pairs), cold and all, beside
item co-occurrence and the generator's oracle on the same queries, and the *co-click headroom*: what
knowing every training co-click adds to the configured ``content_trained`` model, by moving to the front
of its ranking the query's training partners (``offer``), and also the offers of the products co-clicked
with the query's product (``product``; an offer without a product_id is a product of its own). A hybrid
that learned everything the training pairs say beyond content would gain about that much. Settings
are tried one axis at a time from the configured defaults (each axis keeps the best value of the ones before it), so the cost is
the sum of the axes' sizes, not their product. The choice is the encoder's best Recall@50 over all
validation queries (which offers are warm depends on pairs.min_support, so warm subsets of two
settings are not the same queries);
results go to ``--out`` with every setting's figures. The test split is never read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import typing
from datetime import date, timedelta
from typing import Any

import numpy as np
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lib"))

from retrieval import config  # noqa: E402
from retrieval.config.loader import check_value  # noqa: E402
from retrieval.encoder.local import recall_by_warmth, train_and_score  # noqa: E402
from retrieval.evaluation import exact_search  # noqa: E402
from retrieval.mining.pairs import Pair, mine_pairs  # noqa: E402
from retrieval.synth.catalog import Catalog  # noqa: E402
from retrieval.synth.local import Marketplace, co_click_targets, generate, sample_queries  # noqa: E402
from retrieval.synth.oracle import Oracle  # noqa: E402

K = 50


@dataclasses.dataclass
class Split:
    """Training and validation pairs carved from the training period, and what training needs."""

    train: list[Pair]
    targets: dict[int, set[int]]  # validation query offer -> its validation partners
    warm: set[int]  # offers with training pairs


def validation_split(market: Marketplace, days: int) -> Split:
    """Drops the test sessions; the last ``days`` days before the test cutoff become validation."""
    cutoff = date.fromisoformat(market.cutoff)
    start = (cutoff - timedelta(days=days)).isoformat()
    events = market.events.select(["session_id", "ts", "event", "offer_id"]).to_pylist()
    first: dict[str, str] = {}
    for e in events:
        if e["session_id"] not in first or e["ts"] < first[e["session_id"]]:
            first[e["session_id"]] = e["ts"]
    kept = [e for e in events if first[e["session_id"]][:10] < market.cutoff]
    pairs = mine_pairs(kept, market.cfg.pairs, start)
    train = [p for p in pairs if p.split == "train"]
    targets = co_click_targets([dataclasses.replace(p, split="test") for p in pairs if p.split == "test"])
    warm = {p.query_offer_id for p in train}
    return Split(train, targets, warm)


def score(
    market: Marketplace,
    split: Split,
    encoder: Any,
    queries: np.ndarray,
    seed: int,
    epochs: int,
    vectors: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Trains with ``encoder``'s settings on the split's training pairs; Recall@50 on ``queries``
    (``vectors``, if given, is filled with every offer's vectors by mode, rows as ``market.offers``)."""
    offers = market.offers.select(["offer_id", "title", "category_id", "price", "seller_id"]).to_pylist()
    pairs = np.array([(p.query_offer_id, p.item_offer_id) for p in split.train], dtype=np.int64)
    return train_and_score(offers, pairs, split.targets, queries, encoder, seed, epochs, K, vectors)


def training_partners(split: Split) -> dict[int, list[int]]:
    """Each query offer's training partners, by pair weight (ties by id): item co-occurrence's ranking."""
    weights: dict[int, dict[int, float]] = {}
    for p in split.train:
        weights.setdefault(p.query_offer_id, {})[p.item_offer_id] = p.weight
    return {q: [b for b, _ in sorted(w.items(), key=lambda t: (-t[1], t[0]))] for q, w in weights.items()}


def co_click_headroom(
    market: Marketplace, split: Split, queries: np.ndarray, content: np.ndarray, depth: int = 500
) -> dict[str, Any]:
    """Recall@50 of the content model's ranking (``content``: every offer's vectors, rows as
    ``market.offers``) with what the training co-clicks say moved to its front: the query's training
    partners by weight (``offer``); those, then the offers of its top ``depth`` whose product was
    co-clicked with the query's product (``product``); and how many training partners a warm query has."""
    ids = np.asarray(market.offers.column("offer_id").to_pylist(), dtype=np.int64)
    products = market.offers.column("product_id").to_pylist()
    product_of = {
        int(o): (("p", p) if p is not None else ("o", int(o))) for o, p in zip(ids, products, strict=True)
    }
    row = {int(o): r for r, o in enumerate(ids)}
    ranked = exact_search(content[[row[int(q)] for q in queries]], content, ids, depth, exclude=queries)[1]
    partners = training_partners(split)
    co_products: dict[Any, set[Any]] = {}
    for p in split.train:
        co_products.setdefault(product_of[p.query_offer_id], set()).add(product_of[p.item_offer_id])

    def front(q: int, rank: np.ndarray, moved: str) -> list[int]:
        """The query's top ``K``: what ``moved`` names first, then the content model's order."""
        first: list[int] = []
        if moved in ("offer", "product"):
            first = list(partners.get(q, []))
        if moved == "product":
            near = co_products.get(product_of[q], set())
            first += [int(o) for o in rank if o >= 0 and product_of[int(o)] in near]
        out: list[int] = []
        for o in first + [int(o) for o in rank]:
            if o != q and o not in out:
                out.append(o)
            if len(out) == K:
                break
        return out + [-1] * (K - len(out))

    targets = [split.targets[int(q)] for q in queries]
    is_warm = np.array([int(q) in split.warm for q in queries])
    out: dict[str, Any] = {
        name: recall_by_warmth(
            np.array([front(int(q), r, moved) for q, r in zip(queries, ranked, strict=True)]),
            targets,
            is_warm,
            K,
        )
        for name, moved in (("content_trained", ""), ("offer", "offer"), ("product", "product"))
    }
    warm_partners = [len(partners[int(q)]) for q in queries if int(q) in partners]
    out["training_partners_per_warm_query"] = (
        round(float(np.mean(warm_partners)), 2) if warm_partners else 0.0
    )
    return out


def baselines(market: Marketplace, split: Split, queries: np.ndarray) -> dict[str, Any]:
    """Co-occurrence (training pairs) and the generator's oracle on the validation queries."""
    partners = training_partners(split)
    cooc = np.array([np.pad(partners.get(int(q), [])[:K], (0, K))[:K] for q in queries])
    cat = Catalog(market.cfg.synth, market.cfg.seed)
    targets = [split.targets[int(q)] for q in queries]
    is_warm = np.array([int(q) in split.warm for q in queries])
    out = {"cooccurrence": recall_by_warmth(cooc, targets, is_warm, K)}
    for name, hidden in (("ceiling", True), ("ceiling_content", False)):
        oracle = Oracle(cat, hidden=hidden)
        ranked = np.array([np.pad(oracle.next_offers(int(q), K)[0], (0, K))[:K] for q in queries])
        out[name] = recall_by_warmth(ranked, targets, is_warm, K)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=os.path.join(REPO, "conf", "local.yaml"))
    ap.add_argument("--set", action="append", default=[], help="config overrides, as --set in submit.sh")
    ap.add_argument(
        "--grid",
        default="",
        help='"encoder.key=v1,v2 pairs.min_support=1,2 ..." one axis at a time (pairs.* re-mines the pairs)',
    )
    ap.add_argument("--epochs", type=int, default=0, help="epochs per setting (0 = encoder.epochs)")
    ap.add_argument("--validation-days", type=int, default=3)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "hybrid.json"))
    args = ap.parse_args(argv)
    cfg = config.load(args.config, args.set)
    epochs = args.epochs or cfg.encoder.epochs
    t0 = time.time()
    market = generate(cfg, workers=2)
    split = validation_split(market, args.validation_days)
    # the validation queries are those of the configured pairs (test pairs keep support 1 either way)
    queries = sample_queries(split.targets, args.queries, cfg.seed)
    print(
        f"marketplace: {market.offers.num_rows:,} offers, {market.events.num_rows:,} events; "
        f"{len(split.train):,} training pairs, {len(queries):,} validation queries "
        f"({sum(int(q) in split.warm for q in queries):,} warm) in {time.time() - t0:.0f} s",
        flush=True,
    )
    reference = baselines(market, split, queries)
    print("baselines:", json.dumps(reference), flush=True)
    best, best_pairs = cfg.encoder, cfg.pairs
    runs: list[dict[str, Any]] = []
    splits = {repr(best_pairs): split}

    kept: dict[str, Any] = {}  # the best setting's split and content_trained vectors

    def trial(enc: Any, pairs: Any, note: dict[str, Any]) -> float:
        key = repr(pairs)
        if key not in splits:
            splits[key] = validation_split(
                dataclasses.replace(market, cfg=dataclasses.replace(cfg, pairs=pairs)), args.validation_days
            )
        vectors: dict[str, np.ndarray] = {}
        figures = score(market, splits[key], enc, queries, cfg.seed, epochs, vectors)
        runs.append({**note, "training_pairs": len(splits[key].train), **figures})
        print(json.dumps(runs[-1]), flush=True)
        got = float(figures["encoder"]["all"])
        if "content_trained" in vectors and got > kept.get("score", -1.0):
            kept.update(score=got, split=splits[key], content=vectors["content_trained"])
        return got

    best_score = trial(best, best_pairs, {"setting": "configured"})
    for axis in args.grid.split():
        name, values = axis.split("=")
        section, key = name.split(".")
        current = {"encoder": best, "pairs": best_pairs}.get(section)
        if current is None or key not in typing.get_type_hints(type(current)):
            raise SystemExit(f"the grid takes encoder.<key> and pairs.<key>; got {name!r}")
        for raw in values.split(","):
            value = check_value(name, yaml.safe_load(raw), typing.get_type_hints(type(current))[key])
            if value == getattr(current, key):
                continue
            changed = dataclasses.replace(current, **{key: value})
            enc, pairs = (changed, best_pairs) if section == "encoder" else (best, changed)
            got = trial(enc, pairs, {"setting": {name: value}})
            if got > best_score:
                best, best_pairs, best_score = enc, pairs, got
    axes = [a.split("=")[0] for a in args.grid.split()]
    chosen = {n: getattr(best if n.startswith("encoder.") else best_pairs, n.split(".")[1]) for n in axes}
    print(f"chosen on validation: {chosen} (Recall@50 {best_score})")
    headroom = co_click_headroom(market, kept["split"], queries, kept["content"]) if kept else {}
    print("co-click headroom of the chosen setting:", json.dumps(headroom), flush=True)
    payload = {
        "kind": "benchmark",
        "what": "encoder settings chosen on validation pairs carved from the training period",
        "config": os.path.relpath(args.config, REPO),
        "overrides": args.set,
        "epochs": epochs,
        "validation_days": args.validation_days,
        "training_pairs": len(split.train),
        "validation_queries": len(queries),
        "baselines": reference,
        "co_click_headroom": headroom,
        "runs": runs,
        "chosen": chosen,
        "chosen_recall_at_50": best_score,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "seconds": round(time.time() - t0, 1),
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, default=str)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
