"""Sharded faiss indices and recommendation tables.

- :mod:`.shards` (pure): train one quantizer, add per shard, search, merge per-shard top-K, manifest.
- :mod:`.recs` (pure): the carousel rules (self and same product removed, products collapsed,
  category cap) and precompute_recs' metrics.
- :mod:`.planning` (pure): the index type for n vectors.
- Spark glue: :mod:`.spark_index` (shards where the embeddings are, query blocks x shards, the recs
  table), :mod:`.spark_build` (a new version, a delta generation, the commit, the recall check),
  :mod:`.spark_incremental` (which carousels a day of changed offers touches).
"""
