"""Filtering and de-duplication of catalogue images before they make training pairs or a gallery.

- unusable: an image that is nearly blank (almost no contrast) or whose object cannot be cut from its
  background (empty mask, or one covering nearly the whole frame: not a studio shot);
- near-duplicates: the same photo uploaded twice (re-encoded, resized). The signature is an 8x8 colour
  thumbnail (192 values); two images are duplicates when the RMS difference of their thumbnails is
  below ``max_rms`` (0.01 by default: re-encoded copies measured <= 0.007 on the real and the
  synthetic catalogue, different synthetic products >= 0.017). A grey difference hash (dHash) was
  tried first and rejected: it cannot tell flat-coloured products with the same silhouette apart.
  Candidates are found with random-hyperplane LSH (a few tables of a few bits on the centred
  thumbnail; copies share a bucket with probability > 0.9999), checked exactly inside each bucket,
  and grouped with union-find; each group keeps its smallest id. The bucketing is what a Spark job
  distributes (group by (table, key)); only the few duplicate pairs reach the driver.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from retrieval.visual.images import resize
from retrieval.visual.street import object_mask

THUMB = 8


def thumbnail(img: np.ndarray) -> np.ndarray:
    """The 8x8 colour thumbnail (192 float32 values in [0, 1]): the near-duplicate signature."""
    return resize(img, THUMB).reshape(-1).astype(np.float32)


def unusable_reason(img: np.ndarray, min_std: float = 0.02, min_object: float = 0.02) -> str | None:
    """Why an image cannot serve (``"blank"``, ``"no_object"``), or None when it can."""
    if float(img.std()) < min_std:
        return "blank"
    if object_mask(resize(img, 64)).mean() < min_object:
        return "no_object"
    return None


def lsh_keys(thumbs: np.ndarray, tables: int = 4, bits: int = 12, seed: int = 0) -> np.ndarray:
    """(N, tables) bucket keys: the signs of ``bits`` random projections of each centred thumbnail."""
    rng = np.random.default_rng(seed)
    planes = rng.normal(size=(tables, thumbs.shape[1], bits)).astype(np.float32)
    centred = thumbs - thumbs.mean(axis=1, keepdims=True)
    signs = np.einsum("nd,tdb->ntb", centred, planes) > 0
    return (signs * (1 << np.arange(bits))).sum(axis=2).astype(np.int64)


def close_pairs(ids: Sequence[int], thumbs: np.ndarray, max_rms: float = 0.01) -> list[tuple[int, int]]:
    """Every pair of ``ids`` (one bucket) whose thumbnails are within ``max_rms``."""
    if len(ids) < 2:
        return []
    diff = thumbs[:, None, :] - thumbs[None, :, :]
    rms = np.sqrt((diff * diff).mean(axis=2))
    a, b = np.nonzero(np.triu(rms <= max_rms, k=1))
    return [(int(ids[i]), int(ids[j])) for i, j in zip(a.tolist(), b.tolist(), strict=True)]


def groups(pairs: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Union-find over duplicate pairs: ``{removed id: kept id}``, the kept id the group's smallest."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {i: find(i) for i in list(parent) if find(i) != i}


def duplicate_of(
    ids: Sequence[int], thumbs: np.ndarray, max_rms: float = 0.01, tables: int = 4, bits: int = 12
) -> dict[int, int]:
    """In memory, the whole procedure: ``{removed id: kept id}`` over a set of images."""
    keys = lsh_keys(thumbs, tables, bits)
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for row in range(len(ids)):
        for t in range(keys.shape[1]):
            buckets[(t, int(keys[row, t]))].append(row)
    ids_arr = np.asarray(ids)
    pairs: set[tuple[int, int]] = set()
    for rows in buckets.values():
        if len(rows) > 1:
            pairs.update(close_pairs(ids_arr[rows].tolist(), thumbs[rows], max_rms))
    return groups(pairs)
