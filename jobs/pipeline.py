"""pipeline: every stage, in order, in one Spark application (the README's first command).

    ./submit.sh pipeline [--config conf/local.yaml] [--set paths.root=/tmp/run1] [--set k=v ...]

Runs on the embedded synthetic marketplace unless the config says otherwise. Each stage writes its
tables, `_metrics/<stage>.json` and the config it used under paths.root, exactly as when it runs alone
(`./submit.sh <stage>`), so any stage can be re-run and inspected on its own afterwards.
"""

from __future__ import annotations

import sys
from typing import Any

from jobs import (
    build_index,
    embed_images,
    embed_offers,
    evaluate,
    evaluate_visual,
    generate,
    ingest,
    mine_listings,
    mine_pairs,
    precompute_recs,
    train_encoder,
    train_ranker,
    train_visual,
    visual_pairs,
)
from retrieval.cli import load_config, run_stage, setup_logging, summary
from retrieval.spark import get_spark
from retrieval.spark_tables import TableError
from retrieval.tracking import Tracker

# (stage name, run function), in dependency order. Later issues append their stages here.
STAGES = [
    ("generate", generate.run),
    ("ingest", ingest.run),
    ("mine_pairs", mine_pairs.run),
    ("mine_listings", mine_listings.run),
    ("train_encoder", train_encoder.run),
    ("embed_offers", embed_offers.run),
    ("build_index", build_index.run),
    ("precompute_recs", precompute_recs.run),
    ("train_ranker", train_ranker.run),
    ("visual_pairs", visual_pairs.run),
    ("train_visual", train_visual.run),
    ("embed_images", embed_images.run),
    ("evaluate_visual", evaluate_visual.run),
    ("evaluate", evaluate.run),
]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    setup_logging()
    cfg, source = load_config("pipeline", __doc__, argv)
    spark = get_spark(cfg, "pipeline")
    tracker = Tracker(cfg)
    results = []
    with tracker.pipeline():
        for stage, run in STAGES:
            try:
                result = run_stage(spark, cfg, stage, run, source, tracker)
            except TableError as e:
                print(f"error in stage {stage}: {e}", file=sys.stderr)
                raise SystemExit(1) from None
            print(summary(stage, result), flush=True)
            results.append(result)
    total = sum(r["seconds"] for r in results)
    lines = [f"== pipeline: {len(results)} stages in {total:.1f} s; everything is under {cfg.paths.root}"]
    report = next((r.get("report") for r in results if r.get("report")), None)
    if report:
        lines.append(f"   report:  {report}")
    if tracker.enabled:
        lines.append(f"   tracked: {tracker.ui_command()}")
    print("\n".join(lines), flush=True)
    return results


if __name__ == "__main__":
    main()
