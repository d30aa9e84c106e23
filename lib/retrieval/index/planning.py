"""Choosing an index for a set of vectors (pure): the faiss factory string for n vectors."""

from __future__ import annotations

import math


def factory_for(n: int) -> str:
    """Flat for small sets; IVF with ~4 sqrt(n) lists (a power of two, at least 39 training vectors
    per list, faiss's minimum) above."""
    nlist = int(2 ** round(math.log2(max(1.0, 4 * math.sqrt(n)))))
    return "Flat" if n < 39 * 64 else f"IVF{min(nlist, n // 39)},Flat"
