"""The two-tower offer encoder: features, model, losses (pure torch/numpy; Spark glue lives in spark_*.py)."""
