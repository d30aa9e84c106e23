"""retrieval-at-scale: candidate generation and ranking for a marketplace, as Spark batch jobs.

The plan: ``config`` (typed sections) -> a job of ``jobs/`` (thin: read, call, write, report; the
stages and their order are ``stages``' registry) -> a package's Spark glue (``*/spark_*.py``) -> its
pure modules (numpy/torch/faiss), which import without Spark. What every training shares is
``training``. DESIGN.md has the flow, the table contracts and the layout.
"""

__version__ = "0.1.0"
