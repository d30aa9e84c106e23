"""Visual search, pure parts (numpy, scipy, Pillow, torch; no Spark) and their Spark glue.

- :mod:`.images`: decode/encode, resize, float arrays (H, W, 3) in [0, 1].
- :mod:`.render`: the synthetic catalogue's product photos, drawn from an offer's ``image_ref``.
- :mod:`.street`: synthetic "street" photos: object mask, Poisson (seamless) or blurred-mask blending
  onto natural or uniform-texture backgrounds, with seeded geometric and photometric augmentations.
- :mod:`.filtering`: unusable (blank) images and near-duplicates (perceptual hash).
- :mod:`.model`: the image encoder, the untrained baselines and accuracy@K; :mod:`.losses`: the
  triplet loss with in-batch mining (chosen by name, ``visual.loss``).
- :mod:`.train`: P x K batches and the training step; :mod:`.worker`: the training process.
- :mod:`.data`: rows of the visual tables; :mod:`.gallery`: what the visual stages share about a
  gallery (its signature, the unseen-models check, the benchmark file).
- Spark glue: :mod:`.spark_visual` (gallery, groups, queries, featurisation), :mod:`.spark_eval`
  (accuracy@K of every method, the example grid, queries through the image index).
"""
