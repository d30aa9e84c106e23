"""Benchmark: mine_pairs on Spark local[*] versus DuckDB running the same logic in SQL, same parquet, one run.

    .venv/bin/python -m benchmarks.mining [--events 1,10] [--root work/bench/mining] [--threads 2]

For each size (millions of events) it generates the synthetic marketplace (short listings: they do
not matter to pairs) and ingests it once (reused on later runs), then times, on the same `events`
table and the same number of threads:
  - Spark: retrieval.mining.spark_pairs.mine_pairs, written as parquet;
  - DuckDB: the SQL below, written as parquet;
checks that both give the same pairs (ids, split, weights), and prints the time ratio and how each
grows from the smallest to the largest size. Results go to benchmarks/results/mining.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from retrieval import config  # noqa: E402
from retrieval.config import PairsSection  # noqa: E402

EVENTS_PER_SESSION = 12.8  # measured on the generator's defaults (listing length does not change it)


def duckdb_pairs_sql(events: str, cfg: PairsSection, cutoff: str) -> str:
    """The semantics of retrieval.mining.pairs in DuckDB SQL, over an events relation or parquet glob."""
    weights = " ".join(f"WHEN '{k}' THEN {float(v)}" for k, v in sorted(cfg.event_weights.items()))
    names = ", ".join(f"'{k}'" for k in sorted(cfg.event_weights))
    return f"""
WITH ev AS (SELECT session_id, ts, event, offer_id FROM {events}),
splits AS (
  SELECT session_id, CASE WHEN CAST(min(ts) AS DATE) >= DATE '{cutoff}' THEN 'test' ELSE 'train' END AS split
  FROM ev GROUP BY session_id),
inter AS (
  SELECT session_id, offer_id, CASE event {weights} END AS w,
         row_number() OVER (PARTITION BY session_id ORDER BY ts, event, offer_id) AS idx
  FROM ev WHERE event IN ({names}) AND offer_id IS NOT NULL),
kept AS (SELECT * FROM inter WHERE idx <= {cfg.max_session_events}),
per_session AS (
  SELECT a.session_id, least(a.offer_id, b.offer_id) AS lo, greatest(a.offer_id, b.offer_id) AS hi,
         max((a.w + b.w) / 2.0) AS w
  FROM kept a JOIN kept b ON a.session_id = b.session_id AND b.idx > a.idx AND b.idx <= a.idx + {cfg.window}
  WHERE a.offer_id <> b.offer_id
  GROUP BY 1, 2, 3),
totals AS (
  SELECT split, lo, hi, sum(w) AS weight, count(*) AS support
  FROM per_session JOIN splits USING (session_id)
  GROUP BY 1, 2, 3
  HAVING count(*) >= CASE WHEN split = 'train' THEN {cfg.min_support} ELSE 1 END)
SELECT lo AS query_offer_id, hi AS item_offer_id, weight, split FROM totals
UNION ALL
SELECT hi AS query_offer_id, lo AS item_offer_id, weight, split FROM totals
"""


def prepare(root: str, millions: float, threads: int) -> str:
    """Generates and ingests a marketplace of about ``millions`` M events under ``root``; returns its root."""
    from jobs import generate, ingest
    from retrieval.cli import run_stage
    from retrieval.spark import get_spark

    data = os.path.join(root, f"events-{millions:g}M")
    if os.path.exists(os.path.join(data, "events", "_SUCCESS")):
        return data
    sessions = int(millions * 1e6 / EVENTS_PER_SESSION)
    cfg = config.load(
        None,
        [
            f"paths.root={data}",
            f"spark.master=local[{threads}]",
            "spark.driver_memory=8g",
            f"synth.sessions={sessions}",
            f"synth.products={max(20000, sessions // 2)}",
            "synth.listing_min=10",
            "synth.listing_max=20",
            "synth.bad_row_rate=0",
            "synth.sessions_per_task=10000",
            "synth.offers_per_task=20000",
        ],
    )
    spark = get_spark(cfg, "bench-prepare")
    t = time.time()
    run_stage(spark, cfg, "generate", generate.run)
    run_stage(spark, cfg, "ingest", ingest.run)
    print(f"prepared {data} in {time.time() - t:.0f} s", flush=True)
    return data


def run_spark(spark: Any, data: str, cfg: PairsSection, out: str) -> tuple[float, str]:
    from retrieval import tables
    from retrieval.mining.spark_pairs import mine_pairs, test_cutoff
    from retrieval.spark_tables import read_table

    t = time.perf_counter()
    events = read_table(spark, data, tables.EVENTS)
    cutoff = test_cutoff(events, config.SplitSection())
    mine_pairs(events, cfg, cutoff).write.mode("overwrite").parquet(out)
    return time.perf_counter() - t, cutoff


def run_duckdb(data: str, cfg: PairsSection, cutoff: str, out: str, threads: int) -> float:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET temp_directory = '{out}.tmp'")
    t = time.perf_counter()
    from retrieval import commit

    sql = duckdb_pairs_sql(f"read_parquet('{commit.resolve(data, 'events')}/*.parquet')", cfg, cutoff)
    con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet)")
    elapsed = time.perf_counter() - t
    con.close()
    return elapsed


def same_pairs(spark_out: str, duck_out: str) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    q = f"""
    SELECT count(*) AS n,
           sum(CASE WHEN d.query_offer_id IS NULL OR s.query_offer_id IS NULL THEN 1 ELSE 0 END) AS unmatched,
           max(abs(coalesce(s.weight, 0) - coalesce(d.weight, 0))) AS max_weight_diff
    FROM read_parquet('{spark_out}/*.parquet') s
    FULL OUTER JOIN read_parquet('{duck_out}') d
      ON s.query_offer_id = d.query_offer_id AND s.item_offer_id = d.item_offer_id AND s.split = d.split
    """
    n, unmatched, diff = con.execute(q).fetchone()  # type: ignore[misc]
    return {"pairs": int(n), "unmatched": int(unmatched), "max_weight_diff": float(diff or 0.0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", default="1,10", help="sizes in millions of events, comma-separated")
    p.add_argument("--root", default=os.path.join(REPO, "work", "bench", "mining"))
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--repeats", type=int, default=2, help="timed runs per engine (the best is kept)")
    args = p.parse_args()
    from retrieval import tables
    from retrieval.spark import get_spark
    from retrieval.spark_tables import read_table

    sizes = [float(x) for x in args.events.split(",")]
    datas = {m: prepare(args.root, m, args.threads) for m in sizes}
    pairs_cfg = PairsSection()
    cfg = config.load(
        None,
        [
            f"spark.master=local[{args.threads}]",
            "spark.driver_memory=8g",
            f"spark.shuffle_partitions={4 * args.threads}",
        ],
    )
    spark = get_spark(cfg, "bench-mining")
    rows = []
    for m in sizes:
        data = datas[m]
        n_events = read_table(spark, data, tables.EVENTS).count()
        spark_out, duck_out = (
            os.path.join(args.root, "out-spark"),
            os.path.join(args.root, "out-duck.parquet"),
        )
        spark_s, duck_s = [], []
        for _ in range(args.repeats):
            s, cutoff = run_spark(spark, data, pairs_cfg, spark_out)
            spark_s.append(s)
            shutil.rmtree(duck_out, ignore_errors=True)
            duck_s.append(run_duckdb(data, pairs_cfg, cutoff, duck_out, args.threads))
        check = same_pairs(spark_out, duck_out)
        row = {
            "events": n_events,
            "spark_s": round(min(spark_s), 2),
            "duckdb_s": round(min(duck_s), 2),
            "spark_over_duckdb": round(min(spark_s) / min(duck_s), 2),
            **check,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if len(rows) > 1:
        grow = rows[-1]["events"] / rows[0]["events"]
        growth = {
            "events_x": round(grow, 2),
            "spark_time_x": round(rows[-1]["spark_s"] / rows[0]["spark_s"], 2),
            "duckdb_time_x": round(rows[-1]["duckdb_s"] / rows[0]["duckdb_s"], 2),
        }
    else:
        growth = {}
    result = {
        "kind": "speed",
        "benchmark": "mine_pairs: Spark local[*] vs DuckDB SQL, same events parquet, same threads",
        "command": "python -m benchmarks.mining --events " + args.events,
        "threads": args.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "pairs_config": {
            "window": pairs_cfg.window,
            "max_session_events": pairs_cfg.max_session_events,
            "min_support": pairs_cfg.min_support,
        },
        "sizes": rows,
        "growth": growth,
        "goal": "Spark within 2x of DuckDB; linear growth",
    }
    out = os.path.join(REPO, "benchmarks", "results", "mining.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print("\n   events    spark s   duckdb s   spark/duckdb   same pairs")
    for r in rows:
        same = (
            "yes"
            if r["unmatched"] == 0 and r["max_weight_diff"] < 1e-9
            else f"NO ({r['unmatched']} unmatched)"
        )
        print(
            f"{r['events']:>9,}  {r['spark_s']:>8.1f}  {r['duckdb_s']:>9.1f}  {r['spark_over_duckdb']:>12.2f}   {same}"
        )
    if growth:
        print(
            f"growth {growth['events_x']}x events: Spark {growth['spark_time_x']}x time, DuckDB {growth['duckdb_time_x']}x time"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
