"""The report's sections, built from the stages' metrics dicts and a few gathered examples (pure: no
Spark, no storage; ``report/spark_report.py`` gathers what the tables hold). Each builder returns an
:class:`~retrieval.report.html.Section`; a section whose stage has not run says so.

A benchmark result file (``paths.results/<name>.json``) carries a ``kind`` (``sessions``, ``ltr``,
``visual``, ...): :data:`BENCHMARKS` renders the kinds the report shows, by kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from retrieval.report import plots
from retrieval.report.html import Section

Metrics = Mapping[str, dict[str, Any]]  # stage -> its _metrics/<stage>.json


def run_section(root: str, seed: int, m: Metrics, config_text: str | None, ui_command: str | None) -> Section:
    s = Section("run", "The run")
    if not m:
        return s.missing(f"no stage has written metrics under {root}: run ./submit.sh pipeline first")
    s.text(
        f"Root {root}; seed {seed}; stages run: {', '.join(m)}; "
        f"{sum(x.get('seconds', 0) for x in m.values()):,.0f} s in all."
    )
    durations = {k: v.get("seconds", 0.0) for k, v in m.items()}
    s.images([(plots.horizontal_bars(durations, "Stage durations", "seconds"), "stage durations")])
    s.heading("What each stage wrote")
    s.table(
        ["stage", "rows out", "seconds", "outputs"],
        [
            [k, int(v.get("rows_out", 0)), float(v.get("seconds", 0.0)), ", ".join(v.get("outputs", {}))]
            for k, v in m.items()
        ],
    )
    if ui_command:
        s.text(
            f"Every stage is tracked in MLflow (params, metrics, artifacts); compare runs with: {ui_command}"
        )
    ing = m.get("ingest")
    if ing:
        s.heading("Ingest: rows per table, and why rows were quarantined")
        s.table(
            ["table", "rows in", "accepted", "quarantined", "duplicates removed"],
            [
                [t, v["rows_in"], v["rows_accepted"], v["rows_quarantined"], v["rows_duplicate"]]
                for t, v in ing.get("tables", {}).items()
            ],
        )
        s.table(["reason", "rows"], sorted(ing["quarantine_reasons"].items(), key=lambda kv: -kv[1]))
    if config_text is not None:
        s.heading("Config used")
        s.pre(config_text)
    return s


def _by_cutoff(
    keys: Sequence[str],
    label: tuple[str, str],
    methods: Sequence[str],
    value: Callable[[str, str], Any],
    title: str,
    y: str,
) -> bytes:
    """Bars of every method at every cutoff: ``keys`` (``recall_at_10`` ...) shown with ``label``'s
    replacement (``("recall_at_", "Recall@")``), ``value(method, key)`` the bar."""
    return plots.grouped_bars(
        [k.replace(*label) for k in keys],
        {m: [value(m, k) for k in keys] for m in methods},
        title,
        y,
        "cutoff",
    )


def _methods(figures: dict[str, Any]) -> list[str]:
    """The methods of one subset's figures (the other keys are counts and shares)."""
    return [k for k, v in figures.items() if isinstance(v, dict) and "mrr" in v]


def _recall_bars(ev: dict[str, Any], subset: str) -> tuple[bytes, str]:
    figures = ev[subset]
    methods = _methods(figures)
    ks = [k for k in ("recall_at_10", "recall_at_50", "recall_at_100") if k in figures[methods[0]]]
    title = f"Test co-clicks, {subset} query offers ({figures['queries']:,} queries)"
    png = _by_cutoff(ks, ("recall_at_", "Recall@"), methods, lambda m, k: figures[m].get(k), title, "recall")
    return png, f"Recall@K {subset}"


def _ceiling_table(s: Section, ev: dict[str, Any]) -> None:
    """Each method's Recall@50 as a share of the generator's own ranking (synthetic data only)."""
    rows = []
    for subset in ("warm", "cold"):
        share = ev[subset].get("share_of_ceiling")
        if share:
            ceiling = ev[subset]["ceiling"]["recall_at_50"]
            rows.append([subset, ev[subset]["ceiling_queries"], ceiling, *share.values()])
            names = list(share)
    if rows:
        s.table(
            ["query offers", "queries", "ceiling Recall@50", *[f"{n} / ceiling" for n in names]],
            rows,
            "Recall@50 beside its ceiling: what ranking by the generator's own next-offer probabilities "
            "achieves on the same queries (ceiling_content: the same knowing only what content shows)",
        )


def candidates_section(m: Metrics, popularity: dict[str, Any] | None) -> Section:
    s = Section("candidates", "Candidates: encoder, index, recommendations")
    enc = m.get("train_encoder")
    if enc is None:
        s.missing("train_encoder has not run")
    else:
        s.images([_recall_bars(enc["evaluation"], subset) for subset in ("warm", "cold")])
        _ceiling_table(s, enc["evaluation"])
    idx = m.get("build_index")
    if idx:
        s.table(
            ["index", "vectors", "shards", "nprobe", "recall@10 vs exact search"],
            [
                [
                    idx["index_factory"],
                    idx["vectors"],
                    idx["shards"],
                    idx.get("nprobe"),
                    idx["recall_at_10_vs_exact"],
                ]
            ],
        )
    recs = m.get("precompute_recs")
    if recs:
        base = recs.get("recall_at_20_baselines", {})
        s.table(
            [
                "offers",
                f"with all {recs['k']} recs",
                "catalogue coverage",
                "Recall@20 recs",
                *[f"Recall@20 {b}" for b in base],
            ],
            [
                [
                    recs["offers"],
                    recs.get("offers_with_k_recs"),
                    recs["catalog_coverage"],
                    recs["recall_at_20_test_pairs"],
                    *base.values(),
                ]
            ],
            "recommendations: share of offers served, and test co-clicks of another product found (by product)",
        )
        dup = recs.get("duplicate_products")
        if dup:
            s.text(
                f"Duplicates: {dup['share']:.1%} of carousels show one product twice by the generator's truth "
                f"({dup['repeated_slots']:.2f} of {recs['k']} slots on average): what the product collapse "
                "misses, mostly offers whose product_id the catalogue leaves null."
            )
    if popularity:
        s.text(
            f"Popularity bias: the most popular 1% of offers (by training co-clicks) take "
            f"{popularity['top1_share_of_recs']:.1%} of all recommendation slots and the top 10% take "
            f"{popularity['top10_share_of_recs']:.1%} (an unbiased recommender gives them 1% and 10%); "
            f"{popularity['never_recommended']:.1%} of offers are never recommended."
        )
    return s


def ranking_section(m: Metrics) -> Section:
    s = Section("ranking", "Ranking: search listings")
    rk = m.get("train_ranker")
    if rk is None:
        s.missing("train_ranker has not run")
    else:
        ev = rk["evaluation"]
        target = "truth" if "truth" in ev else "labels"
        known = ["production", "bm25", "xgb", "xgb_unbiased"]
        found = list(ev[target]["ndcg_at_10"])
        methods = [k for k in known if k in found] + sorted(k for k in found if k not in known)
        ks = ["ndcg_at_5", "ndcg_at_10", "ndcg_at_30"]
        s.text(
            f"Every method on the same {ev[target]['slates'].get('production', 0):,} test searches; "
            f"'production' is the logged order, 'bm25' BM25 alone. Against {rk['against']}."
        )
        title = f"nDCG against {rk['against']}"
        bars = _by_cutoff(
            ks, ("ndcg_at_", "nDCG@"), methods, lambda m, k: ev[target][k].get(m), title, "nDCG"
        )
        s.images([(bars, "nDCG by method")])
        rows = [
            [
                mm,
                *[ev[target][k].get(mm) for k in ks],
                ev[target]["mrr"].get(mm),
                ev["labels"]["ndcg_at_10"].get(mm),
            ]
            for mm in methods
        ]
        s.table(["method", "nDCG@5", "nDCG@10", "nDCG@30", "MRR", "nDCG@10 vs clicks"], rows)
        bias = rk.get("position_bias_correction", {})
        if bias:
            s.text(
                "Position-bias correction, nDCG@10 gained: "
                + ", ".join(f"{k} {v:+.4f}" for k, v in bias.items() if k != "against")
            )
    ml = m.get("mine_listings")
    if ml and "true" in ml.get("propensity", {}):
        p = ml["propensity"]
        curve = plots.curves(
            {"estimated (EM, position-based model)": p["estimated"], "true (generator)": p["true"]},
            f"Examination probability by position (MAE {p['mae']:.3f})",
            "position in the listing",
            "relative to position 1",
        )
        s.images([(curve, "position bias curve")])
    return s


def _accuracy_rows(d: dict[str, Any], with_ablations: bool) -> list[list[Any]]:
    """method, accuracy@1, accuracy@5, its interval (of an evaluate_visual metrics or benchmark dict)."""
    acc5 = {**d["accuracy_at_5"], **(d.get("ablations", {}) if with_ablations else {})}
    acc1 = {**d["accuracy_at_1"], **(d.get("ablations_at_1", {}) if with_ablations else {})}
    ci = d.get("accuracy_at_5_interval", {})
    return [[k, acc1.get(k), v, "–".join(f"{x:.3f}" for x in ci.get(k, []))] for k, v in acc5.items()]


def visual_section(m: Metrics, grid_png: bytes | None) -> Section:
    s = Section("visual", "Visual search")
    ev = m.get("evaluate_visual")
    if ev is None:
        return s.missing("evaluate_visual has not run (visual_pairs, train_visual, evaluate_visual)")
    vp = m.get("visual_pairs", {})
    if vp:
        s.text(
            f"{vp['images']:,} catalogue photos of {sum(vp['products'].values()):,} products "
            f"({vp['products']['train']:,} for training, {vp['products']['test']:,} held out); "
            f"{vp.get('street_photos', 0):,} synthetic street photos for training; quarantined: "
            + (", ".join(f"{k} {n:,}" for k, n in sorted(vp["quarantined"].items())) or "none")
            + "."
        )
    s.text(
        f"{ev['queries']:,} street-photo queries (one per held-out product) against {ev['gallery_images']:,} "
        f"held-out shop photos ({ev['dataset']}); a hit is a photo of the query's product in the top K."
    )
    s.table(["method", "accuracy@1", "accuracy@5", "accuracy@5 95% interval"], _accuracy_rows(ev, False))
    if ev.get("ablations"):
        s.heading("Ablations: which street photos the encoder was trained on")
        s.table(
            ["trained on", "accuracy@1", "accuracy@5"],
            [[k, ev.get("ablations_at_1", {}).get(k), v] for k, v in ev["ablations"].items()],
        )
    bars = plots.horizontal_bars(
        {**ev["accuracy_at_5"], **ev.get("ablations", {})}, "Street query -> shop gallery", "accuracy@5"
    )
    s.images([(bars, "accuracy@5 by method")])
    if grid_png:
        s.heading("Queries (left) and their top 5 with the street model: green = the query's product")
        s.images([(grid_png, "visual search examples")])
    return s


def _sessions(s: Section, d: dict[str, Any]) -> None:
    s.heading(f"Sessions: {d['name']} ({d.get('protocol', '')})")
    pub = d["published"].get("methods", {})
    rows = [[f"ours: {k}", v["p_at_20"], v["mrr_at_20"]] for k, v in d["methods"].items()]
    rows += [[f"published: {k}", v["p_at_20"], v["mrr_at_20"]] for k, v in pub.items()]
    s.table(["method", "P@20 (%)", "MRR@20 (%)"], rows, d["published"].get("source", ""))


def _ltr(s: Section, d: dict[str, Any]) -> None:
    s.heading(f"Learning to rank: {d['dataset']} ({d['test']['queries']} test queries, {d['seeds']} seeds)")
    rows = [
        [
            k,
            *[v[f"ndcg_at_{c}"]["mean"] for c in (1, 3, 5, 10)],
            "–".join(f"{x:.3f}" for x in v["ndcg_at_10"]["bootstrap_95"]),
        ]
        for k, v in d["methods"].items()
    ]
    s.table(["method", "NDCG@1", "NDCG@3", "NDCG@5", "NDCG@10", "NDCG@10 95% interval"], rows)


def _visual(s: Section, d: dict[str, Any]) -> None:
    s.heading(f"Visual search: {d['name']} ({d['queries']:,} street queries, {d['gallery_images']:,} photos)")
    s.table(
        ["method", "accuracy@1", "accuracy@5", "accuracy@5 95% interval"],
        _accuracy_rows(d, True),
        d.get("command", ""),
    )


def _quality_of(stages: dict[str, Any]) -> list[Any]:
    """Recs Recall@20 and encoder warm Recall@50, each beside popularity's, of one rung."""
    recs = (stages.get("precompute_recs") or {}).get("metrics") or {}
    enc = ((stages.get("train_encoder") or {}).get("metrics") or {}).get("recall_at_50") or {}
    pop = (recs.get("recall_at_20_baselines") or {}).get("popularity")
    return [recs.get("recall_at_20_test_pairs"), pop, enc.get("encoder"), enc.get("popularity")]


def scale_tables(d: dict[str, Any]) -> dict[str, Any]:
    """The scale ladder's tables (pure): per stage and rung, seconds, rows, peak RSS and bytes to the
    driver; each stage's growth exponents; quality by rung; the cost model's totals."""
    rungs = sorted(d.get("rungs", {}).items(), key=lambda kv: kv[1]["factor"])
    names = [n for n, _ in rungs]
    stages = [s for s in d.get("stages_order", []) or list(d.get("fits", {}))]
    # stages with seconds of their own (not the delta's set-up, nor the rebuild's three stages)
    seen = {s for _, r in rungs for s, m in r["stages"].items() if isinstance(m.get("seconds"), (int, float))}
    order = [s for s in stages if s in seen] + sorted(seen - set(stages))
    costs = []
    for st in order:
        row: list[Any] = [st]
        for _, r in rungs:
            m = r["stages"].get(st) or {}
            rss = max((m.get("peak_rss") or {}).values() or [0])
            row += [m.get("seconds"), m.get("rows_in") or m.get("rows_out"), round(rss / 2**30, 2) or None]
            row += [round(m["result_bytes"] / 2**20, 2) if "result_bytes" in m else None]
        bs = [f"{x['b']:.2f}" for x in d.get("fits", {}).get(st, []) if x.get("b") is not None]
        costs.append([*row, " / ".join(bs)])
    headers = ["stage"]
    for n in names:
        headers += [f"{n} s", f"{n} rows", f"{n} peak RSS GB", f"{n} MB to driver"]
    headers.append("b (time ~ rows^b, between rungs)")
    quality = [[n, *_quality_of(r["stages"])] for n, r in rungs]
    cm = d.get("cost_model") or {}
    cost_rows = [
        [job, (cm.get(key) or {}).get("total_core_hours"), (cm.get(key) or {}).get("total_gpu_hours")]
        for job, key in (
            ("daily (2M changed offers, 20M searches)", "daily"),
            ("weekly retrain", "weekly_retrain"),
            ("full rebuild (250M offers)", "full_rebuild"),
        )
        if key in cm
    ]
    return {"headers": headers, "costs": costs, "quality": quality, "cost_model": cost_rows}


def _scale(s: Section, d: dict[str, Any]) -> None:
    from retrieval.report import plots

    t = scale_tables(d)
    s.heading(
        f"Scale ladder: the stages at {', '.join(sorted(d.get('rungs', {}), key=lambda n: float(n[:-1])))} the embedded default ({d.get('machine', '')})"
    )
    s.table(t["headers"], t["costs"], d.get("command", ""))
    s.table(
        ["rung", "recs Recall@20", "popularity Recall@20", "encoder warm Recall@50", "popularity Recall@50"],
        t["quality"],
    )
    if t["cost_model"]:
        cm = d["cost_model"]
        s.table(
            ["job at the reference scale", "core-hours", "GPU-hours"],
            t["cost_model"],
            f"from the {cm.get('measured_at', '')} rung; cluster: {cm.get('cluster', {})}",
        )
    rungs = d.get("rungs", {}).values()
    time_pts: dict[str, list[tuple[float, float]]] = {}
    rss_pts: dict[str, list[tuple[float, float]]] = {}
    for r in rungs:
        for st, m in r["stages"].items():
            rows = m.get("rows_in") or m.get("rows_out") or 0
            if isinstance(m.get("seconds"), (int, float)) and rows:
                time_pts.setdefault(st, []).append((rows, m["seconds"]))
                rss_pts.setdefault(st, []).append(
                    (rows, max((m.get("peak_rss") or {}).values() or [0]) / 2**30)
                )
    if time_pts:
        s.images(
            [
                (
                    plots.loglog(
                        time_pts, "Seconds against size, by stage", "rows (in, else out)", "seconds"
                    ),
                    "time by size",
                ),
                (
                    plots.loglog(
                        rss_pts,
                        "Peak RSS against size, by stage",
                        "rows (in, else out)",
                        "peak RSS of one process kind (GB)",
                    ),
                    "memory by size",
                ),
            ]
        )


# The benchmark kinds the report shows (others, such as the speed benchmarks, are in docs/).
def _calibration(s: Section, d: dict[str, Any]) -> None:
    from retrieval.sessions.calibration import table

    s.heading("The marketplace beside a real click log")
    header, rows = table(d["logs"])
    s.table(header, rows, "the synthetic log's items are offers; both logs after SR-GNN's preprocessing")


def ablations_payload(m: Metrics, command: str) -> dict[str, Any]:
    """``benchmarks/results/ablations.json`` of the benchmark run (conf/bench.yaml), which every report
    shows: the reranker with and without its IPS weights, and the visual encoder by its training photos."""
    rk = m.get("train_ranker", {}).get("evaluation", {})
    target = "truth" if "truth" in rk else "labels"
    ndcg = rk.get(target, {}).get("ndcg_at_10", {})
    ev = m.get("evaluate_visual", {})
    return {
        "kind": "ablations",
        "command": command,
        "ranking_against": target,
        "ranking_ndcg_at_10": {k: v for k, v in ndcg.items() if k.startswith("dnn_")},
        "visual_accuracy_at_5": {**ev.get("accuracy_at_5", {}), **ev.get("ablations", {})},
    }


def _ablations(s: Section, d: dict[str, Any]) -> None:
    s.heading("Ablations of the benchmark run")
    rows = [
        [f"reranker {k}", "nDCG@10 vs " + d["ranking_against"], v] for k, v in d["ranking_ndcg_at_10"].items()
    ]
    rows += [[f"visual {k}", "accuracy@5", v] for k, v in d["visual_accuracy_at_5"].items()]
    s.table(["variant", "metric", "value"], rows, d.get("command", ""))


BENCHMARKS: dict[str, Callable[[Section, dict[str, Any]], None]] = {
    "ablations": _ablations,
    "sessions": _sessions,
    "calibration": _calibration,
    "ltr": _ltr,
    "visual": _visual,
    "scale": _scale,
}


def benchmarks_section(results: Sequence[dict[str, Any]], results_dir: str) -> Section:
    s = Section("benchmarks", "Real-data benchmarks")
    s.text(
        "Public datasets, and the scale ladder on the synthetic marketplace: each row was measured by the "
        "command shown.",
        "note",
    )
    shown = [d for d in results if d.get("kind") in BENCHMARKS]
    for d in shown:
        BENCHMARKS[d["kind"]](s, d)
    if not shown:
        s.missing(
            f"no benchmark results under {results_dir} (./submit.sh eval_sessions / eval_ltr write them)"
        )
    return s


def examples_section(
    carousels: Sequence[dict[str, Any]] | None, listings: Sequence[dict[str, Any]] | None, against: str | None
) -> Section:
    """Carousels (``report.spark_report.carousels``) and reranked listings (``reranked_listings``);
    None where their stage has not run."""
    s = Section("examples", "Examples to judge by eye")
    if carousels is None:
        s.missing("precompute_recs has not run: no carousels")
    for c in carousels or []:
        o = c["offer"] or {}
        s.heading(f"Recommendations for: {o.get('title')} (offer {c['offer_id']})")
        s.table(
            ["#", "score", "title", "same cluster (truth)"],
            [
                [i, r["score"], (r["offer"] or {}).get("title"), r["same_cluster"]]
                for i, r in enumerate(c["recs"][:10], 1)
            ],
        )
    if listings is None:
        s.missing("train_ranker (DNN stage) has not run: no reranked listings")
    for ex in listings or []:
        s.heading(f"Search: {ex['query_text']!r}")
        cols = list(ex["ranked"])
        rows = []
        for i in range(10):
            row: list[Any] = [i + 1]
            for mm in cols:
                it = ex["ranked"][mm][i]
                row += [it["title"], it["grade"] if it["grade"] is not None else it["label"]]
            rows.append(row)
        grade = "grade (truth)" if against == "true grades" else "label"
        s.table(["#"] + [h for mm in cols for h in (mm, grade)], rows)
    return s
