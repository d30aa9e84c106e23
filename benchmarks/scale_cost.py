"""A cost model at the reference system's scale, from the scale ladder's throughput (pure).

The reference (Allegro's "Retrieval at Scale" talk): 250M offers, 2M of them new or changed a day,
20M searches a day, 22M customers, 50M listings a week to retrain the reranker, 120M offers in the
visual index. Every figure here is the ladder's largest rung's measured cost per row of a stage,
times the rows that stage would see at the reference scale, with each assumption in ``ASSUMPTIONS``;
training is priced in GPU-hours from ``benchmarks/results/gpu_check.json`` (an H200) where it would
run on GPUs. Core-seconds are the stage's seconds times the cores the ladder's machine gave Spark.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

REFERENCE = {
    "offers": 250e6,
    "changed_offers_per_day": 2e6,
    "searches_per_day": 20e6,
    "customers": 22e6,
    "reranker_listings_per_week": 50e6,
    "visual_index_offers": 120e6,
}
DEADLINES_H = {"daily": 4.0, "weekly": 24.0, "rebuild": 24.0}  # hours each job may take
ASSUMPTIONS = [
    "costs per row are the largest rung's that ran the stage (stages_measured_at names the others), on "
    "the ladder's machine (2 cores, local[*]); a cluster core is taken to do what one of these does",
    "the daily recs refresh recomputes the carousels the rung's incremental run recomputed, per offer of "
    "the catalogue, scaled from the rung's delta share (1%) to the reference's (0.8%), each at a full "
    "run's cost per carousel; carousels patched with an entering offer (a join and a merge of k + a few "
    "offers, no search) are not priced; changed offers are embedded and indexed at a full run's cost per offer",
    "events and co-click pairs per search are the synthetic marketplace's (measured at the largest rung)",
    "search cost per query grows with sqrt(n) (an IVF index with ~4 sqrt(n) lists and a fixed nprobe "
    "share), so a catalogue-wide search step costs n^1.5: the recs refresh and the full recs scale so; at "
    "250M offers that takes index.train_size >= 2.56M (39 x 65,536 lists, 660 MB of vectors at the driver): "
    "with the default 200k the lists stop at 4,096 and a query's cost grows with n beyond ~1.6M offers",
    "the encoder trains 4 epochs on a week of co-click pairs, the reranker 2 epochs on 50M listings of "
    "the marketplace's mean length (capped at rerank_k = 300), the image encoder 6 epochs on 1M products "
    "x 4 images, all on GPUs at gpu_check.json's rates",
    "image embedding on a GPU runs at 3x the training rate (a forward pass only)",
    "bytes per vector: 64 float32 (256 B) in the offer index, 128 float32 (512 B) in the image index",
]


def _largest(state: dict[str, Any]) -> dict[str, Any] | None:
    rungs = sorted(state.get("rungs", {}).values(), key=lambda r: r["factor"])
    return rungs[-1] if rungs else None


def _by_stage(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Each stage's measurement from the largest rung that has it (a rung may lack a stage that did
    not fit it), and the rung each came from."""
    stages: dict[str, Any] = {}
    at: dict[str, str] = {}
    for name, rung in sorted(state.get("rungs", {}).items(), key=lambda kv: kv[1]["factor"]):
        for stage, m in rung.get("stages", {}).items():
            stages[stage], at[stage] = m, name
    return stages, at


def _per_row(stage: dict[str, Any] | None, rows_key: str = "rows_in", cores: int = 2) -> float | None:
    """Core-seconds per row of a measured stage."""
    if not stage or not isinstance(stage.get("seconds"), (int, float)):
        return None
    rows = stage.get(rows_key) or stage.get("rows_out")
    return stage["seconds"] * cores / rows if rows else None


def _gpu_rates(path: str) -> dict[str, float]:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        g = json.load(f)
    return {
        k.split("@")[0]: float(v)
        for k, v in g.items()
        if k.endswith("@cuda:0") and isinstance(v, (int, float))
    }


def cost_model(
    state: dict[str, Any], gpu_check: str | None = None, cores: int | None = None
) -> dict[str, Any]:
    """Core-hours, GPU-hours and cluster sizes for the daily job, the weekly retrain and a full rebuild."""
    rung = _largest(state)
    if rung is None:
        return {"note": "no rung measured yet"}
    cores = cores or rung.get("cores") or os.cpu_count() or 2  # the cores the rung was measured on
    s, at = _by_stage(state)
    # ratios of the log (events and listing rows per search) from one rung: mine_listings'
    same = state["rungs"].get(at.get("mine_listings", ""), rung)["stages"]
    gpu = _gpu_rates(gpu_check or os.path.join(os.path.dirname(__file__), "results", "gpu_check.json"))
    n_offers = s.get("embed_offers", {}).get("rows_out") or 1
    searches = (s.get("mine_listings", {}).get("metrics") or {}).get("listings") or 1
    events = same.get("mine_pairs", {}).get("rows_in") or 1
    pairs = same.get("mine_pairs", {}).get("rows_out") or 1
    listing_rows = (s.get("mine_listings", {}).get("metrics") or {}).get("rows") or 1
    ref = REFERENCE
    growth = math.sqrt(ref["offers"] / n_offers)  # search cost per query, reference over measured
    events_day = ref["searches_per_day"] * events / searches

    def core_h(stage: str, rows: float, rows_key: str = "rows_in", factor: float = 1.0) -> float | None:
        per = _per_row(s.get(stage), rows_key, cores)
        return None if per is None else round(per * rows * factor / 3600, 1)

    # the incremental day: its carousels recomputed per offer of the catalogue, at the rung's delta share
    delta = s.get("delta") or {}
    delta_share = (delta.get("changed_or_deleted") or 0) / max(delta.get("offers") or 1, 1)
    recomputed = ((s.get("incremental_precompute_recs") or {}).get("metrics") or {}).get("recomputed")
    ref_share = ref["changed_offers_per_day"] / ref["offers"]
    daily = {
        "ingest_events": core_h("ingest", events_day),
        "mine_pairs": core_h("mine_pairs", events_day),
        "mine_listings": core_h("mine_listings", events_day),
        # a changed offer costs what any offer costs in a full embed / index build (the rung's
        # incremental runs are mostly the application's fixed cost)
        "embed_changed": core_h("embed_offers", ref["changed_offers_per_day"], "rows_out"),
        "index_changed": core_h("build_index", ref["changed_offers_per_day"]),
        "recs_refresh": None,
    }
    if recomputed and delta_share:
        carousels = ref["offers"] * recomputed / n_offers * ref_share / delta_share
        daily["recs_refresh"] = core_h("precompute_recs", carousels, "rows_out", growth)
    rebuild = {
        "ingest_offers": core_h("ingest", ref["offers"]),
        "embed_offers": core_h("embed_offers", ref["offers"], "rows_out"),
        "build_index": core_h("build_index", ref["offers"]),
        "precompute_recs": core_h("precompute_recs", ref["offers"], "rows_out", growth),  # per carousel
    }
    mean_listing = listing_rows / searches
    weekly_gpu = {
        "encoder": round(4 * 7 * events_day * pairs / events / gpu["encoder_examples_per_s"] / 3600, 1)
        if "encoder_examples_per_s" in gpu
        else None,
        "reranker": round(
            2
            * ref["reranker_listings_per_week"]
            * min(mean_listing, 300)
            / gpu["reranker_mlp_ndcg_loss2pp_L300_offers_per_s"]
            / 3600,
            1,
        )
        if "reranker_mlp_ndcg_loss2pp_L300_offers_per_s" in gpu
        else None,
        "image_encoder": round(6 * 1e6 * 4 / gpu["visual_64px_w16_images_per_s"] / 3600, 1)
        if "visual_64px_w16_images_per_s" in gpu
        else None,
        "embed_images": round(
            ref["visual_index_offers"] / (3 * gpu["visual_64px_w16_images_per_s"]) / 3600, 1
        )
        if "visual_64px_w16_images_per_s" in gpu
        else None,
    }
    xgb = (s.get("train_ranker", {}).get("metrics") or {}).get("xgb") or {}
    xgb_rows = (xgb.get("rows") or {}).get("xgb")
    xgb_s = sum((xgb.get("xgb_seconds") or {}).values())
    weekly_cpu = {
        "xgboost": round(
            xgb_s * cores / xgb_rows * ref["reranker_listings_per_week"] * mean_listing / 3600, 1
        )
        if xgb_rows
        else None,
        "full_rebuild": None,
    }

    def total(d: dict[str, float | None]) -> float:
        return round(sum(v for v in d.values() if v), 1)

    weekly_cpu["full_rebuild"] = total(rebuild)
    out = {
        "reference": REFERENCE,
        "measured_at": f"{rung['factor']:g}x",
        "stages_measured_at": {k: v for k, v in at.items() if v != f"{rung['factor']:g}x"},
        "assumptions": ASSUMPTIONS,
        "daily": {"core_hours": daily, "total_core_hours": total(daily)},
        "weekly_retrain": {
            "gpu_hours": weekly_gpu,
            "total_gpu_hours": total(weekly_gpu),
            "core_hours": weekly_cpu,
            "total_core_hours": total(weekly_cpu),
        },
        "full_rebuild": {"core_hours": rebuild, "total_core_hours": total(rebuild)},
    }
    out["cluster"] = {
        "daily_cores": math.ceil(out["daily"]["total_core_hours"] / DEADLINES_H["daily"]),
        "weekly_gpus": math.ceil(out["weekly_retrain"]["total_gpu_hours"] / DEADLINES_H["weekly"])
        if weekly_gpu["encoder"]
        else None,
        "weekly_cores": math.ceil(out["weekly_retrain"]["total_core_hours"] / DEADLINES_H["weekly"]),
        "rebuild_cores": math.ceil(out["full_rebuild"]["total_core_hours"] / DEADLINES_H["rebuild"]),
        "deadlines_hours": DEADLINES_H,
    }
    return out
