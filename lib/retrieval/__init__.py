"""retrieval-at-scale: candidate generation and ranking for a marketplace, as Spark batch jobs.

Pure modules (numpy/torch/faiss) import without Spark; only ``spark.py`` and ``*/spark_*.py`` import
pyspark. See DESIGN.md in the docs for the flow and the table contracts.
"""

__version__ = "0.1.0"
