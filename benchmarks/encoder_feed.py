"""Benchmark: encoder training fed by Petastorm and by the pyarrow feed vs the same loop on in-memory data.

    .venv/bin/python -m benchmarks.encoder_feed [--examples work/local/encoder/train_examples] [--threads 2]

Same model, same examples, same batch size and torch threads, one process: examples/s of
  - in-memory: every example decoded into arrays up front, batches taken by index (the upper bound);
  - arrow: retrieval.training.feed.ArrowFeed (pyarrow reader + shuffle buffer);
  - petastorm: retrieval.training.feed.PetastormFeed (make_batch_reader, synchronous pool);
and the ratio of each feed to in-memory (goal >= 0.8). Uses the pipeline's training examples when they
exist (run ./submit.sh pipeline first), else writes 200k random examples of the same schema.
Results: benchmarks/results/encoder_feed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def random_examples(path: str, rows: int, files: int = 4) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrieval.encoder.features import Vocab

    v = Vocab()
    rng = np.random.default_rng(0)
    os.makedirs(path, exist_ok=True)
    per = rows // files
    for f in range(files):
        cols: dict[str, pa.Array] = {
            "query_offer_id": pa.array(rng.integers(0, 10**9, per)),
            "item_offer_id": pa.array(rng.integers(0, 10**9, per)),
            "log_q": pa.array(np.log(rng.uniform(1e-5, 1e-2, per))),
        }
        for side in ("q_", "c_"):
            for name, length, size in (
                ("word_ids", v.max_words, v.words),
                ("char_ids", v.max_chars, v.chars),
            ):
                flat = rng.integers(1, size, per * length).astype(np.int32)
                cols[side + name] = pa.ListArray.from_arrays(
                    pa.array(np.arange(0, per * length + 1, length, dtype=np.int32)), pa.array(flat)
                )
            for name, size in (
                ("category", v.categories),
                ("price_bucket", v.prices),
                ("seller", v.sellers),
                ("offer", v.ids),
            ):
                cols[side + name] = pa.array(rng.integers(1, size, per).astype(np.int32))
        pq.write_table(pa.table(cols), os.path.join(path, f"part-{f:05d}.parquet"), row_group_size=20000)


def timed_epoch(batches, steps: int, model, optimizers, temperature: float) -> float:  # type: ignore[no-untyped-def]
    from retrieval.encoder.train import train_step

    it = iter(batches)
    train_step(model, optimizers, next(it), temperature, "cpu")  # warm-up step, not timed
    start = time.perf_counter()
    n = 0
    for b in it:
        train_step(model, optimizers, b, temperature, "cpu")
        n += len(b.query_ids)
        if n >= steps * len(b.query_ids):
            break
    return n / (time.perf_counter() - start)


def main() -> None:
    import pyarrow.dataset as ds
    import torch

    from retrieval.encoder.features import take
    from retrieval.encoder.model import OfferTower, TowerConfig, make_optimizers
    from retrieval.encoder.train import PairBatch, pair_batch
    from retrieval.training.feed import ArrowFeed, PetastormFeed

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", default=os.path.join(REPO, "work", "local", "encoder", "train_examples"))
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=60, help="timed steps per method")
    p.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds; the best of each method is kept"
    )
    args = p.parse_args()
    path = args.examples
    source = "pipeline examples"
    if not os.path.isdir(path):
        path = os.path.join(REPO, "work", "bench", "encoder_feed", "examples")
        source = "random examples (run ./submit.sh pipeline for real ones)"
        if not os.path.isdir(path):
            random_examples(path, 200_000)
    torch.set_num_threads(args.threads)
    table = ds.dataset(path, format="parquet").to_table()
    steps = min(args.steps, table.num_rows // args.batch_size - 1)
    whole = pair_batch(table)
    rng = np.random.default_rng(0)

    def in_memory():  # type: ignore[no-untyped-def]
        order = rng.permutation(table.num_rows)
        for lo in range(0, len(order) - args.batch_size + 1, args.batch_size):
            i = order[lo : lo + args.batch_size]
            yield PairBatch(
                take(whole.query, i),
                take(whole.candidate, i),
                whole.query_ids[i],
                whole.candidate_ids[i],
                whole.log_q[i],
            )

    methods = {
        "in_memory": lambda: in_memory(),
        "arrow": lambda: ArrowFeed(path, args.batch_size, pair_batch, seed=1).epoch(0),
        "petastorm": lambda: PetastormFeed(path, args.batch_size, pair_batch, seed=1).epoch(0),
    }
    # Interleaved rounds, best of each: the first runs pay for page faults and caches.
    results: dict[str, float] = {}
    for round_ in range(args.rounds):
        for name, batches in methods.items():
            torch.manual_seed(0)
            model = OfferTower(TowerConfig())
            rate = timed_epoch(batches(), steps, model, make_optimizers(model, 0.01), 0.05)
            results[name] = round(max(results.get(name, 0.0), rate), 1)
            print(f"round {round_} {name:>10}: {rate:,.0f} examples/s", flush=True)
    ratios = {k: round(results[k] / results["in_memory"], 3) for k in ("arrow", "petastorm")}
    out = {
        "kind": "speed",
        "benchmark": "encoder training examples/s: feeds vs in-memory, same model, batch and threads",
        "command": "python -m benchmarks.encoder_feed",
        "examples": source,
        "rows": table.num_rows,
        "batch_size": args.batch_size,
        "timed_steps": steps,
        "rounds": args.rounds,
        "threads": args.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "examples_per_s": results,
        "ratio_to_in_memory": ratios,
        "goal": ">= 0.8",
    }
    target = os.path.join(REPO, "benchmarks", "results", "encoder_feed.json")
    with open(target, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print("ratio to in-memory: " + ", ".join(f"{k} {v}" for k, v in ratios.items()) + f"  -> {target}")


if __name__ == "__main__":
    main()
