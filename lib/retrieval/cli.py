"""What every job in ``jobs/`` shares: options, config, Spark, timing, metrics, the closing summary.

A job module defines ``run(spark, cfg) -> metrics`` and ends with ``job_main("<stage>", run, __doc__)``.
``run`` returns the stage's metrics dict: the stage keys of the metrics contract, ``rows_out``,
``outputs`` ({table: uri}) and ``summary`` (a few lines a person reads at the end).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from retrieval import config as config_mod
from retrieval import metrics as metrics_mod
from retrieval.spark_tables import TableError
from retrieval.tracking import Tracker

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

StageFn = Callable[["SparkSession", config_mod.Config], dict[str, Any]]
log = logging.getLogger(__name__)


def parser(stage: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"./submit.sh {stage}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML config (default: built-in defaults = conf/local.yaml's values)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. --set synth.sessions=100000",
    )
    return p


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("py4j", "py4j.clientserver", "py4j.java_gateway", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(
    spark: SparkSession,
    cfg: config_mod.Config,
    stage: str,
    run: StageFn,
    source: str | None = None,
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    """Runs one stage, times it, writes its metrics and the config it used, and tracks it (MLflow)."""
    log.info("stage %s: start (root %s)", stage, cfg.paths.root)
    tracker = tracker or Tracker(cfg)
    try:
        with metrics_mod.timed() as t:
            result = run(spark, cfg)
    except Exception as e:
        tracker.log_failure(stage, e)
        raise
    result = {**result, "seconds": t["seconds"]}
    result["metrics_path"] = metrics_mod.write_stage_metrics(cfg, stage, result, source)
    result["config"] = metrics_mod.config_path(cfg.paths.root, stage)
    result["tracking_run"] = tracker.log_stage(stage, result, source)
    return result


def summary(stage: str, result: dict[str, Any]) -> str:
    lines = [f"== {stage}: {result.get('rows_out', 0):,} rows out in {result['seconds']:.1f} s"]
    for line in result.get("summary", []):
        lines.append(f"   {line}")
    for name, uri in result.get("outputs", {}).items():
        lines.append(f"   wrote {name:<22} {uri}")
    lines.append(f"   metrics {result['metrics_path']}")
    if result.get("tracking_run"):
        lines.append(f"   tracked as MLflow run {result['tracking_run']}")
    return "\n".join(lines)


def load_config(
    stage: str, doc: str | None, argv: Sequence[str] | None
) -> tuple[config_mod.Config, str | None]:
    args = parser(stage, doc).parse_args(argv)
    try:
        return config_mod.load(args.config, args.set), args.config
    except config_mod.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def job_main(stage: str, run: StageFn, doc: str | None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of a single-stage job: options -> config -> Spark -> run -> metrics -> summary."""
    setup_logging()
    cfg, source = load_config(stage, doc, argv)
    from retrieval.spark import get_spark

    spark = get_spark(cfg, stage)
    try:
        result = run_stage(spark, cfg, stage, run, source)
    except (TableError, config_mod.ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(summary(stage, result), flush=True)
    return result
