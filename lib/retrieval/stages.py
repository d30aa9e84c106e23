"""The stage registry: every stage, the job that runs it, the tables and artifacts it reads and writes,
and whether it needs a GPU. The one list the rest is derived from:

- the pipeline's order (``jobs/pipeline.py``: the stages with ``pipeline=True``, in this order);
- the dependencies between stages (a stage depends on the writers of what it reads), which the
  Airflow DAGs use (``deploy/airflow/retrieval_dags.py`` holds a generated copy, since Airflow's
  environment cannot import the project: ``python -m retrieval.stages airflow`` prints it, and a test
  checks that the copy is in sync);
- the report's stage list, and which Spark applications ask for GPUs (``retrieval.spark``).

Pure Python: names only. A table name is a contract of ``retrieval.tables``; an artifact is a
directory under ``paths.root`` that is not a table (``models/encoder``, ``index``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Directories under paths.root that stages write and read besides the tables.
ARTIFACTS = (
    "models/position_bias",
    "models/encoder",
    "models/encoder_content",
    "models/ranker",
    "models/reranker",
    "models/visual",
    "index",
    "visual_index",
    "report",
    "sessions",
    "benchmarks",
)


@dataclass(frozen=True)
class Stage:
    name: str  # the stage, and its job: jobs/<name>.py
    reads: tuple[str, ...] = ()  # tables and artifacts it needs
    writes: tuple[str, ...] = ()  # tables and artifacts it writes
    gpu: bool = False  # its application asks for GPUs (training, batch inference)
    pipeline: bool = True  # one of `./submit.sh pipeline`'s stages (and the weekly DAG's)
    optional_reads: tuple[str, ...] = ()  # read when they exist (ground truth, for metrics): not a dependency
    reads_metrics: bool = False  # reads every earlier pipeline stage's _metrics (the report)
    # the config sections (and top-level keys) it reads beside paths, spark and tracking: its --help
    # lists their keys with their defaults (tests/test_package.py checks the job module against it)
    config: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return f"jobs.{self.name}"

    def run_function(self) -> Callable[..., dict[str, Any]]:
        """The job's ``run(spark, cfg) -> metrics``."""
        fn: Callable[..., dict[str, Any]] = importlib.import_module(self.module).run
        return fn


STAGES: tuple[Stage, ...] = (
    Stage(
        "generate",
        writes=("raw/offers", "raw/events", "truth/offer_product", "truth/relevance", "truth/examination"),
        config=("synth", "seed"),
    ),
    Stage(
        "ingest",
        reads=("raw/offers", "raw/events"),
        writes=("offers", "events", "quarantine/offers", "quarantine/events"),
        config=("ingest",),
    ),
    Stage(
        "mine_pairs",
        reads=("events",),
        writes=("pairs",),
        optional_reads=("truth/offer_product",),
        config=("pairs", "split"),
    ),
    Stage(
        "mine_listings",
        reads=("events", "offers"),
        writes=("listings", "models/position_bias"),
        optional_reads=("truth/examination",),
        config=("listings", "split", "seed"),
    ),
    Stage(
        "train_encoder",
        reads=("offers", "pairs"),
        writes=(
            "encoder/offer_features",
            "encoder/train_examples",
            "encoder/uniform_pool",
            "models/encoder",
            "models/encoder_content",
        ),
        optional_reads=("truth/offer_product",),
        gpu=True,
        config=("encoder", "training", "seed", "progress_s"),
    ),
    Stage(
        "embed_offers",
        reads=("offers", "pairs", "models/encoder"),
        writes=("embeddings", "embeddings_delta"),
        gpu=True,
        config=("embed", "encoder", "recs"),
    ),
    Stage(
        "build_index",
        reads=("embeddings", "embeddings_delta"),
        writes=("index",),
        config=("index", "recs", "seed"),
    ),
    Stage(
        "precompute_recs",
        reads=("index", "offers", "embeddings", "embeddings_delta", "pairs"),
        writes=("recs",),
        optional_reads=("recs", "truth/offer_product"),
        config=("recs", "index", "encoder", "seed"),
    ),
    Stage(
        "train_ranker",
        reads=("listings", "offers", "models/encoder"),
        writes=(
            "ranker/train_slates",
            "ranker/test_slates",
            "ranker/test_scored",
            "models/ranker",
            "models/reranker",
        ),
        gpu=True,
        optional_reads=("truth/relevance",),
        config=("ranker", "training", "encoder", "seed", "progress_s"),
    ),
    Stage(
        "visual_pairs",
        reads=("offers",),
        writes=("visual/images", "visual/quarantine", "visual/train_groups", "visual/test_queries"),
        config=("visual", "training", "seed"),
    ),
    Stage(
        "train_visual",
        reads=("visual/train_groups",),
        writes=("models/visual",),
        gpu=True,
        config=("visual", "training", "seed"),
    ),
    Stage(
        "embed_images",
        reads=("visual/images", "visual/test_queries", "models/visual"),
        writes=("visual/embeddings", "visual_index"),
        gpu=True,
        config=("visual", "training", "seed"),
    ),
    Stage(
        "evaluate_visual",
        reads=("visual/images", "visual/test_queries", "models/visual"),
        writes=("report",),
        gpu=True,
        config=("visual", "training", "seed"),
    ),
    Stage(
        "evaluate",
        writes=("report",),
        optional_reads=("offers", "pairs", "recs", "ranker/test_scored", "truth/offer_product"),
        reads_metrics=True,
        config=("report", "recs", "encoder", "seed", "progress_s"),
    ),
    # Commands of their own, outside the pipeline.
    Stage(
        "eval_sessions",
        writes=("sessions", "benchmarks"),
        gpu=True,
        pipeline=False,
        config=("sessions", "training", "seed", "progress_s"),
    ),
    Stage("eval_ltr", writes=("benchmarks",), pipeline=False, config=("ltr", "ranker", "training", "seed")),
    # to the serving store (serving.redis_url)
    Stage("publish_recs", reads=("recs",), pipeline=False, config=("serving",)),
    Stage("check_cluster", gpu=True, pipeline=False, config=("training", "encoder")),
)

BY_NAME = {s.name: s for s in STAGES}
# the jobs that are not stages (they write nothing a stage reads), and the config they read
JOB_CONFIG = {"lookup": ("serving", "recs"), "lock": (), "pipeline": ()}


def job_config(job: str) -> tuple[str, ...]:
    """The config sections and keys ``jobs/<job>.py`` reads beside paths, spark and tracking (the
    pipeline: every stage's)."""
    if job == "pipeline":
        return tuple(dict.fromkeys(k for s in pipeline_stages() for k in s.config))
    return BY_NAME[job].config if job in BY_NAME else JOB_CONFIG.get(job, ())


def get(name: str) -> Stage:
    """The stage called ``name``; ValueError naming the known ones otherwise."""
    if name not in BY_NAME:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def pipeline_stages() -> list[Stage]:
    """The pipeline's stages, in the order it runs them."""
    return [s for s in STAGES if s.pipeline]


def gpu_applications() -> frozenset[str]:
    """Spark applications that ask for GPUs: the GPU stages, and the pipeline (one application for all)."""
    return frozenset({s.name for s in STAGES if s.gpu} | {"pipeline"})


def dependencies() -> dict[str, list[str]]:
    """Pipeline stage -> the earlier pipeline stages that write what it reads, leaving out any that is
    already upstream through another one (the transitive reduction), in pipeline order."""
    order = pipeline_stages()
    names = [s.name for s in order]
    writer: dict[str, str] = {}
    for s in order:
        for out in s.writes:
            writer.setdefault(out, s.name)  # the first writer; later writers (evaluate: report) rewrite it
    direct: dict[str, set[str]] = {}
    for i, s in enumerate(order):
        before = set(names[:i])
        wanted = {writer[r] for r in s.reads if r in writer} & before
        if s.reads_metrics:
            wanted |= before
        direct[s.name] = wanted
    upstream: dict[str, set[str]] = {}
    for name in names:  # every stage's ancestors, in order
        upstream[name] = set().union(*({d} | upstream[d] for d in direct[name])) if direct[name] else set()
    reduced = {}
    for name in names:
        keep = {d for d in direct[name] if not any(d in upstream[o] for o in direct[name] if o != d)}
        reduced[name] = sorted(keep, key=names.index)
    return reduced


def select(start: str | None = None, only: str | None = None) -> list[Stage]:
    """The pipeline stages a run takes: all; from ``start`` on (``--from``); or the comma-separated
    ``only`` ones (``--only``), in pipeline order. ValueError naming an unknown stage."""
    stages = pipeline_stages()
    names = [s.name for s in stages]
    if start and only:
        raise ValueError("give --from or --only, not both")
    if start:
        if start not in names:
            raise ValueError(f"--from {start}: not a pipeline stage; stages: {', '.join(names)}")
        return stages[names.index(start) :]
    if only:
        wanted = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown or not wanted:
            raise ValueError(f"--only {only}: unknown {unknown or 'nothing'}; stages: {', '.join(names)}")
        return [s for s in stages if s.name in wanted]
    return stages


AIRFLOW_BEGIN = (
    "# --- generated by `python -m retrieval.stages airflow` (lib/retrieval/stages.py); do not edit ---"
)
AIRFLOW_END = "# --- end of the generated block ---"


def airflow_block() -> str:
    """The DAG file's generated block: the pipeline stages' dependencies as a literal."""
    lines = [AIRFLOW_BEGIN, "STAGE_DEPS = {"]
    lines += [f"    {name!r}: {deps!r}," for name, deps in dependencies().items()]
    lines += ["}", AIRFLOW_END]
    return "\n".join(lines).replace("'", '"')


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["airflow"]:
        print(airflow_block())
        return 0
    if not args:
        for s in STAGES:
            deps = dependencies().get(s.name)
            print(f"{s.name:<16} {'gpu ' if s.gpu else '    '}{'after ' + ', '.join(deps) if deps else ''}")
        return 0
    print("usage: python -m retrieval.stages [airflow]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
