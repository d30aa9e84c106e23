"""pipeline: every stage, in order, in one Spark application (the README's first command).

    ./submit.sh pipeline [--config conf/local.yaml] [--set paths.root=/tmp/run1] [--set k=v ...]
    ./submit.sh pipeline --from train_ranker          # a late stage failed: go on from it
    ./submit.sh pipeline --only precompute_recs,evaluate

Runs on the embedded synthetic marketplace unless the config says otherwise. The stages and their
order are the registry's (lib/retrieval/stages.py). Each stage writes its tables,
`_metrics/<stage>.json` and the config it used under paths.root, exactly as when it runs alone
(`./submit.sh <stage>`), so any stage can be re-run and inspected on its own afterwards.
"""

from __future__ import annotations

import sys
from typing import Any

from retrieval import stages
from retrieval.cli import load_config, pipeline_arguments, run_pipeline, setup_logging
from retrieval.runlock import LockHeld
from retrieval.spark_tables import TableError
from retrieval.tracking import Tracker


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    setup_logging()
    cfg, source, args = load_config("pipeline", __doc__, argv, pipeline_arguments)
    try:
        chosen = stages.select(args.start, args.only)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    tracker = Tracker(cfg)
    try:
        results = run_pipeline(cfg, chosen, source=source, echo=True, tracker=tracker)
    except TableError as e:
        print(f"error in stage {e.stage}: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except LockHeld as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
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
