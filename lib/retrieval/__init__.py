"""retrieval-at-scale: candidate generation and ranking for a marketplace, as Spark batch jobs.

The plan: ``config`` (typed sections) -> a job of ``jobs/`` (thin: read, call, write, report; the
stages and their order are ``stages``' registry) -> a package's Spark glue (``*/spark_*.py``) -> its
pure modules (numpy/torch/faiss), which import without Spark. What every training shares is
``training``. DESIGN.md has the flow, the table contracts and the layout.
"""

from typing import Any

__version__ = "0.1.0"


def run(
    stage: str,
    spark: Any = None,
    config: Any = None,
    overrides: Any = None,
    start: str | None = None,
    only: str | None = None,
) -> Any:
    """Runs one stage, or ``"pipeline"``, in this Python process: from a notebook, or any driver
    program that already has a Spark session. It does what ``retrieval submit <stage>`` does, less
    spark-submit: the root's lock, one commit per stage, metrics, the config written beside the
    output, MLflow tracking.

        from retrieval import run
        metrics = run("mine_pairs", spark=spark, config="conf/test.yaml",
                      overrides={"paths.root": "/tmp/run1", "pairs.window": 8})
        every = run("pipeline", spark=spark, config="test", only="generate,ingest,mine_pairs")

    Args:
        stage: a stage of the registry (``retrieval.stages``), or ``"pipeline"``.
        spark: the session to run on; None makes one from the config's ``spark`` section.
        config: a YAML path (``conf/test.yaml``, or a shipped config's name: ``test``), a loaded
            ``retrieval.config.Config``, or None for the embedded default (``local.yaml``).
        overrides: ``{"section.key": value}`` or ``["section.key=value", ...]``, applied in order.
        start, only: for ``"pipeline"``: start at a stage, or run only these (comma-separated).

    Returns:
        The stage's metrics dict (``pipeline``: a list of them, one per stage).
    """
    from retrieval.runner import run as _run

    return _run(stage, spark, config, overrides, start, only)
