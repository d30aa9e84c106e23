"""The synthetic marketplace in one process, without Spark: the same blocks ``generate`` writes, clean.

For what needs a marketplace but not a cluster: fixing the generator's strengths against the oracle
(``benchmarks/behaviour.py``), choosing the encoder on validation pairs (``benchmarks/hybrid.py``) and
tests that train on a small log. Blocks are the pure functions the Spark job runs, so the offers
and events are those ``generate`` writes for the same config (less the injected bad rows), and the
pairs those of ``mining.pairs`` (``spark_pairs``' reference).
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrieval.config import Config
from retrieval.mining.pairs import Pair, cutoff_day, mine_pairs
from retrieval.synth.catalog import Catalog
from retrieval.synth.offers import generate_offers
from retrieval.synth.sessions import SessionSimulator


@dataclass
class Marketplace:
    """A clean synthetic marketplace: offers (the raw columns plus ``true_*``), events, and their pairs."""

    cfg: Config
    offers: pa.Table
    events: pa.Table  # session_id, ts (string), event, offer_id, query_id, query_text, listing, position
    pairs: list[Pair]
    cutoff: str  # first day of the test split


def _pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started afresh (spawn): forking a process whose BLAS threads are running can
    deadlock the child."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _session_block(args: tuple[Config, int, int, int]) -> pa.Table:
    cfg, block, lo, hi = args
    events = SessionSimulator(Catalog(cfg.synth, cfg.seed)).simulate(block, lo, hi).events
    return events.filter(pc.is_null(events["_injected"])).drop(["_injected"])


def _offer_block(args: tuple[Config, int]) -> pa.Table:
    cfg, block = args
    step = cfg.synth.offers_per_task
    lo, hi = block * step, min((block + 1) * step, cfg.synth.products)
    offers = generate_offers(Catalog(cfg.synth, cfg.seed), lo, hi, block)
    return offers.filter(pc.is_null(offers["_injected"])).drop(["_injected"])


def generate(cfg: Config, workers: int = 1) -> Marketplace:
    """The marketplace of ``cfg`` (bad rows off), generated in this process or ``workers`` processes."""
    cfg = replace(cfg, synth=replace(cfg.synth, bad_row_rate=0.0))
    s = cfg.synth
    offer_jobs = [(cfg, b) for b in range(math.ceil(s.products / s.offers_per_task))]
    step = s.sessions_per_task
    session_jobs = [
        (cfg, b, b * step, min((b + 1) * step, s.sessions)) for b in range(math.ceil(s.sessions / step))
    ]
    if workers > 1:
        with _pool(workers) as pool:
            offers = list(pool.map(_offer_block, offer_jobs))
            events = list(pool.map(_session_block, session_jobs))
    else:
        offers, events = [_offer_block(j) for j in offer_jobs], [_session_block(j) for j in session_jobs]
    log = pa.concat_tables(events)
    cutoff = cutoff_day(str(pc.max(log["ts"]).as_py())[:10], cfg.split)
    rows: list[dict[str, Any]] = log.select(["session_id", "ts", "event", "offer_id"]).to_pylist()
    return Marketplace(cfg, pa.concat_tables(offers), log, mine_pairs(rows, cfg.pairs, cutoff), cutoff)


def fresh_sessions(cfg: Config, sessions: int, workers: int = 1) -> pa.Table:
    """``sessions`` more clean sessions on the same catalogue, none of which ``generate`` makes (their
    blocks are numbered from 10^6 on): an independent simulation, e.g. to check the oracle against."""
    cfg = replace(cfg, synth=replace(cfg.synth, bad_row_rate=0.0))
    step, first = cfg.synth.sessions_per_task, 1_000_000
    jobs = [
        (cfg, first + b, first * step + b * step, first * step + min((b + 1) * step, sessions))
        for b in range(math.ceil(sessions / step))
    ]
    if workers > 1:
        with _pool(workers) as pool:
            return pa.concat_tables(list(pool.map(_session_block, jobs)))
    return pa.concat_tables([_session_block(j) for j in jobs])


def co_click_targets(pairs: list[Pair]) -> dict[int, set[int]]:
    """Each test query offer's set of test partners (what Recall@K is graded against)."""
    out: dict[int, set[int]] = {}
    for p in pairs:
        if p.split == "test":
            out.setdefault(p.query_offer_id, set()).add(p.item_offer_id)
    return out


def sample_queries(targets: dict[int, set[int]], n: int, seed: int) -> np.ndarray:
    """Up to ``n`` query offers of ``targets``, a seeded sample in id order: [n] int64."""
    ids = np.array(sorted(targets), dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(ids, size=min(n, len(ids)), replace=False))
