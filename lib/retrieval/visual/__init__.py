"""Visual search, pure parts (numpy, scipy, Pillow, torch; no Spark).

- :mod:`.images`: decode/encode, resize, float arrays (H, W, 3) in [0, 1].
- :mod:`.render`: the synthetic catalogue's product photos, drawn from an offer's ``image_ref``.
- :mod:`.street`: synthetic "street" photos: object mask, Poisson (seamless) or blurred-mask blending
  onto natural or uniform-texture backgrounds, with seeded geometric and photometric augmentations.
- :mod:`.filtering`: unusable (blank) images and near-duplicates (perceptual hash).
- :mod:`.model`: the image encoder, triplet loss with batch-hard / semi-hard mining, baselines and
  accuracy@K.
"""
