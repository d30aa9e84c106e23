"""The two-tower offer encoder: its model, its loss and its training step (pure torch/numpy).

- :mod:`.features`: hashed title words, character n-grams, category, price bucket, seller, offer id.
- :mod:`.model`: the tower (one for both sides, shared weights; ``TowerConfig`` extends the config's
  ``EncoderHyper``), the session pool, ``text_vectors`` (what the reranker compares query and title in).
- :mod:`.losses`: sampled softmax over in-batch negatives with logQ correction, one module per loss.
- :mod:`.train`: the training step and its batches; :mod:`.worker`: the function every training
  process runs; :mod:`.sessions`: session queries (every prefix -> the next offer).
- Spark glue: :mod:`.spark_encoder` (features and training examples), :mod:`.spark_embed` (batch
  inference), :mod:`.spark_eval` (Recall@K against the baselines of ``retrieval.spark_evaluation``).

What every training shares (feeds, the epoch loop, checkpoints, launch) is ``retrieval.training``.
"""
