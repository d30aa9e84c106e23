"""evaluate: one HTML page a person reads after a run: <root>/report/index.html.

    ./submit.sh evaluate [--config conf/local.yaml]

Reads every stage's `_metrics/<stage>.json` and a few tables, and writes a self-contained page (inline
CSS and PNG figures; opens from disk): the run (config, table sizes, stage durations, quarantine
reasons), candidates (encoder Recall@K against its baselines for warm and cold offers, ANN recall
against exact search, recs coverage and popularity bias), ranking (nDCG@k of every method, the
estimated against the true examination curve), visual search, the real-data benchmarks found under
`benchmarks/results/` (labelled as such), and examples to judge by eye (recommendation carousels and
reranked listings, with titles). A section whose stage has not run says so.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from retrieval import storage, tables
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.metrics import config_path, read_stage_metrics
from retrieval.progress import Progress
from retrieval.report import plots
from retrieval.report.html import Section, render
from retrieval.spark_tables import exists
from retrieval.tracking import Tracker

STAGES = [
    "generate",
    "ingest",
    "mine_pairs",
    "mine_listings",
    "train_encoder",
    "embed_offers",
    "build_index",
    "precompute_recs",
    "train_ranker",
    "visual_pairs",
    "train_visual",
    "embed_images",
    "evaluate_visual",
]


def _metrics(root: str) -> dict[str, dict[str, Any]]:
    out = {}
    for stage in STAGES:
        try:
            out[stage] = read_stage_metrics(root, stage)
        except FileNotFoundError:
            continue
    return out


def run_section(cfg: Config, m: dict[str, dict[str, Any]]) -> Section:
    s = Section("run", "The run")
    if not m:
        return s.missing(
            f"no stage has written metrics under {cfg.paths.root}: run ./submit.sh pipeline first"
        )
    s.text(
        f"Root {cfg.paths.root}; seed {cfg.seed}; stages run: {', '.join(m)}; "
        f"{sum(x.get('seconds', 0) for x in m.values()):,.0f} s in all."
    )
    s.images(
        [
            (
                plots.horizontal_bars(
                    {k: v.get("seconds", 0.0) for k, v in m.items()}, "Stage durations", "seconds"
                ),
                "stage durations",
            )
        ]
    )
    s.heading("What each stage wrote")
    s.table(
        ["stage", "rows out", "seconds", "outputs"],
        [
            [k, int(v.get("rows_out", 0)), float(v.get("seconds", 0.0)), ", ".join(v.get("outputs", {}))]
            for k, v in m.items()
        ],
    )
    ui = Tracker(cfg).ui_command()
    if ui:
        s.text(f"Every stage is tracked in MLflow (params, metrics, artifacts); compare runs with: {ui}")
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
    src = config_path(cfg.paths.root, "generate" if "generate" in m else next(iter(m)))
    if storage.exists(src):
        s.heading("Config used")
        s.pre(storage.read_text(src))
    return s


def candidates_section(m: dict[str, dict[str, Any]], popularity: dict[str, Any] | None) -> Section:
    s = Section("candidates", "Candidates: encoder, index, recommendations")
    enc = m.get("train_encoder")
    if enc is None:
        s.missing("train_encoder has not run")
    else:
        ev = enc["evaluation"]
        pngs = []
        for subset in ("warm", "cold"):
            methods = [k for k in ev[subset] if k != "queries"]
            ks = [k for k in ("recall_at_10", "recall_at_50", "recall_at_100") if k in ev[subset][methods[0]]]
            pngs.append(
                (
                    plots.grouped_bars(
                        [k.replace("recall_at_", "Recall@") for k in ks],
                        {mm: [ev[subset][mm].get(k) for k in ks] for mm in methods},
                        f"Test co-clicks, {subset} query offers ({ev[subset]['queries']:,} queries)",
                        "recall",
                        "cutoff K",
                    ),
                    f"Recall@K {subset}",
                )
            )
        s.images(pngs)
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
    if popularity:
        s.text(
            f"Popularity bias: the most popular 1% of offers (by training co-clicks) take "
            f"{popularity['top1_share_of_recs']:.1%} of all recommendation slots and the top 10% take "
            f"{popularity['top10_share_of_recs']:.1%} (an unbiased recommender gives them 1% and 10%); "
            f"{popularity['never_recommended']:.1%} of offers are never recommended."
        )
    return s


def ranking_section(m: dict[str, dict[str, Any]]) -> Section:
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
        s.images(
            [
                (
                    plots.grouped_bars(
                        [k.replace("ndcg_at_", "nDCG@") for k in ks],
                        {mm: [ev[target][k].get(mm) for k in ks] for mm in methods},
                        f"nDCG against {rk['against']}",
                        "nDCG",
                        "cutoff",
                    ),
                    "nDCG by method",
                )
            ]
        )
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
        s.images(
            [
                (
                    plots.curves(
                        {
                            "estimated (EM, position-based model)": p["estimated"],
                            "true (generator)": p["true"],
                        },
                        f"Examination probability by position (MAE {p['mae']:.3f})",
                        "position in the listing",
                        "relative to position 1",
                    ),
                    "position bias curve",
                )
            ]
        )
    return s


def visual_section(cfg: Config, m: dict[str, dict[str, Any]]) -> Section:
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
    acc5, acc1, ci = ev["accuracy_at_5"], ev["accuracy_at_1"], ev.get("accuracy_at_5_interval", {})
    rows = [[k, acc1.get(k), acc5[k], "–".join(f"{x:.3f}" for x in ci.get(k, []))] for k in acc5]
    s.table(["method", "accuracy@1", "accuracy@5", "accuracy@5 95% interval"], rows)
    if ev.get("ablations"):
        s.heading("Ablations: which street photos the encoder was trained on")
        s.table(
            ["trained on", "accuracy@1", "accuracy@5"],
            [[k, ev.get("ablations_at_1", {}).get(k), v] for k, v in ev["ablations"].items()],
        )
    s.images(
        [
            (
                plots.horizontal_bars(
                    {**acc5, **ev.get("ablations", {})}, "Street query -> shop gallery", "accuracy@5"
                ),
                "accuracy@5 by method",
            )
        ]
    )
    grid = ev.get("examples", "")
    if grid and storage.exists(grid):
        s.heading("Queries (left) and their top 5 with the street model: green = the query's product")
        s.images([(storage.read_bytes(grid), "visual search examples")])
    return s


def benchmarks_section(cfg: Config) -> Section:
    s = Section("benchmarks", "Real-data benchmarks")
    s.text(
        "Public datasets, not the synthetic marketplace: each row was measured by the command shown.", "note"
    )
    found = False
    for path in sorted(
        {
            *glob.glob(os.path.join(cfg.sessions.results_dir, "*.json")),
            *glob.glob(os.path.join(cfg.ltr.results_dir, "*.json")),
            *glob.glob(os.path.join(cfg.visual.results_dir, "*.json")),
        }
    ):
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        if "published" in d and "methods" in d:  # a session benchmark (eval_sessions)
            found = True
            s.heading(f"Sessions: {d['name']} ({d.get('protocol', '')})")
            pub = d["published"].get("methods", {})
            rows = [[f"ours: {k}", v["p_at_20"], v["mrr_at_20"]] for k, v in d["methods"].items()]
            rows += [[f"published: {k}", v["p_at_20"], v["mrr_at_20"]] for k, v in pub.items()]
            s.table(["method", "P@20 (%)", "MRR@20 (%)"], rows, d["published"].get("source", ""))
        elif "ndcg_at_10_minus_lightgbm" in d:  # an LTR benchmark (eval_ltr)
            found = True
            s.heading(
                f"Learning to rank: {d['dataset']} ({d['test']['queries']} test queries, {d['seeds']} seeds)"
            )
            rows = [
                [
                    k,
                    *[v[f"ndcg_at_{c}"]["mean"] for c in (1, 3, 5, 10)],
                    "–".join(f"{x:.3f}" for x in v["ndcg_at_10"]["bootstrap_95"]),
                ]
                for k, v in d["methods"].items()
            ]
            s.table(["method", "NDCG@1", "NDCG@3", "NDCG@5", "NDCG@10", "NDCG@10 95% interval"], rows)
        elif "accuracy_at_5" in d and "ablations" in d:  # a visual-search benchmark (evaluate_visual)
            found = True
            s.heading(
                f"Visual search: {d['name']} ({d['queries']:,} street queries, {d['gallery_images']:,} photos)"
            )
            ci = d.get("accuracy_at_5_interval", {})
            acc1 = {**d["accuracy_at_1"], **d.get("ablations_at_1", {})}
            rows = [
                [k, acc1.get(k), v, "–".join(f"{x:.3f}" for x in ci.get(k, []))]
                for k, v in {**d["accuracy_at_5"], **d["ablations"]}.items()
            ]
            s.table(
                ["method", "accuracy@1", "accuracy@5", "accuracy@5 95% interval"], rows, d.get("command", "")
            )
    if not found:
        s.missing(
            f"no benchmark results under {cfg.sessions.results_dir} (./submit.sh eval_sessions / eval_ltr write them)"
        )
    return s


def examples_section(spark: Any, cfg: Config, m: dict[str, dict[str, Any]]) -> Section:
    from retrieval.report.spark_examples import carousels, reranked_listings

    s = Section("examples", "Examples to judge by eye")
    root = cfg.paths.root
    if "precompute_recs" in m and exists(spark, tables.path(root, tables.RECS)):
        for c in carousels(spark, root, [], limit=3):
            o = c["offer"] or {}
            s.heading(f"Recommendations for: {o.get('title')} (offer {c['offer_id']})")
            s.table(
                ["#", "score", "title", "same cluster (truth)"],
                [
                    [i, r["score"], (r["offer"] or {}).get("title"), r["same_cluster"]]
                    for i, r in enumerate(c["recs"][:10], 1)
                ],
            )
    else:
        s.missing("precompute_recs has not run: no carousels")
    rk = m.get("train_ranker")
    if rk and exists(spark, tables.path(root, tables.RANKER_TEST_SCORED)):
        best = max(
            (k for k in rk["ndcg_at_10"] if k.startswith("dnn_")),
            key=lambda k: rk["ndcg_at_10"][k],
            default=None,
        )
        methods = ["production", *([best] if best else [])]
        for ex in reranked_listings(spark, root, methods, limit=2):
            s.heading(f"Search: {ex['query_text']!r}")
            cols = list(ex["ranked"])
            rows = []
            for i in range(10):
                row: list[Any] = [i + 1]
                for mm in cols:
                    it = ex["ranked"][mm][i]
                    row += [it["title"], it["grade"] if it["grade"] is not None else it["label"]]
                rows.append(row)
            heads = ["#"] + [
                h for mm in cols for h in (mm, "grade (truth)" if rk["against"] == "true grades" else "label")
            ]
            s.table(heads, rows)
    else:
        s.missing("train_ranker (DNN stage) has not run: no reranked listings")
    return s


def recs_popularity(spark: Any, root: str) -> dict[str, Any] | None:
    """Share of recommendation slots taken by the most popular 1% / 10% of offers (training co-clicks)."""
    from pyspark.sql import functions as F

    if not (exists(spark, tables.path(root, tables.RECS)) and exists(spark, tables.path(root, tables.PAIRS))):
        return None
    from retrieval.spark_tables import read_table

    offers = read_table(spark, root, tables.OFFERS).select("offer_id")
    pairs = read_table(spark, root, tables.PAIRS).where(F.col("split") == "train")
    pop = pairs.groupBy(F.col("item_offer_id").alias("offer_id")).agg(F.count(F.lit(1)).alias("pop"))
    n_offers = offers.count()
    # The percent rank by (popularity desc, offer_id): positions from a distributed sort
    # (zipWithIndex), not a window without partitions, which would pull every offer into one task.
    ordered = offers.join(pop, "offer_id", "left").orderBy(F.desc(F.coalesce("pop", F.lit(0))), "offer_id")
    positions = ordered.select("offer_id").rdd.zipWithIndex().map(lambda r: (int(r[0][0]), int(r[1])))
    ranked = spark.createDataFrame(positions, "offer_id bigint, pos bigint").withColumn(
        "pct", F.col("pos") / F.lit(max(n_offers - 1, 1))
    )
    slots = read_table(spark, root, tables.RECS).select(F.explode("recs.offer_id").alias("offer_id"))
    r = (
        slots.join(ranked, "offer_id", "left")
        .agg(
            F.avg((F.col("pct") < 0.01).cast("double")).alias("top1"),
            F.avg((F.col("pct") < 0.10).cast("double")).alias("top10"),
        )
        .first()
    )
    recommended = slots.select("offer_id").distinct().count()
    return {
        "top1_share_of_recs": float(r["top1"] or 0.0),
        "top10_share_of_recs": float(r["top10"] or 0.0),
        "never_recommended": 1.0 - recommended / max(n_offers, 1),
    }


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root = cfg.paths.root
    m = _metrics(root)
    popularity = recs_popularity(spark, root) if "precompute_recs" in m else None
    builders = [
        ("the run", lambda: run_section(cfg, m)),
        ("candidates", lambda: candidates_section(m, popularity)),
        ("ranking", lambda: ranking_section(m)),
        ("visual search", lambda: visual_section(cfg, m)),
        ("benchmarks", lambda: benchmarks_section(cfg)),
        ("examples", lambda: examples_section(spark, cfg, m)),
    ]
    sections = []
    with Progress("report", len(builders), "sections", every_s=cfg.train.progress_s) as progress:
        for name, build in builders:
            sections.append(build())
            progress.update(1, last=name)
    page = render("retrieval-at-scale: evaluation report", f"run under {root}", sections)
    uri = storage.join(root, "report", "index.html")
    storage.write_bytes_atomic(uri, page.encode("utf-8"))
    missing = [s.title for s in sections if any('class="missing"' in p for p in s.parts)]
    return {
        "report": uri,
        "stages_reported": list(m),
        "popularity": popularity,
        "rows_out": len(m),
        "outputs": {"report/index.html": uri},
        "artifacts": {"report": uri},  # tracked with the run (retrieval.tracking)
        "summary": [
            f"report of {len(m)} stages: {storage.absolute(uri)} (open it in a browser)",
            *([f"sections with something missing: {', '.join(missing)}"] if missing else []),
        ],
    }


if __name__ == "__main__":
    job_main("evaluate", run, __doc__)
