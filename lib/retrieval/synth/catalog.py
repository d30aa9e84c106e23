"""The synthetic catalogue: products in a category tree, each sold as offers by several sellers.

Stateless by design: every attribute of product ``p`` (its category, cluster, brand, price, popularity,
offers) is a hash of ``(seed, p)``, so any Spark task can compute any product's attributes without a
shared table, and a 250M-offer catalogue is generated partition by partition. The only state is a
few small arrays (categories, popularity CDF). Structure that later stages are graded against:

- a *cluster* is a brand's model line (``products_per_cluster`` consecutive product ids): its products
  are close substitutes (variants by spec or colour);
- each leaf category has complement leaves (phone -> phone case), so sessions drift between clusters;
- product popularity is Zipf(``zipf_a``) by a random rank; offers per product are Zipf-distributed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from retrieval.config import SynthSection
from retrieval.synth import vocab

_U64 = np.uint64
MASK40 = (1 << 40) - 1

# Stream ids keep the hashes of different attributes independent.
S_LEAF_WEIGHT, S_BRAND, S_SERIES, S_COLOUR, S_PRICE, S_NOFFERS, S_SELLER, S_MISSING = range(1, 9)
S_TITLE, S_OFFER_PRICE, S_UPDATED, S_MISCAT, S_IMAGE, S_SHOT, S_SELLER_STYLE, S_BRAND_NAME = range(9, 17)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised: uint64 -> uint64 (wrapping arithmetic is intended).

    Computed on a 1-d view: numpy wraps array arithmetic silently, while 0-d (scalar) arithmetic
    would warn on overflow, and an ``errstate`` around every call costs more than the hash."""
    x = np.asarray(x, dtype=_U64)
    z = x.reshape(-1) + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return (z ^ (z >> _U64(31))).reshape(x.shape)


def hash64(seed: int, stream: int, *keys: np.ndarray | int) -> np.ndarray:
    """A 64-bit hash of ``(seed, stream, *keys)``; keys broadcast like numpy arrays."""
    h = mix64(np.asarray((seed * 1_000_003 + stream) & 0xFFFFFFFFFFFFFFFF, dtype=_U64))
    for k in keys:
        h = mix64(h ^ np.asarray(k, dtype=np.int64).astype(_U64))
    return h


def unit(seed: int, stream: int, *keys: np.ndarray | int) -> np.ndarray:
    """Uniform floats in [0, 1) from :func:`hash64`."""
    return (hash64(seed, stream, *keys) >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))


def normal(seed: int, stream: int, *keys: np.ndarray | int) -> np.ndarray:
    """Standard normal floats (Box-Muller over two hashed uniforms)."""
    u1 = unit(seed, stream, *keys, 1)
    u2 = unit(seed, stream, *keys, 2)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def format_ts(seconds: np.ndarray, start_date: str) -> list[str]:
    """Seconds after ``start_date`` (UTC midnight) -> ``YYYY-mm-dd HH:MM:SS.mmm`` strings, as logs write them."""
    start = np.datetime64(start_date, "ms")
    stamps = start + np.round(np.asarray(seconds, dtype=np.float64) * 1000).astype("timedelta64[ms]")
    return [str(x) for x in np.char.replace(np.datetime_as_string(stamps, unit="ms"), "T", " ")]


def zipf_cdf(n: int, a: float) -> np.ndarray:
    """CDF of a Zipf law over ranks 1..n: P(rank <= r) at index r-1. [n] float64."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -a
    cdf = np.cumsum(w)
    return np.asarray(cdf / cdf[-1])


def brand_name(seed: int, top: str, i: int) -> str:
    """A pronounceable pseudo-word, stable for (seed, top category, i)."""
    h = int(hash64(seed, S_BRAND_NAME, sum(map(ord, top)) * 1000 + i))
    n = 2 + h % 2
    parts = []
    for _ in range(n):
        h, r = divmod(h, len(vocab.SYLLABLES))
        parts.append(vocab.SYLLABLES[r])
    return "".join(parts)


@dataclass
class Catalog:
    """The catalogue implied by ``cfg`` and ``seed``; cheap to build in every task."""

    cfg: SynthSection
    seed: int
    brands_per_top: int = 24

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.n_products = cfg.products
        self.cluster_size = cfg.products_per_cluster
        self.n_clusters = math.ceil(cfg.products / cfg.products_per_cluster)
        self.leaves = vocab.LEAVES
        self.n_leaves = len(self.leaves)
        noun_index = {leaf.noun: i for i, leaf in enumerate(self.leaves)}
        self.complements = [[noun_index[n] for n in leaf.complements] for leaf in self.leaves]
        self.tops = sorted({leaf.top for leaf in self.leaves})
        self.leaf_top = np.array([self.tops.index(leaf.top) for leaf in self.leaves])
        # Clusters are laid out leaf by leaf; a leaf's share of clusters is log-normally uneven, like a
        # real catalogue where there are many more phone cases than tents.
        w = np.exp(1.0 * normal(self.seed, S_LEAF_WEIGHT, np.arange(self.n_leaves)))
        counts = self._allocate(self.n_clusters, w)
        self.leaf_cluster_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.brands = [
            [brand_name(self.seed, top, i) for i in range(self.brands_per_top)] for top in self.tops
        ]
        # popularity: product p has rank (p * A + B) mod P, a permutation with A coprime to P
        self._rank_a, self._rank_b = self._affine_permutation(self.n_products)
        self._rank_a_inv = pow(self._rank_a, -1, self.n_products) if self.n_products > 1 else 0
        self.offer_count_cdf = zipf_cdf(cfg.max_offers_per_product, cfg.offers_per_product_a)
        self.seller_cdf = zipf_cdf(cfg.sellers, 1.0)

    @staticmethod
    def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
        """Splits ``total`` items over bins proportionally to ``weights``, >= 1 each when possible."""
        n = len(weights)
        base = 1 if total >= n else 0
        rest = total - base * n
        share = weights / weights.sum() * rest
        counts = np.floor(share).astype(np.int64)
        remainder = rest - counts.sum()
        order = np.argsort(-(share - counts), kind="stable")
        counts[order[:remainder]] += 1
        return np.asarray(counts + base)

    @cached_property
    def _offer_scramble(self) -> tuple[np.uint64, np.uint64]:
        """offer_id's multiplier (odd: a bijection mod 2^40) and mask."""
        mult = _U64((int(hash64(self.seed, 98, 1)) & 0xFFFFFF) | 1)
        return mult, _U64(int(hash64(self.seed, 98, 2)) & MASK40)

    def _affine_permutation(self, n: int) -> tuple[int, int]:
        if n <= 1:
            return 1, 0
        a = int(hash64(self.seed, 99, 1)) % n
        a = max(a, 1)
        while math.gcd(a, n) != 1:
            a = a + 1 if a + 1 < n else 1
        b = int(hash64(self.seed, 99, 2)) % n
        return a, b

    # ----- products -----------------------------------------------------------------------------

    def cluster(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(p, dtype=np.int64) // self.cluster_size

    def cluster_products(self, c: int) -> np.ndarray:
        """Product ids of cluster ``c``: [size] int64."""
        return np.arange(
            c * self.cluster_size, min((c + 1) * self.cluster_size, self.n_products), dtype=np.int64
        )

    def leaf_of_cluster(self, c: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.leaf_cluster_start, np.asarray(c), side="right") - 1

    def leaf(self, p: np.ndarray) -> np.ndarray:
        """True leaf category of products: [n] int64 (index into ``leaves``; also the category_id)."""
        return np.asarray(self.leaf_of_cluster(self.cluster(p)))

    def rank(self, p: np.ndarray) -> np.ndarray:
        """Popularity rank (0 = most popular) of products."""
        return (np.asarray(p, dtype=np.int64) * self._rank_a + self._rank_b) % self.n_products

    def product_at_rank(self, r: np.ndarray) -> np.ndarray:
        return (
            (np.asarray(r, dtype=np.int64) - self._rank_b) % self.n_products * self._rank_a_inv
        ) % self.n_products

    def popularity(self, p: np.ndarray) -> np.ndarray:
        """Unnormalised Zipf popularity weight of products: (rank + 1) ** -zipf_a."""
        return np.asarray((self.rank(p) + 1.0) ** -self.cfg.zipf_a)

    @cached_property
    def _popularity_cdf(self) -> np.ndarray:
        return zipf_cdf(self.n_products, self.cfg.zipf_a)

    def sample_products(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` products drawn from the global Zipf popularity: [n] int64."""
        r = np.searchsorted(self._popularity_cdf, rng.random(n), side="right")
        return self.product_at_rank(np.minimum(r, self.n_products - 1))

    @cached_property
    def _cluster_weight_cdf(self) -> np.ndarray:
        """Cumulative popularity of clusters in id order: [n_clusters + 1] float64, starting at 0."""
        w = self.popularity(np.arange(self.n_products))
        per_cluster = np.add.reduceat(w, np.arange(0, self.n_products, self.cluster_size))
        return np.concatenate([[0.0], np.cumsum(per_cluster)])

    def sample_in_leaf(self, rng: np.random.Generator, leaf: int, n: int) -> np.ndarray:
        """``n`` products of one leaf category, each with probability proportional to its popularity."""
        lo, hi = self.leaf_cluster_start[leaf], self.leaf_cluster_start[leaf + 1]
        if hi <= lo:
            return self.sample_products(rng, n)
        cdf = self._cluster_weight_cdf
        target = cdf[lo] + rng.random(n) * (cdf[hi] - cdf[lo])
        clusters = np.clip(np.searchsorted(cdf, target, side="right") - 1, lo, hi - 1)
        return self.sample_in_clusters(rng, clusters)

    def sample_in_clusters(self, rng: np.random.Generator, clusters: np.ndarray) -> np.ndarray:
        """One product per cluster, by popularity inside it: [n] int64."""
        size = self.cluster_size
        members = np.asarray(clusters, dtype=np.int64)[:, None] * size + np.arange(size)[None, :]
        valid = members < self.n_products
        w = np.where(valid, self.popularity(np.where(valid, members, 0)), 0.0)
        cdf = np.cumsum(w, axis=1)
        pick = (cdf < rng.random(len(members))[:, None] * cdf[:, -1:]).sum(axis=1)
        return np.asarray(members[np.arange(len(members)), np.minimum(pick, size - 1)])

    def brand(self, p: np.ndarray) -> list[str]:
        c = self.cluster(p)
        tops = self.leaf_top[self.leaf_of_cluster(c)]
        b = hash64(self.seed, S_BRAND, c) % _U64(self.brands_per_top)
        return [
            self.brands[int(t)][int(i)] for t, i in zip(np.atleast_1d(tops), np.atleast_1d(b), strict=True)
        ]

    def series(self, p: np.ndarray) -> list[str]:
        """Model line token, e.g. ``pro 14``; shared by a cluster."""
        h = hash64(self.seed, S_SERIES, self.cluster(p))
        letters = vocab.SERIES_LETTERS
        return [
            f"{letters[int(x % _U64(len(letters)))]} {int((x >> _U64(8)) % _U64(90)) + 2}"
            for x in np.atleast_1d(h)
        ]

    def spec(self, p: np.ndarray) -> list[str]:
        p = np.atleast_1d(np.asarray(p, dtype=np.int64))
        leaves = self.leaf(p)
        return [
            self.leaves[int(lf)].specs[int(v) % len(self.leaves[int(lf)].specs)]
            for lf, v in zip(leaves, p % self.cluster_size, strict=True)
        ]

    def colour(self, p: np.ndarray) -> list[str]:
        h = hash64(self.seed, S_COLOUR, np.atleast_1d(p))
        return [vocab.COLOURS[int(x % _U64(len(vocab.COLOURS)))] for x in h]

    def price(self, p: np.ndarray) -> np.ndarray:
        """Reference price of products: log-normal around the leaf's typical price, shared-ish per cluster."""
        p = np.asarray(p, dtype=np.int64)
        base = np.array([leaf.price for leaf in self.leaves])[self.leaf(p)]
        return np.asarray(
            base
            * np.exp(
                0.45 * normal(self.seed, S_PRICE, self.cluster(p)) + 0.1 * normal(self.seed, S_PRICE, p, 7)
            )
        )

    def tokens(self, p: np.ndarray) -> list[dict[str, str]]:
        """The parts titles and queries are made of (brand, noun, series, spec, colour), per product."""
        p = np.atleast_1d(np.asarray(p, dtype=np.int64))
        nouns = [self.leaves[int(lf)].noun for lf in self.leaf(p)]
        return [
            {"brand": b, "noun": n, "series": s, "spec": sp, "colour": c}
            for b, n, s, sp, c in zip(
                self.brand(p), nouns, self.series(p), self.spec(p), self.colour(p), strict=True
            )
        ]

    # ----- offers -------------------------------------------------------------------------------

    def n_offers(self, p: np.ndarray) -> np.ndarray:
        """Offers (sellers) per product, Zipf-distributed in [1, max_offers_per_product]: [n] int64."""
        u = unit(self.seed, S_NOFFERS, np.asarray(p, dtype=np.int64))
        return np.asarray(np.searchsorted(self.offer_count_cdf, u, side="right") + 1).clip(
            1, len(self.offer_count_cdf)
        )

    def offer_id(self, p: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Id of the k-th offer of product p: a bijective scramble of ``p * cap + k`` into [0, 2^40).

        Ids look arbitrary (no product structure leaks through them) yet stay unique.
        """
        x = np.asarray(p, dtype=np.int64).astype(_U64).reshape(-1) * _U64(self.cfg.max_offers_per_product)
        x = x + np.asarray(k).astype(_U64).reshape(-1)
        mult, xor = self._offer_scramble
        y = ((x * mult) & _U64(MASK40)) ^ xor
        return y.astype(np.int64)

    def relation_grade(self, intent: int, p: np.ndarray) -> np.ndarray:
        """True relevance of products ``p`` to a shopper who wants product ``intent``: [n] int8.

        3 the product itself, 2 a substitute (same cluster), 1 same leaf category, 0 otherwise.
        """
        p = np.asarray(p, dtype=np.int64)
        grade = np.zeros(len(p), dtype=np.int8)
        grade[self.leaf(p) == self.leaf(np.array([intent]))[0]] = 1
        grade[self.cluster(p) == intent // self.cluster_size] = 2
        grade[p == intent] = 3
        return grade
