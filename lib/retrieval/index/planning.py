"""Choosing an index for n vectors (pure), the way autofaiss does: a factory from the count and a
memory budget, and the smallest nprobe that reaches a target recall@10 against exact search.

- ``Flat`` below :data:`FLAT_BELOW` vectors (exact search costs little, an IVF index cannot be trained
  well: faiss wants >= 39 training vectors per list);
- above, ``IVF<nlist>,Flat`` with nlist the power of two nearest to ``lists_per_sqrt`` x sqrt(n) (and
  at most train / 39, rounded down to a power of two, where train = min(n, ``train_size``) is the
  sample the quantizer is trained on at the driver): a query scans nprobe / nlist of the vectors, so
  with nprobe fixed its cost grows with sqrt(n), not n, up to n ~ (train_size / 156)^2
  (1.6M vectors at the default 200k), beyond which raise ``train_size``;
- when the flat codes (4 x dim bytes a vector) do not fit ``memory_bytes``, product quantisation:
  ``IVF<nlist>,PQ<m>x8`` with m bytes a vector, the largest that fits (at least 8).

nprobe is chosen after the build, on the built index (:func:`choose_nprobe` over measured recalls).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

FLAT_BELOW = 39 * 64  # 2,496 vectors: faiss's 39 training points per list for 64 lists


@dataclass(frozen=True)
class IndexPlan:
    factory: str  # the faiss factory string
    nlist: int  # inverted lists (0 = Flat)
    train_size: int  # vectors to train the quantizer (and codebooks) on
    bytes_per_vector: int  # codes only (ids and lists' overhead aside)
    reason: str


def plan_index(
    n: int, dim: int, memory_bytes: int = 0, train_size: int = 200_000, lists_per_sqrt: float = 4.0
) -> IndexPlan:
    """The index for ``n`` vectors of ``dim`` floats within ``memory_bytes`` of codes (0 = no bound)."""
    if n < 1 or dim < 1:
        raise ValueError(f"need n >= 1 vectors of dim >= 1; got {n}, {dim}")
    if n < FLAT_BELOW:
        return IndexPlan("Flat", 0, 0, 4 * dim, f"{n:,} vectors: exact search")
    # the quantizer trains on the driver, on at most train_size vectors (the bound the config checks
    # against spark.driver.maxResultSize): the lists are as many as that sample can train
    train = min(n, train_size)
    nlist = int(2 ** round(math.log2(lists_per_sqrt * math.sqrt(n))))
    nlist = max(16, min(nlist, 2 ** int(math.log2(max(train // 39, 1)))))  # a power of two, >= 39 each
    flat = 4 * dim
    if memory_bytes and n * flat > memory_bytes:
        fits = memory_bytes // n
        m = max((x for x in (8, 16, 32, 64, 128) if x <= max(fits, 8) and dim % x == 0), default=8)
        return IndexPlan(
            f"IVF{nlist},PQ{m}x8",
            nlist,
            train,  # PQ's codebooks want >= 256 x 39 of them
            m,
            f"{n:,} x {flat} B flat codes > {memory_bytes:,} B: PQ, {m} B a vector; {nlist} lists ~ {lists_per_sqrt:g} sqrt(n)",
        )
    return IndexPlan(
        f"IVF{nlist},Flat", nlist, train, flat, f"{nlist} lists ~ {lists_per_sqrt:g} sqrt({n:,})"
    )


def nprobe_candidates(nlist: int) -> list[int]:
    """The nprobe values tried, smallest first: powers of two up to nlist."""
    out, p = [], 1
    while p < nlist:
        out.append(p)
        p *= 2
    return [*out, nlist] if nlist else [0]


def choose_nprobe(recalls: Mapping[int, float], target: float) -> int:
    """The smallest nprobe whose recall reaches ``target``; the best one when none does."""
    if not recalls:
        raise ValueError("no recall measured")
    reached = [p for p in sorted(recalls) if recalls[p] >= target]
    return reached[0] if reached else max(recalls, key=lambda p: (recalls[p], -p))


def factory_for(n: int) -> str:
    """The planned factory for ``n`` 64-d vectors without a memory bound (what the image index uses)."""
    return plan_index(n, 64).factory
