"""Shopping sessions on the synthetic catalogue: views, searches with listings, clicks, carts, purchases.

A session has a latent *intent* (a product) that drifts: the shopper compares sellers of the same
product, moves to substitutes in the same cluster, to complements (phone -> case), or starts afresh.
A search shows a listing of ``listing_min..listing_max`` offers (what an inverted index would match:
the intent's product and cluster, its category, some noise) ordered by a noisy "production" scorer;
clicks follow a position-based model, P(click) = examination(position) x attractiveness(true grade),
with examination(p) = p^-eta; carts and purchases depend on the true grade. The truth (grades of every
listed offer, the examination curve) is returned beside the events, never inside them.

Behaviour that no feature shows steers the shopper (``Catalog``: each with a strength in ``synth``):
a move to a substitute or a complement favours products whose latent taste factors agree with the
current one's, a share of complement moves goes to the one product the current one fits, and a
seller's quality scales its offers' share of views, their clicks and their purchases.

Bad rows are injected as *extra* rows (copies of clean rows with a defect, or whole bot sessions), so
the clean log is exactly what the truth describes and every injected row is counted by its kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa

from retrieval.synth import vocab
from retrieval.synth.catalog import Catalog, format_ts

EVENT_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("ts", pa.string()),
        ("event", pa.string()),
        ("offer_id", pa.int64()),
        ("query_id", pa.string()),
        ("query_text", pa.string()),
        ("listing", pa.list_(pa.int64())),
        ("position", pa.int32()),
        ("_injected", pa.string()),
    ]
)
RELEVANCE_SCHEMA = pa.schema([("query_id", pa.string()), ("offer_id", pa.int64()), ("grade", pa.int32())])

# Attractiveness of an offer by its true grade (0..3), and what follows a click.
ATTRACTIVENESS = np.array([0.03, 0.12, 0.35, 0.75])
P_CART = np.array([0.01, 0.04, 0.12, 0.30])  # given a click
P_PURCHASE = np.array([0.10, 0.20, 0.40, 0.60])  # given a cart
# How the intent moves after a view: stay on the product (compare sellers), a substitute (same
# cluster), a complement (related leaf), or something new (global popularity).
DRIFT = np.array([0.35, 0.35, 0.12, 0.18])
P_FOLLOW_CLICK = 0.6  # after clicking a result, the clicked product becomes the intent
# Production scorer: grade + popularity + noise; the noise is what a learned ranker can beat.
PROD_POPULARITY_WEIGHT = 0.15

BAD_TS = ("2026-13-45 25:61:00", "not a timestamp", "", "31/12/2026 10:00", "2026-02-30T99:00:00", "NaN")
INJECTED_KINDS = ("null_key", "bad_ts", "bad_price", "unknown_offer", "duplicate", "bot_session")
UNKNOWN_OFFER_BASE = 1 << 41  # outside the [0, 2^40) id space of real offers
BOT_MIN_EVENTS, BOT_MAX_EVENTS = 1200, 2500


def examination(positions: np.ndarray, eta: float) -> np.ndarray:
    """True examination probability of 1-based positions: p^-eta. [n] float64."""
    return np.asarray(np.asarray(positions, dtype=np.float64) ** -eta)


def click_probability(positions: np.ndarray, grade: np.ndarray, appeal: np.ndarray, eta: float) -> np.ndarray:
    """True click probability of listed offers: examination(position) x attractiveness(grade) x their
    appeal (seller quality and the shopper's taste, ``SessionSimulator._listing``). [n]

    The relevance (attractiveness x appeal) is capped at 1, not the product: a cap on the product would
    flatten the top positions of appealing offers, and the position-based model, which mine_listings'
    propensity estimate assumes and the tests check it against, would no longer hold."""
    relevance = np.minimum(ATTRACTIVENESS[grade] * appeal, 1.0)
    return np.asarray(examination(positions, eta) * relevance)


def _choose(rng: np.random.Generator, items: np.ndarray, weights: np.ndarray) -> int:
    """One of ``items`` with probability proportional to ``weights`` (one uniform draw)."""
    cdf = np.cumsum(weights)
    return int(items[min(int((cdf < rng.random() * cdf[-1]).sum()), len(items) - 1)])


class _Product:
    """What the shopper model needs of one product (``SessionSimulator._product``), each part computed
    when first asked for: with a flat popularity most products a block meets are met once."""

    def __init__(self, cat: Catalog, p: int) -> None:
        self.cat, self.p = cat, p
        self.leaf = int(cat.leaf(np.array([p]))[0])
        self.cluster = p // cat.cluster_size

    @cached_property
    def z(self) -> np.ndarray:
        """[latent_dim] taste factors."""
        return self.cat.latent(np.array([self.p]))[0]

    @cached_property
    def offers(self) -> np.ndarray:
        """[n] int64; offer k is sold by the product's seller k."""
        n = int(self.cat.n_offers(np.array([self.p]))[0])
        return self.cat.offer_id(np.full(n, self.p), np.arange(n))

    @cached_property
    def tokens(self) -> dict[str, str]:
        return self.cat.tokens(np.array([self.p]))[0]

    @cached_property
    def links(self) -> np.ndarray:
        """The product it fits in each complement leaf (``Catalog.links``), -1 padded."""
        return self.cat.links(np.array([self.p]))[0]


@dataclass
class _Log:
    """Column lists of the events being built."""

    session_id: list = field(default_factory=list)
    ts: list = field(default_factory=list)  # seconds after the log's start
    event: list = field(default_factory=list)
    offer_id: list = field(default_factory=list)
    query_id: list = field(default_factory=list)
    query_text: list = field(default_factory=list)
    listing: list = field(default_factory=list)
    position: list = field(default_factory=list)

    def add(
        self,
        sid: str,
        t: float,
        event: str,
        offer: int | None = None,
        qid: str | None = None,
        text: str | None = None,
        listing: list[int] | None = None,
        position: int | None = None,
    ) -> None:
        self.session_id.append(sid)
        self.ts.append(t)
        self.event.append(event)
        self.offer_id.append(offer)
        self.query_id.append(qid)
        self.query_text.append(text)
        self.listing.append(listing)
        self.position.append(position)

    def __len__(self) -> int:
        return len(self.event)


@dataclass
class SessionBlock:
    events: pa.Table  # EVENT_SCHEMA: clean rows (``_injected`` null) then injected rows
    relevance: pa.Table  # RELEVANCE_SCHEMA: true grade of every listed offer of every clean search
    injected: dict[str, int]  # rows injected per kind


class SessionSimulator:
    """Simulates blocks of sessions; block ``b`` is a pure function of (config, seed, b)."""

    memo_size = 200_000  # products a per-product memo holds at once (then it restarts)

    def __init__(self, cat: Catalog) -> None:
        self.cat = cat
        self.cfg = cat.cfg
        self._cache: dict[int, _Product] = {}
        self._traffic: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # product -> offers' (cdf, quality)
        self._leaves: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # ----- per-product facts, memoised (popular products recur constantly) -------------------

    def _product(self, p: int) -> _Product:
        hit = self._cache.get(p)
        if hit is None:
            hit = _Product(self.cat, p)
            if len(self._cache) > self.memo_size:
                self._cache.clear()
            self._cache[p] = hit
        return hit

    def _leaf(self, leaf: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(products, popularity, taste factors) of one leaf, memoised (products are ``products[0] + i``)."""
        hit = self._leaves.get(leaf)
        if hit is None:
            members = self.cat.leaf_products(leaf)
            hit = self._leaves[leaf] = (members, self.cat.popularity(members), self.cat.latent(members))
        return hit

    def _move_weights(self, popularity: np.ndarray, z: np.ndarray, p: int) -> np.ndarray:
        """Unnormalised probability of moving from product ``p`` to products of popularity [n] and taste
        factors [n, d]: popularity x exp(latent_strength x affinity) (``Catalog.move_weights``)."""
        beta = self.cfg.latent_strength
        if not beta:
            return popularity
        return np.asarray(popularity * np.exp(beta * (z @ self._product(p).z)))

    def _traffic_rows(self, products: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per product, its offers' cumulative traffic share and seller quality multipliers, each
        [max_offers_per_product] (cdf inf and quality 0 past its offers), memoised; computed for every
        product not met before in one call (``Catalog.offer_traffic``)."""
        cache, cap = self._traffic, self.cfg.max_offers_per_product
        if len(cache) > self.memo_size:  # bounded; cleared before the lookup, never between its halves
            cache.clear()
        missing = np.unique(np.array([p for p in products if p not in cache], dtype=np.int64))
        if len(missing):
            n = self.cat.n_offers(missing)
            traffic, quality = self.cat.offer_traffic(missing, n)
            cdf = np.full((len(missing), cap), np.inf)  # past a product's offers: never below a uniform
            cdf[:, : traffic.shape[1]] = np.where(traffic > 0, np.cumsum(traffic, axis=1), np.inf)
            cdf[np.arange(len(missing)), n - 1] = np.inf  # the last offer takes what rounding leaves
            padded = np.zeros((len(missing), cap))
            padded[:, : quality.shape[1]] = quality
            for i, p in enumerate(missing.tolist()):
                cache[p] = (cdf[i], padded[i])
        return [cache[p] for p in products]

    def _offers_for(self, rng: np.random.Generator, products: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One offer per product, by within-product traffic share (``Catalog.offer_traffic``): the
        offers [n] int64 and their sellers' quality multipliers [n] float64."""
        rows = self._traffic_rows(products.tolist())
        cdf = np.array([r[0] for r in rows]).reshape(len(rows), self.cfg.max_offers_per_product)
        k = (cdf < rng.random(len(rows))[:, None]).sum(axis=1)
        quality = np.array([r[1][i] for r, i in zip(rows, k.tolist(), strict=True)], dtype=np.float64)
        return self.cat.offer_id(products, k), quality

    # ----- the shopper ------------------------------------------------------------------------

    def _query_text(self, rng: np.random.Generator, tokens: dict[str, str]) -> str:
        words = [tokens["noun"]]
        if rng.random() < 0.45:
            words.insert(0, tokens["brand"])
        if rng.random() < 0.25:
            words.append(tokens["series"])
        if rng.random() < 0.2:
            words.append(tokens["spec"])
        if rng.random() < 0.25:
            words.insert(0, tokens["colour"])
        if rng.random() < 0.15:
            words.append(vocab.QUERY_FILLERS[int(rng.integers(len(vocab.QUERY_FILLERS)))])
        text = " ".join(words)
        if rng.random() < 0.08 and len(text) > 4:  # a typo: a letter dropped
            i = int(rng.integers(1, len(text) - 1))
            text = text[:i] + text[i + 1 :]
        return text

    def _listing(self, rng: np.random.Generator, intent: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Offers a search for ``intent`` shows, in production order, with their true grades and their
        appeal: the multiplier of their attractiveness, their seller's quality x, for other products
        than the intent, the shopper's taste for them (exp(latent_strength x affinity - strength^2 / 2),
        mean 1)."""
        cfg, cat = self.cfg, self.cat
        own = self._product(intent)
        leaf, cluster, own_offers = own.leaf, own.cluster, own.offers
        length = int(np.exp(rng.uniform(np.log(cfg.listing_min), np.log(cfg.listing_max + 1))))
        length = min(max(length, cfg.listing_min), cfg.listing_max)
        parts = [np.repeat(intent, min(3, len(own_offers)))]
        parts.append(cat.cluster_products(cluster))
        n_leaf = int(length * 0.6)
        parts.append(self.cat.sample_in_leaf(rng, leaf, n_leaf))
        for comp in cat.complements[leaf][:2]:
            parts.append(self.cat.sample_in_leaf(rng, comp, max(1, length // 20)))
        products = np.concatenate(parts).astype(np.int64)
        offers = np.empty(len(products), dtype=np.int64)
        quality = np.empty(len(products), dtype=np.float64)
        k0 = min(3, len(own_offers))
        offers[:k0], quality[:k0] = own_offers[:k0], self._traffic_rows([intent])[0][1][:k0]
        offers[k0:], quality[k0:] = self._offers_for(rng, products[k0:])
        # Fill with loosely matched offers (global popularity) until the listing has `length` distinct
        # offers; a popular product drawn twice yields one offer, hence the loop.
        for _ in range(20):
            _, first = np.unique(offers, return_index=True)
            if len(first) >= length:
                break
            extra = cat.sample_products(rng, length)
            extra_offers, extra_quality = self._offers_for(rng, extra)
            products = np.concatenate([products, extra])
            offers, quality = np.concatenate([offers, extra_offers]), np.concatenate([quality, extra_quality])
        keep = np.sort(first)[:length]  # distinct offers, the better-matched ones first
        products, offers, quality = products[keep], offers[keep], quality[keep]
        grade = cat.relation_grade(intent, products)
        beta = cfg.latent_strength
        if beta:  # shoppers click what suits their taste among what they are shown (not the intent itself)
            others = products != intent
            affinity = cat.latent(products[others]) @ self._product(intent).z
            quality[others] *= np.exp(beta * affinity - beta * beta / 2.0)
        score = (
            grade
            + PROD_POPULARITY_WEIGHT * np.log(cat.popularity(products))
            + cfg.production_noise * rng.standard_normal(len(products))
        )
        order = np.argsort(-score, kind="stable")
        return offers[order], grade[order], quality[order]

    def _drift(self, rng: np.random.Generator, p: int) -> int:
        """The next intent after ``p``: ``p`` again, a substitute, a complement or something new (DRIFT);
        substitutes and complements by popularity x exp(latent_strength x taste affinity), a share
        ``link_share`` of complement moves to the product ``p`` fits."""
        cfg, cat, f = self.cfg, self.cat, self._product(p)
        move = int(np.searchsorted(np.cumsum(DRIFT), rng.random(), side="right"))
        if move == 0:
            return p
        if move == 1:
            members, popularity, z = self._leaf(f.leaf)
            lo = f.cluster * cat.cluster_size - int(members[0])
            at = slice(lo, lo + cat.cluster_size)  # the cluster's products, p among them
            return _choose(rng, members[at], self._move_weights(popularity[at], z[at], p))
        if move == 2 and cat.complements[f.leaf]:
            j = int(rng.integers(len(cat.complements[f.leaf])))
            if cfg.link_share and rng.random() < cfg.link_share:
                return int(f.links[j])
            members, popularity, z = self._leaf(cat.complements[f.leaf][j])
            return _choose(rng, members, self._move_weights(popularity, z, p))
        return int(cat.sample_products(rng, 1)[0])

    def _session(self, rng: np.random.Generator, sid: str, log: _Log, rel: dict[str, list]) -> None:
        cfg = self.cfg
        t = float(rng.uniform(0, cfg.days * 86400.0 - 7200.0))
        steps = min(cfg.max_session_steps, int(rng.geometric(1.0 / cfg.mean_session_steps)))
        intent = int(self.cat.sample_products(rng, 1)[0])
        last_offer = -1
        n_search = 0
        for _ in range(steps):
            facts = self._product(intent)
            offers = facts.offers
            if rng.random() < cfg.search_prob:
                qid = f"{sid}-q{n_search}"
                n_search += 1
                listing, grade, appeal = self._listing(rng, intent)
                log.add(
                    sid,
                    t,
                    "search",
                    qid=qid,
                    text=self._query_text(rng, facts.tokens),
                    listing=listing.tolist(),
                )
                rel["query_id"].extend([qid] * len(listing))
                rel["offer_id"].extend(listing.tolist())
                rel["grade"].extend(grade.tolist())
                positions = np.arange(1, len(listing) + 1)
                clicked = rng.random(len(listing)) < click_probability(
                    positions, grade, appeal, cfg.examination_eta
                )
                for i in np.flatnonzero(clicked):
                    t += 2.0 + rng.exponential(15.0)
                    offer, g = int(listing[i]), int(grade[i])
                    log.add(sid, t, "click", offer=offer, qid=qid, position=int(i) + 1)
                    if rng.random() < P_CART[g]:
                        t += 2.0 + rng.exponential(20.0)
                        log.add(sid, t, "cart", offer=offer, qid=qid)
                        if rng.random() < P_PURCHASE[g] * appeal[i]:
                            t += 5.0 + rng.exponential(60.0)
                            log.add(sid, t, "purchase", offer=offer, qid=qid)
                    last_offer = offer
                if clicked.any() and rng.random() < P_FOLLOW_CLICK:
                    intent = self._product_of_offer(intent, last_offer)
            else:
                cdf, quality = self._traffic_rows([intent])[0]
                k = int((cdf < rng.random()).sum())
                if offers[k] == last_offer and len(offers) > 1:  # a repeat view compares another seller
                    k = (k + 1 + int(rng.integers(len(offers) - 1))) % len(offers)
                last_offer = int(offers[k])
                log.add(sid, t, "view", offer=last_offer)
                if rng.random() < 0.02:
                    t += 2.0 + rng.exponential(20.0)
                    log.add(sid, t, "cart", offer=last_offer)
                    if rng.random() < 0.3 * quality[k]:
                        t += 5.0 + rng.exponential(60.0)
                        log.add(sid, t, "purchase", offer=last_offer)
            intent = self._drift(rng, intent)
            t += 2.0 + rng.exponential(25.0)

    def _product_of_offer(self, intent: int, offer: int) -> int:
        """The product behind a clicked offer where it is in the intent's cluster (grades 2-3), else the
        intent: a shopper who clicked a phone case while looking for a phone still wants a phone."""
        p = int(self.cat.offer_product(np.array([offer]))[0][0])
        return p if p // self.cat.cluster_size == intent // self.cat.cluster_size else intent

    def _bot(self, rng: np.random.Generator, sid: str, log: _Log) -> None:
        """A scraper: thousands of views of arbitrary offers, a few per second."""
        n = int(rng.integers(BOT_MIN_EVENTS, BOT_MAX_EVENTS + 1))
        t0 = float(rng.uniform(0, self.cfg.days * 86400.0 - 7200.0))
        times = t0 + np.cumsum(0.1 + rng.exponential(0.4, size=n))
        offers, _ = self._offers_for(rng, rng.integers(0, self.cat.n_products, size=n))
        for t, o in zip(times, offers, strict=True):
            log.add(sid, float(t), "view", offer=int(o))

    def _inject(
        self, rng: np.random.Generator, log: _Log, block: int
    ) -> tuple[list[str | None], dict[str, int]]:
        """Appends corrupted copies of clean rows and bot sessions; returns the per-row kind markers."""
        n = len(log)
        marks: list[str | None] = [None] * n
        counts = dict.fromkeys(INJECTED_KINDS, 0)
        rate = self.cfg.bad_row_rate
        if rate <= 0 or n == 0:
            return marks, counts
        cols = [
            log.session_id,
            log.ts,
            log.event,
            log.offer_id,
            log.query_id,
            log.query_text,
            log.listing,
            log.position,
        ]

        def copy(i: int, kind: str, **changes: object) -> None:
            row = [c[i] for c in cols]
            names = ("session_id", "ts", "event", "offer_id", "query_id", "query_text", "listing", "position")
            for k, v in changes.items():
                row[names.index(k)] = v
            for c, v in zip(cols, row, strict=True):
                c.append(v)
            marks.append(kind)
            counts[kind] += 1

        for kind in ("null_key", "bad_ts", "unknown_offer", "duplicate"):
            for i in rng.choice(n, size=min(n, rng.binomial(n, rate)), replace=False):
                i = int(i)
                is_search = log.event[i] == "search"
                if kind == "null_key":
                    key = "session_id" if rng.random() < 0.5 else ("query_id" if is_search else "offer_id")
                    copy(i, kind, **{key: None})
                elif kind == "bad_ts":
                    copy(i, kind, ts=BAD_TS[int(rng.integers(len(BAD_TS)))])
                elif kind == "unknown_offer":
                    ghost = UNKNOWN_OFFER_BASE + block * 1_000_000 + counts[kind]
                    if is_search:
                        listing = list(log.listing[i])
                        listing[int(rng.integers(len(listing)))] = ghost
                        copy(i, kind, listing=listing)
                    else:
                        copy(i, kind, offer_id=ghost)
                else:
                    copy(i, kind)
        n_bots = rng.poisson(rate * n / ((BOT_MIN_EVENTS + BOT_MAX_EVENTS) / 2))
        if block == 0:
            n_bots = max(n_bots, 1)  # every run with injection on has at least one bot to catch
        for b in range(n_bots):
            before = len(log)
            self._bot(rng, f"bot-{block}-{b}", log)
            added = len(log) - before
            marks.extend(["bot_session"] * added)
            counts["bot_session"] += added
        return marks, counts

    def simulate(self, block: int, lo: int, hi: int) -> SessionBlock:
        """Sessions ``[lo, hi)`` (their ids are global, so blocks can be re-cut freely)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.cat.seed, 11, block]))
        log = _Log()
        rel: dict[str, list] = {"query_id": [], "offer_id": [], "grade": []}
        for s in range(lo, hi):
            self._session(rng, f"s{s:09d}", log, rel)
        marks, counts = self._inject(rng, log, block)
        ts: list[str | None] = []
        seconds = [t for t in log.ts if isinstance(t, float)]
        formatted = iter(format_ts(np.asarray(seconds), self.cfg.start_date))
        for t in log.ts:
            ts.append(next(formatted) if isinstance(t, float) else t)
        events = pa.Table.from_pydict(
            {
                "session_id": log.session_id,
                "ts": ts,
                "event": log.event,
                "offer_id": log.offer_id,
                "query_id": log.query_id,
                "query_text": log.query_text,
                "listing": log.listing,
                "position": log.position,
                "_injected": marks,
            },
            schema=EVENT_SCHEMA,
        )
        return SessionBlock(events, pa.Table.from_pydict(rel, schema=RELEVANCE_SCHEMA), counts)
