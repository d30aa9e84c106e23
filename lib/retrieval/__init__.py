"""retrieval-at-scale: candidate generation and ranking for a marketplace, as Spark batch jobs.

The plan: ``config`` (typed sections) -> a job of ``jobs/`` (thin: read, call, write, report; the
stages and their order are ``stages``' registry) -> a package's Spark glue (``*/spark_*.py``) -> its
pure modules (numpy/torch/faiss), which import without Spark. What every training shares is
``training``. DESIGN.md has the flow, the table contracts and the layout.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``retrieval.run`` (``retrieval.runner.run``), imported on first use: importing the package stays
    cheap for the executors and training processes that import it."""
    if name == "run":
        from retrieval.runner import run

        return run
    raise AttributeError(f"module 'retrieval' has no attribute {name!r}")
