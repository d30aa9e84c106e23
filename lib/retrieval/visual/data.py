"""Rows of the visual tables, built from images (pure; the Spark jobs map these over partitions).

- a training group: one product's shop photos (PNG) and its synthetic street photos, ``per_style`` of
  each style (JPEG), backgrounds from the natural photos' training part;
- a test query: one street photo of a held-out product (blend and background drawn at random per
  query, backgrounds from the natural photos' test part).

Every photo is drawn from a generator seeded by (run seed, product, what, index): the same inputs give
the same bytes on any machine, so a re-run (or a retried Spark task) writes identical rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from retrieval.visual.images import encode
from retrieval.visual.street import StreetStyle, object_mask, street_photo
from retrieval.visual.train import STYLES, style_column


def rng_for(seed: int, label: int, *what: int) -> np.random.Generator:
    label = int(label) & 0xFFFFFFFFFFFFFFFF
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, label & 0xFFFFFFFF, label >> 32, *what])


def train_group(label: int, shots: list[np.ndarray], seed: int, per_style: int) -> dict[str, Any]:
    """The training row of one product: its shop photos and ``per_style`` street photos of each style."""
    row: dict[str, Any] = {"label": int(label), "shop": [encode(s, "PNG") for s in shots]}
    masks = [object_mask(s) for s in shots]
    for si, style in enumerate(STYLES):
        blend, background = style.split("_")
        photos = []
        for j in range(per_style):
            rng = rng_for(seed, label, 1, si, j)
            k = int(rng.integers(len(shots)))
            img = street_photo(shots[k], rng, StreetStyle(blend, background, "train"), masks[k])
            photos.append(encode(img, "JPEG", 92))
        row[style_column(style)] = photos
    return row


def test_query(label: int, shot: np.ndarray, seed: int, index: int = 0) -> bytes:
    """A street photo of a held-out product (JPEG): any blend, any background, test backgrounds."""
    rng = rng_for(seed, label, 2, index)
    return encode(street_photo(shot, rng, StreetStyle("mixed", "mixed", "test")), "JPEG", 92)
