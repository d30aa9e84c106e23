"""What every job in ``jobs/`` shares: options, config, Spark, timing, metrics, the closing summary.

A job module defines ``run(spark, cfg) -> metrics`` and ends with ``job_main("<stage>", run, __doc__)``.
``run`` returns the stage's metrics dict: the stage keys of the metrics contract, ``rows_out``,
``outputs`` ({table: uri}) and ``summary`` (a few lines a person reads at the end).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from retrieval import commit, config, runlock, stage_metrics, stages
from retrieval.progress import SparkProgress
from retrieval.spark_tables import TableError
from retrieval.tracking import Tracker

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

StageFn = Callable[["SparkSession", config.Config], dict[str, Any]]
log = logging.getLogger(__name__)


def parser(stage: str, doc: str | None) -> argparse.ArgumentParser:
    from retrieval.config.keys import help_epilog

    p = argparse.ArgumentParser(
        prog=f"./submit.sh {stage}",
        description=doc,
        epilog=help_epilog(stages.job_config(stage)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        help="YAML config (default: the built-in defaults; conf/local.yaml is what submit.sh passes)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. --set synth.sessions=100000",
    )
    p.add_argument(
        "--run-group",
        metavar="ID",
        help=f"the run group whose lock this run joins (default: ${runlock.GROUP_ENV}; submit.sh passes it "
        "to a driver in cluster deploy mode, where the environment does not follow)",
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
    cfg: config.Config,
    stage: str,
    run: StageFn,
    source: str | None = None,
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    """Runs one stage, times it, writes its metrics and the config it used, and tracks it (MLflow).

    The stage holds the root's lock (``runlock``; a pipeline run's stages share it) and writes in one
    transaction (``commit``): its tables, indices and models commit together when it succeeds."""
    log.info("stage %s: start (root %s)", stage, cfg.paths.root)
    # every Spark job of the stage carries its name (the UI, the event log: what each stage costs)
    spark.sparkContext.setJobGroup(stage, f"stage {stage}")
    tracker = tracker or Tracker(cfg)
    try:
        # SparkProgress: this stage's running Spark stages, logged as they go
        with (
            stage_metrics.timed() as t,
            writing(cfg),
            commit.transaction(cfg.paths.root, stage, join=False),
            SparkProgress(spark.sparkContext, stage, cfg.progress_s),
        ):
            result = run(spark, cfg)
    except Exception as e:
        tracker.log_failure(stage, e)
        raise
    result = {**result, "seconds": t["seconds"]}
    result["metrics_path"] = stage_metrics.write_stage_metrics(cfg, stage, result, source)
    result["config"] = stage_metrics.config_path(cfg.paths.root, stage)
    result["tracking_run"] = tracker.log_stage(stage, result, source)
    return result


@contextlib.contextmanager
def writing(cfg: config.Config) -> Iterator[None]:
    """Holds the lock of ``paths.root`` for the block (re-entrant: a pipeline holds it across its
    stages), and first finishes any commit a killed run left pending."""
    with runlock.hold(cfg.paths.root, cfg.paths.lock_stale_seconds):
        commit.recover(cfg.paths.root)  # taken or joined (a scheduler's run group took it)
        yield


def ensure_stage(
    spark: SparkSession, cfg: config.Config, stage: str, fresh: Callable[[dict[str, Any]], bool]
) -> bool:
    """Runs ``stage`` first (as a stage of its own: metrics, tracking) unless its last metrics under the
    root pass ``fresh``: a stage that needs another's output made from these settings gets it in one
    command. True if it ran."""
    try:
        made = stage_metrics.read_stage_metrics(cfg.paths.root, stage)
    except FileNotFoundError:
        made = None
    if made is not None and fresh(made):
        return False
    log.info(
        "%s's output under %s was made from other settings: running %s first", stage, cfg.paths.root, stage
    )
    run_stage(spark, cfg, stage, stages.get(stage).run_function())
    return True


def run_pipeline(
    cfg: config.Config,
    chosen: Sequence[stages.Stage],
    spark: SparkSession | None = None,
    source: str | None = None,
    echo: bool = False,
    tracker: Tracker | None = None,
) -> list[dict[str, Any]]:
    """Runs ``chosen`` stages in order, in one Spark application, under one lock and one tracked
    pipeline run (no other run slips in between); each stage as :func:`run_stage` runs it. Returns
    their metrics; ``echo`` prints each stage's summary as it ends. A :class:`TableError` carries the
    stage that met it (``.stage``)."""
    from retrieval.spark import get_spark

    tracker = tracker or Tracker(cfg)
    results = []
    with writing(cfg), tracker.pipeline():
        session = spark or get_spark(cfg, "pipeline")
        for stage in chosen:
            try:
                result = run_stage(session, cfg, stage.name, stage.run_function(), source, tracker)
            except TableError as e:
                e.stage = stage.name
                raise
            if echo:
                print(summary(stage.name, result), flush=True)
            results.append(result)
    return results


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


def pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """The pipeline's own options: where to start, or which stages to run."""
    names = ", ".join(s.name for s in stages.pipeline_stages())
    p.add_argument("--from", dest="start", metavar="STAGE", help=f"start at this stage (one of {names})")
    p.add_argument("--only", metavar="STAGE,...", help="run only these stages (in pipeline order)")


def load_config(
    stage: str,
    doc: str | None,
    argv: Sequence[str] | None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[config.Config, str | None, argparse.Namespace]:
    """Options -> (config, the config file given, the parsed options); a config error exits with 2."""
    p = parser(stage, doc)
    if add_arguments is not None:
        add_arguments(p)
    args = p.parse_args(argv)
    if args.run_group:
        os.environ[runlock.GROUP_ENV] = args.run_group
    try:
        return config.load(args.config, args.set), args.config, args
    except config.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def job_main(stage: str, run: StageFn, doc: str | None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of a single-stage job: options -> config -> Spark -> run -> metrics -> summary."""
    setup_logging()
    cfg, source, _ = load_config(stage, doc, argv)
    from retrieval.spark import get_spark

    try:
        with writing(cfg):  # before Spark starts: a second run on the root fails in a second
            result = run_stage(get_spark(cfg, stage), cfg, stage, run, source)
    except (TableError, config.ConfigError, FileNotFoundError, runlock.LockHeld) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(summary(stage, result), flush=True)
    return result
