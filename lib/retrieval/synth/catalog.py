"""The synthetic catalogue: products in a category tree, each sold as offers by several sellers.

Stateless by design: every attribute of product ``p`` (its category, cluster, brand, price, popularity,
offers) is a hash of ``(seed, p)``, so any Spark task can compute any product's attributes without a
shared table, and a 250M-offer catalogue is generated partition by partition. The only state is a
few small arrays (categories, popularity CDF). Structure that later stages are graded against:

- a *cluster* is a brand's model line (``products_per_cluster`` consecutive product ids): its products
  are close substitutes (variants by spec or colour);
- each leaf category has complement leaves (phone -> phone case), so sessions drift between clusters;
- product popularity is Zipf(``zipf_a``) by a random rank; offers per product are Zipf-distributed.

Behaviour that no feature shows (``synth.latent_strength``, ``link_share``, ``seller_quality``; see
``SessionSimulator``), each a hash too:

- every product has latent *taste factors* (``latent``): shoppers moving to a substitute or a
  complement favour products whose factors agree with the one they leave;
- every product *fits* one product of each complement leaf (``links``: this case fits that phone);
- every seller has a *quality* (``seller_quality``) that shifts traffic, clicks and purchases among
  the offers of one product.
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
S_LATENT, S_LINK, S_SELLER_QUALITY = range(17, 20)


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
        self._leaf_cdf: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._inverse_rank = 1.0 / np.arange(1, cfg.max_offers_per_product + 1)

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

    def leaf_products(self, leaf: int) -> np.ndarray:
        """Product ids of one leaf category, in id order (a leaf's clusters are contiguous): [n] int64."""
        lo, hi = self.leaf_cluster_start[leaf], self.leaf_cluster_start[leaf + 1]
        return np.arange(lo * self.cluster_size, min(hi * self.cluster_size, self.n_products), dtype=np.int64)

    # ----- behaviour that no feature shows ------------------------------------------------------

    def latent(self, p: np.ndarray) -> np.ndarray:
        """Taste factors of products: [n, latent_dim] float64, each N(0, latent_dim^-1/2), so that the
        affinity ``z_p . z_q`` of two products has unit variance."""
        p = np.atleast_1d(np.asarray(p, dtype=np.int64))
        d = self.cfg.latent_dim
        return np.asarray(normal(self.seed, S_LATENT, p[:, None], np.arange(d)[None, :]) * d**-0.25)

    def move_weights(self, z_from: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Unnormalised probability of moving to each of products ``p`` from a product with factors
        ``z_from`` [d]: popularity x exp(latent_strength x affinity). [n] float64."""
        w = self.popularity(p)
        if self.cfg.latent_strength:
            w = w * np.exp(self.cfg.latent_strength * (self.latent(p) @ z_from))
        return np.asarray(w)

    def links(self, p: np.ndarray) -> np.ndarray:
        """The product each product fits in each of its complement leaves (this case fits that phone):
        [n, max complements] int64, -1 past a leaf's complements. Drawn by popularity in the complement
        leaf from a hash of (seed, product, j), so no table holds them."""
        p = np.atleast_1d(np.asarray(p, dtype=np.int64))
        width = max(len(c) for c in self.complements)
        u = unit(self.seed, S_LINK, p[:, None], np.arange(width)[None, :])
        out = np.full((len(p), width), -1, dtype=np.int64)
        for i, leaf in enumerate(self.leaf(p)):
            for j, comp in enumerate(self.complements[int(leaf)]):
                members, cdf = self._leaf_popularity(comp)
                r = int(np.searchsorted(cdf, u[i, j] * cdf[-1], side="right"))
                out[i, j] = members[min(r, len(members) - 1)]
        return out

    def _leaf_popularity(self, leaf: int) -> tuple[np.ndarray, np.ndarray]:
        """(products, cumulative popularity) of one leaf, memoised (a few leaves recur constantly)."""
        hit = self._leaf_cdf.get(leaf)
        if hit is None:
            members = self.leaf_products(leaf)
            hit = self._leaf_cdf[leaf] = (members, np.cumsum(self.popularity(members)))
        return hit

    def sellers(self, p: np.ndarray, n: np.ndarray | None = None) -> np.ndarray:
        """Sellers of the offers of products, offer k sold by column k: [n, most offers] int64, -1 past a
        product's offers. Each drawn from Zipf seller popularity, distinct within a product.
        ``n``: the products' :meth:`n_offers`, when known."""
        p = np.atleast_1d(np.asarray(p, dtype=np.int64))
        n = self.n_offers(p) if n is None else n
        width = int(n.max()) if len(n) else 0
        k = np.arange(width)[None, :]
        u = unit(self.seed, S_SELLER, p[:, None], k)
        out = np.searchsorted(self.seller_cdf, u, side="right").astype(np.int64) % self.cfg.sellers
        out[k >= n[:, None]] = -1
        ordered = np.sort(np.where(out < 0, -1 - k, out), axis=1)
        for i in np.flatnonzero((np.diff(ordered, axis=1) == 0).any(axis=1)):  # rare: a seller drawn twice
            row: list[int] = []
            for s in out[i, : n[i]]:
                s = int(s)
                while s in row:  # one seller sells a product once
                    s = (s + 1) % self.cfg.sellers
                row.append(s)
            out[i, : n[i]] = row
        return out

    def seller_quality(self, s: np.ndarray) -> np.ndarray:
        """Multiplier of sellers' traffic, clicks and purchases: exp(g q - g^2 / 2) with q ~ N(0, 1) per
        seller and g = ``seller_quality`` (mean 1, so overall rates stay put); 1 for -1 (no seller)."""
        s = np.asarray(s, dtype=np.int64)
        return np.asarray(np.where(s >= 0, self._seller_quality[s], 1.0))

    @cached_property
    def _seller_quality(self) -> np.ndarray:
        g = self.cfg.seller_quality
        q = normal(self.seed, S_SELLER_QUALITY, np.arange(self.cfg.sellers))
        return np.asarray(np.exp(g * q - g * g / 2.0))

    def offer_traffic(self, p: np.ndarray, n: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each offer's share of its product's traffic, 1 / (k + 1) (the first offers are the better
        placed) x its seller's quality, normalised per product; and the quality multipliers. Both
        [n, most offers] float64, 0 past a product's offers. ``n``: the products' :meth:`n_offers`."""
        p = np.atleast_1d(np.asarray(p, dtype=np.int64))
        n = self.n_offers(p) if n is None else n
        width = int(n.max()) if len(n) else 0
        real = np.arange(width)[None, :] < n[:, None]
        if self.cfg.seller_quality:
            quality = np.where(real, self.seller_quality(self.sellers(p, n)), 0.0)
        else:
            quality = real.astype(np.float64)
        w = quality * self._inverse_rank[:width]
        return w / w.sum(axis=1, keepdims=True), quality

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

    def offer_product(self, offer_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of :meth:`offer_id`: (product, k) of offers, [n] int64 each."""
        mult, xor = self._offer_scramble
        inverse = _U64(pow(int(mult), -1, 1 << 40))
        y = np.asarray(offer_ids, dtype=np.int64).astype(_U64).reshape(-1) ^ xor
        x = ((y * inverse) & _U64(MASK40)).astype(np.int64)
        cap = self.cfg.max_offers_per_product
        return x // cap, x % cap

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
