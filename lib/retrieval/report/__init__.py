"""The evaluation report: one self-contained HTML page of every stage's results.

- :mod:`.sections` (pure): every section from the stages' metrics dicts and a few gathered examples.
- :mod:`.html` (pure): the page; :mod:`.plots`: its matplotlib figures.
- :mod:`.inputs`: what the report reads besides tables (metrics, configs, benchmark files, images).
- :mod:`.spark_report`: the Spark parts (example carousels and listings, the popularity bias).
"""
