"""Airflow DAGs of the pipeline: a weekly full retrain and a daily incremental update of the recs.

Every task is one stage run as its own Spark application, the way a person runs it:

    <RETRIEVAL_HOME>/submit.sh <stage> --config <RETRIEVAL_CONFIG> [--set section.key=value ...]

so a failed stage is retried alone, and its tables, `_metrics/<stage>.json` and logs are those of a
manual run. This file imports nothing of the project (Airflow's environment has no pyspark, torch or
faiss): the workers only need the checkout at RETRIEVAL_HOME, whose submit.sh makes its .venv on first
use. Drop the file into Airflow's dags folder (Airflow 3; Airflow 2.9+ parses it too).

Environment, read when the file is parsed:
  RETRIEVAL_HOME             the checkout on the workers (default /opt/retrieval, where conf/cluster.yaml
                             expects deploy/get_gpus_resources.sh)
  RETRIEVAL_CONFIG           the config, absolute or relative to RETRIEVAL_HOME (default conf/cluster.yaml)
  RETRIEVAL_SET              overrides for every task, e.g. "paths.root=s3a://bucket/runs/main spark.master=yarn"
                             (split like a shell line; the DAG's own overrides come after them)
  RETRIEVAL_SYNTHETIC        1: the weekly retrain starts with `generate`, the embedded synthetic marketplace
                             (a demo). Otherwise it starts with `ingest`: a real marketplace's raw/offers and
                             raw/events come from its log export, and generating would overwrite them.
  RETRIEVAL_PARALLEL_STAGES  stages of the weekly retrain that may run at once (default 1). conf/cluster.yaml
                             gives every training stage all executor GPUs (train.num_processes =
                             visual.num_processes = spark.num_executors): two training stages side by side
                             compete for them, and a barrier stage that cannot get all its slots at once
                             fails. Raise it where the cluster holds several applications (YARN queues,
                             Kubernetes).

DAGs (times in UTC):
  retrieval_weekly_retrain  Sundays 03:00: every stage of jobs/pipeline.STAGES in full mode, each after
                            the stages whose tables or models it reads (STAGE_DEPS). Its full build_index
                            writes a new index version from all embeddings, which drops the delta shards
                            of the daily updates: there is no separate compaction DAG (recs.mode=compact).
  retrieval_daily_update    Monday to Saturday 04:00: ingest, then embed_offers -> build_index ->
                            precompute_recs with recs.mode=incremental. Not on Sundays: the retrain then
                            rewrites the same tables (offers, embeddings, index, recs) and two writers on one
                            root would race; its full rebuild covers the day.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta, timezone

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.9+: no airflow.sdk
    from airflow import DAG
    from airflow.operators.bash import BashOperator

HOME = os.environ.get("RETRIEVAL_HOME", "/opt/retrieval")
CONFIG = os.environ.get("RETRIEVAL_CONFIG", "conf/cluster.yaml")
EXTRA_SETS = shlex.split(os.environ.get("RETRIEVAL_SET", ""))
SYNTHETIC = os.environ.get("RETRIEVAL_SYNTHETIC", "") == "1"
PARALLEL_STAGES = int(os.environ.get("RETRIEVAL_PARALLEL_STAGES", "1"))

# Stage -> the stages that write what it reads, in jobs/pipeline.STAGES order. A dependency that is
# already upstream through another one is left out (embed_offers also reads ingest's offers and
# mine_pairs' pairs, both upstream of train_encoder). evaluate_visual reads the models and the
# visual_pairs tables, not embed_images' index, so the two run side by side; evaluate reads every
# stage's _metrics. tests/test_airflow_dag.py checks this against jobs/pipeline.STAGES.
STAGE_DEPS = {
    "generate": [],
    "ingest": ["generate"],
    "mine_pairs": ["ingest"],
    "mine_listings": ["ingest"],
    "train_encoder": ["mine_pairs"],
    "embed_offers": ["train_encoder"],
    "build_index": ["embed_offers"],
    "precompute_recs": ["build_index"],
    "train_ranker": ["mine_listings", "train_encoder"],
    "visual_pairs": ["ingest"],
    "train_visual": ["visual_pairs"],
    "embed_images": ["train_visual"],
    "evaluate_visual": ["train_visual"],
    "evaluate": ["precompute_recs", "train_ranker", "embed_images", "evaluate_visual"],
}

# Per-stage --set overrides of the weekly retrain. Of the training stages only train_encoder has a
# config key to resume (train.resume; it already resumes inside the job when a training process dies,
# train.retries): on an Airflow retry it goes on from the last epoch's checkpoint of the same model
# version. Not on the first try: the version is a hash of the config and the number of examples, so a
# new week's data could match an old model's version and resume its finished checkpoints. train_visual and train_ranker have no such
# key and train again from the start.
RETRAIN_SETS = {"train_encoder": ["train.resume={{ (ti.try_number > 1) | lower }}"]}

DAILY_STAGES = ["ingest", "embed_offers", "build_index", "precompute_recs"]
# recs.since: offers updated since the day the last successful update started. Not {{ ds }} or
# data_interval_start: on Airflow 3 a cron schedule has no data interval (both are the run's own
# date, so a day of updates would be missed), and after a failed day the next run must also pick up
# the failed day's updates. The day boundary, hours before the last run read raw/offers, keeps rows
# that reached the export late. The first run goes back a week, to before the last weekly retrain.
INCREMENTAL_SETS = [
    "recs.mode=incremental",
    "recs.since={{ (prev_start_date_success or dag_run.start_date - macros.timedelta(days=7)) | ds }}",
]

DEFAULT_ARGS = {"retries": 2, "retry_delay": timedelta(minutes=10)}
# timezone.utc, not datetime.UTC: Airflow's Python may be older than ours (3.8 runs Airflow 2.9)
START = datetime(2026, 1, 1, tzinfo=timezone.utc)  # noqa: UP017


def command(stage: str, sets: list[str]) -> str:
    """The shell line that runs ``stage`` (Jinja templates in ``sets`` are rendered by Airflow)."""
    args = [os.path.join(HOME, "submit.sh"), stage, "--config", CONFIG]
    for assignment in [*EXTRA_SETS, *sets]:
        args += ["--set", assignment]
    return shlex.join(args)


def weekly_stages() -> dict[str, list[str]]:
    """STAGE_DEPS without `generate` unless RETRIEVAL_SYNTHETIC=1."""
    stages = {s: deps for s, deps in STAGE_DEPS.items() if SYNTHETIC or s != "generate"}
    return {s: [d for d in deps if d in stages] for s, deps in stages.items()}


with DAG(
    dag_id="retrieval_weekly_retrain",
    description="every stage of the pipeline in full mode: retrain, re-embed, rebuild the index and recs",
    schedule="0 3 * * 0",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    max_active_tasks=PARALLEL_STAGES,
    default_args=DEFAULT_ARGS,
    tags=["retrieval"],
    doc_md=__doc__,
) as weekly_retrain:
    graph = weekly_stages()
    tasks = {s: BashOperator(task_id=s, bash_command=command(s, RETRAIN_SETS.get(s, []))) for s in graph}
    for stage, deps in graph.items():
        tasks[stage].set_upstream([tasks[d] for d in deps])

with DAG(
    dag_id="retrieval_daily_update",
    description="new and changed offers: ingest, then embed, index and recompute recs incrementally",
    schedule="0 4 * * 1-6",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["retrieval"],
    doc_md=__doc__,
) as daily_update:
    previous = []
    for stage in DAILY_STAGES:
        task = BashOperator(
            task_id=stage, bash_command=command(stage, [] if stage == "ingest" else INCREMENTAL_SETS)
        )
        task.set_upstream(previous)
        previous = [task]
