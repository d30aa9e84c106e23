"""The generator's own probabilities, as the ceiling of every figure graded on the synthetic marketplace.

A model of the marketplace can do no better than rank by what the generator would do next. This
module computes that from the catalogue (``Catalog``: popularity, clusters, leaves, taste factors,
links, seller quality) and the shopper model's constants (``sessions``), never from a log, so a
figure's share of its ceiling says how much of what is learnable a model has learnt.

**Next offers.** For a query offer ``a`` of product ``p``, :meth:`Oracle.next_offers` ranks offers
``b`` by the expected number of times ``b`` is interacted with (viewed or clicked) close after ``a``
in a session, the relation the co-click pairs sample:

    score(b | a) = sum_q M(q | p) E(b | q)

- ``M(q | p)``: where the shopper's intent is: the same step (``s``, the chance that ``a`` was a
  click of a listing, whose other clicks follow it), one step later (``c``, the chance the session
  goes on: 1 - 1 / mean_session_steps) and two (``c**2``), by the drift kernel ``K`` (the product
  again, a substitute by popularity x exp(latent_strength x affinity), a complement leaf's product
  the same way or the one ``p`` fits, something new by popularity). Two-step paths through two
  complement moves are left out (their mass is small and spread over whole leaves); moves to
  something new are the same for every query and form a popularity background.
- ``E(b | q)``: what a step with intent ``q`` emits: a view (1 - search_prob) of an offer of ``q`` by
  traffic share, or a search (search_prob) whose clicks fall on the intent's offers, its cluster,
  its leaf, its first two complement leaves and loose matches; the expected clicks per search on
  each of those kinds are measured once by simulating fresh searches (:func:`search_click_rates`),
  and spread within a kind by popularity, traffic and seller quality.

This is the issue's "ranking by the generator's true next-offer probabilities", with the
approximations named above; ``tests/test_oracle.py`` checks it against sessions simulated afresh.

**Without the hidden behaviour** (``hidden=False``): the same with latent_strength and link_share
at 0, what a model that knows everything content shows (seller included) can know: its share of the
full oracle is how much of the co-clicks content alone explains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from retrieval.synth.catalog import Catalog
from retrieval.synth.sessions import DRIFT, SessionSimulator, click_probability

# listed products by their relation to the search's intent
OWN, CLUSTER, LEAF, COMPLEMENT, OTHER = range(5)
TASTE_SOURCES = 64  # intents whose taste the click model follows one by one (``Oracle._clicks``)


@dataclass(frozen=True)
class ClickRates:
    """What a search's clicks fall on, by kind of listed product (``OWN`` .. ``OTHER``).

    per_kind: [5] expected clicks per search on each kind; slots: [5] listed products of each kind
    per search; taste: [5, T] the expected clicks on one slot of a kind if the shopper's taste for
    it were ``exp(log_taste)`` (``log_taste`` [T]: a grid), which saturates as click probabilities
    reach 1; own_top: the share of the intent's own clicks that go to its first three offers
    (always listed at the top)."""

    per_kind: np.ndarray
    slots: np.ndarray
    log_taste: np.ndarray
    taste: np.ndarray
    own_top: float

    def per_slot(self, kind: int, log_taste: np.ndarray) -> np.ndarray:
        """Expected clicks on one slot of ``kind`` at the given log tastes (any shape)."""
        return np.asarray(np.interp(log_taste, self.log_taste, self.taste[kind]))


def search_click_rates(cat: Catalog, searches: int = 3000, seed: int = 0) -> ClickRates:
    """:class:`ClickRates` from ``searches`` fresh searches of the generator's own listing and click
    model (intents drawn by popularity, as sessions start)."""
    sim = SessionSimulator(cat)
    rng = np.random.default_rng(np.random.SeedSequence([cat.seed, 97, seed]))
    beta = cat.cfg.latent_strength
    clicks, slots = np.zeros(5), np.zeros(5)
    base: list[list[np.ndarray]] = [[] for _ in range(5)]  # examination x attractiveness x quality
    own_top = own_all = 0.0
    for q in cat.sample_products(rng, searches):
        q = int(q)
        offers, grade, appeal = sim._listing(rng, q)
        positions = np.arange(1, len(offers) + 1)
        p_click = click_probability(positions, grade, appeal, cat.cfg.examination_eta)
        product, k = cat.offer_product(offers)
        kind = _kinds(cat, q, product)
        clicks += np.bincount(kind, weights=p_click, minlength=5)
        slots += np.bincount(kind, minlength=5)
        if beta:  # the listing's appeal holds the shopper's taste for other products: take it out
            taste = np.exp(beta * (cat.latent(product) @ cat.latent(np.array([q]))[0]) - beta * beta / 2.0)
            appeal = np.where(product == q, appeal, appeal / taste)
        e = click_probability(positions, grade, appeal, cat.cfg.examination_eta)
        for kd in range(5):
            base[kd].append(e[kind == kd])
        own = kind == OWN
        own_all += float(p_click[own].sum())
        own_top += float(p_click[own & (k < 3)].sum())
    grid = np.linspace(-12.0, 12.0, 97)
    taste = np.zeros((5, len(grid)))
    for kd in range(5):
        e = np.concatenate(base[kd]) if base[kd] else np.zeros(1)
        taste[kd] = np.minimum(e[:, None] * np.exp(grid)[None, :], 1.0).mean(axis=0)
    n = max(searches, 1)
    return ClickRates(clicks / n, slots / n, grid, taste, own_top / own_all if own_all else 1.0)


def _normalised(w: np.ndarray) -> np.ndarray:
    """Rows of ``w`` [m, k] scaled to sum to 1."""
    return np.asarray(w / w.sum(axis=1, keepdims=True))


def _kinds(cat: Catalog, q: int, products: np.ndarray) -> np.ndarray:
    """The kind (``OWN`` .. ``OTHER``) of listed ``products`` for a search with intent ``q``: [n] int64."""
    leaf_q = int(cat.leaf(np.array([q]))[0])
    leaves = cat.leaf(products)
    kind = np.full(len(products), OTHER, dtype=np.int64)
    kind[np.isin(leaves, cat.complements[leaf_q][:2])] = COMPLEMENT
    kind[leaves == leaf_q] = LEAF
    kind[cat.cluster(products) == q // cat.cluster_size] = CLUSTER
    kind[products == q] = OWN
    return kind


class Oracle:
    """The generator's next-offer probabilities (module docstring) for one catalogue."""

    def __init__(self, cat: Catalog, hidden: bool = True, rates: ClickRates | None = None) -> None:
        if not hidden:
            cat = Catalog(dataclasses.replace(cat.cfg, latent_strength=0.0, link_share=0.0), cat.seed)
        self.cat, self.cfg = cat, cat.cfg
        self.rates = rates or search_click_rates(cat)
        n = cat.n_products
        everything = np.arange(n)
        self.popularity = cat.popularity(everything)
        self.leaf = cat.leaf(everything)
        self.leaf_start = np.minimum(cat.leaf_cluster_start * cat.cluster_size, n)  # [leaves + 1]
        self.leaf_mass = np.add.reduceat(self.popularity, self.leaf_start[:-1])  # [leaves]
        self.z = cat.latent(everything) if self.cfg.latent_strength else None
        self.go_on = 1.0 - 1.0 / self.cfg.mean_session_steps
        self.n_offers = cat.n_offers(everything)
        traffic, quality = cat.offer_traffic(everything, self.n_offers)  # [n, most offers]
        self.traffic, self.quality = traffic.astype(np.float32), quality.astype(np.float32)
        self.listed_complements = [c[:2] for c in cat.complements]  # the complement leaves a search lists
        # what every query shares: moves to something new (the next steps' mass gone there) and loose
        # matches in listings, by popularity
        c, s, kinds = self.go_on, self.cfg.search_prob, self.rates.per_kind
        new = c * DRIFT[3] + c * c * (1.0 - (1.0 - DRIFT[3]) ** 2)
        share = self.popularity / self.popularity.sum()
        self.background_view = (1.0 - s) * new * share
        self.background_click = s * (new * kinds.sum() + (1.0 + c + c * c) * kinds[OTHER]) * share
        self.popular = np.argsort(-self.popularity, kind="stable")

    def _own_share(self, products: np.ndarray) -> np.ndarray:
        """How a search for each of ``products`` shares its clicks on the product's own offers: the first
        three (always listed on top) and the rest by traffic, each by its seller's quality. [m, most]"""
        traffic, quality = self.traffic[products], self.quality[products]
        top = np.arange(traffic.shape[1])[None, :] < np.minimum(self.n_offers[products], 3)[:, None]
        return _normalised(quality * (top * self.rates.own_top + traffic * (1.0 - self.rates.own_top)))

    # ----- the intent --------------------------------------------------------------------------

    def _leaf_slice(self, leaf: int) -> slice:
        return slice(int(self.leaf_start[leaf]), int(self.leaf_start[leaf + 1]))

    def _move(self, q: int, products: slice) -> np.ndarray:
        """Probability of moving from ``q`` to each product of a contiguous range (its cluster, or a
        leaf), given that the move goes into that range: [range] float64."""
        w = self.popularity[products]
        if self.z is not None:
            w = w * np.exp(self.cfg.latent_strength * (self.z[products] @ self.z[q]))
        return np.asarray(w / w.sum())

    def _cluster(self, q: int) -> slice:
        lo = q - q % self.cat.cluster_size
        return slice(lo, min(lo + self.cat.cluster_size, self.cat.n_products))

    def _cluster_moves(self, v: np.ndarray, leaves: list[int], out: np.ndarray) -> None:
        """Adds to ``out`` the stay and substitute moves (DRIFT[0], DRIFT[1]) of the intent mass ``v``
        [products] holds in ``leaves`` (a leaf's clusters are whole, so clusters are blocks of it)."""
        cs = self.cat.cluster_size
        for leaf in leaves:
            s = self._leaf_slice(leaf)
            mass = v[s]
            if not mass.any():
                continue
            out[s] += DRIFT[0] * mass
            pad = (-len(mass)) % cs
            pop = np.concatenate([self.popularity[s], np.zeros(pad)]).reshape(-1, cs)  # [clusters, cs]
            m = np.concatenate([mass, np.zeros(pad)]).reshape(-1, cs)
            if self.z is None:
                moved = m.sum(axis=1, keepdims=True) * pop / pop.sum(axis=1, keepdims=True)
            else:
                z = np.concatenate([self.z[s], np.zeros((pad, self.z.shape[1]))]).reshape(len(m), cs, -1)
                w = pop[:, None, :] * np.exp(self.cfg.latent_strength * (z @ z.transpose(0, 2, 1)))
                w = w / np.maximum(w.sum(axis=2, keepdims=True), 1e-300)  # [clusters, from, to]
                moved = np.einsum("cf,cft->ct", m, w)
            out[s] += DRIFT[1] * moved.reshape(-1)[: len(mass)]

    def _complement_moves(self, q: int, mass: float, out: np.ndarray) -> None:
        """Adds ``mass`` x the complement moves (DRIFT[2]) from ``q`` to ``out`` [products]."""
        comps = self.cat.complements[int(self.leaf[q])]
        if not comps or not mass:
            return
        share, link = mass * DRIFT[2] / len(comps), self.cfg.link_share
        links = self.cat.links(np.array([q]))[0]
        for j, comp in enumerate(comps):
            leaf = self._leaf_slice(comp)
            out[leaf] += share * (1.0 - link) * self._move(q, leaf)
            out[links[j]] += share * link

    def intent(self, p: int) -> np.ndarray:
        """Where the intent goes in the steps after one with intent ``p``: one step weighed ``c`` (the
        chance the session goes on), two steps ``c**2``; moves to something new left out (they are the
        background). [products] float64."""
        n, leaf = self.cat.n_products, int(self.leaf[p])
        start = np.zeros(n)
        start[p] = 1.0
        one = np.zeros(n)
        self._cluster_moves(start, [leaf], one)
        self._complement_moves(p, 1.0, one)
        two = np.zeros(n)
        self._cluster_moves(one, sorted({leaf, *self.cat.complements[leaf]}), two)
        c = self._cluster(p)
        for q in range(c.start, c.stop):  # complement after complement is left out (module docstring)
            self._complement_moves(q, float(one[q]), two)
        return np.asarray(self.go_on * one + self.go_on**2 * two)

    # ----- what the steps emit -----------------------------------------------------------------

    def _clicks(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected clicks of searches made with intent mass ``u`` [products]: on each product's own
        offers (the search's intent) and on it as another kind of listed product. ([n], [n]).

        Among what it is shown, a shopper clicks by taste (``SessionSimulator._listing``): the
        ``TASTE_SOURCES`` intents of most mass weigh each listed product by exp(strength x affinity -
        strength^2 / 2); the rest of the mass, spread thin, by popularity alone."""
        rates = self.rates.per_kind
        own = rates[OWN] * u
        beta, z = self.cfg.latent_strength, self.z
        if z is None:
            return own, self._spread(u)
        sources = np.argpartition(-u, min(TASTE_SOURCES, len(u) - 1))[:TASTE_SOURCES]
        sources = sources[u[sources] > 0]
        rest = u.copy()
        rest[sources] = 0.0
        other = self._spread(rest)
        by_leaf: dict[int, list[int]] = {}
        for q in sources.tolist():
            by_leaf.setdefault(int(self.leaf[q]), []).append(q)
        for leaf, qs in by_leaf.items():
            q = np.asarray(qs)
            mass, zq = u[q], z[q]  # [m], [m, d]
            listed = self.listed_complements[leaf]
            targets = [(leaf, LEAF, 1.0)] + [(comp, COMPLEMENT, 1.0 / len(listed)) for comp in listed]
            for target, kind, share in targets:
                t = self._leaf_slice(target)
                log_taste = beta * (z[t] @ zq.T) - beta * beta / 2.0  # [n_leaf, m]
                per_slot = self.rates.per_slot(kind, log_taste)
                shown = share * self.rates.slots[kind] * self.popularity[t] / self.leaf_mass[target]
                other[t] += shown * (per_slot @ mass)
            for one in qs:  # its cluster's other products, each listed once
                c = self._cluster(one)
                per_slot = self.rates.per_slot(CLUSTER, beta * (z[c] @ z[one]) - beta * beta / 2.0)
                per_slot[one - c.start] = 0.0
                other[c] += u[one] * per_slot
        return own, other

    def _spread(self, u: np.ndarray) -> np.ndarray:
        """Expected clicks of searches with intent mass ``u`` on other products than the intent, by
        popularity alone: its cluster, its leaf and the leaf's listed complements. [n] float64."""
        rates, cs, n = self.rates.per_kind, self.cat.cluster_size, len(u)
        pad = (-n) % cs
        per_cluster = np.concatenate([u, np.zeros(pad)]).reshape(-1, cs).sum(axis=1)
        sizes = np.bincount(np.arange(n) // cs)
        cluster_mass = np.repeat(per_cluster, sizes)[:n] - u
        other = rates[CLUSTER] * cluster_mass / np.maximum(np.repeat(sizes, sizes)[:n] - 1, 1)
        leaf_u = np.add.reduceat(u, self.leaf_start[:-1])  # [leaves]
        comp_u = np.zeros_like(leaf_u)
        for leaf in np.flatnonzero(leaf_u):
            listed = self.listed_complements[leaf]
            for comp in listed:
                comp_u[comp] += leaf_u[leaf] / len(listed)
        per_leaf = (rates[LEAF] * leaf_u + rates[COMPLEMENT] * comp_u) / self.leaf_mass
        return np.asarray(other + per_leaf[self.leaf] * self.popularity)

    def _scores(self, offer_id: int, k: int) -> tuple[int, np.ndarray, np.ndarray] | None:
        """(the query's product, candidate products [m], their offers' scores [m, most offers]); None for
        an id that is no offer of this catalogue. The ``k`` most popular products are always among the
        candidates (the background reaches every product)."""
        product, index = self.cat.offer_product(np.array([offer_id]))
        p, own_k = int(product[0]), int(index[0])
        if not 0 <= p < self.cat.n_products or own_k >= self.n_offers[p]:
            return None
        s = self.cfg.search_prob
        later = self.intent(p)
        now = np.zeros_like(later)
        now[p] = 1.0
        own, other = self._clicks(s * (now + later))
        view = (1.0 - s) * later
        products = np.union1d(np.flatnonzero(view + own + other), self.popular[: k + 1])
        view = view[products, None] + self.background_view[products, None]
        own, other = own[products, None], other[products, None] + self.background_click[products, None]
        scores = (
            view * self.traffic[products]
            + own * self._own_share(products)
            + other * _normalised(self.traffic[products] * self.quality[products])
        )
        return p, products, scores

    def next_offers(self, offer_id: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` offers most likely to be interacted with close after ``offer_id`` (itself left
        out): ids [k] int64 and scores [k] float64, best first (ties: smaller id). Empty for an id
        that is no offer of this catalogue."""
        found = self._scores(offer_id, k)
        if found is None:
            return np.zeros(0, np.int64), np.zeros(0)
        _, products, scores = found
        offers = self.cat.offer_id(
            np.repeat(products, scores.shape[1]), np.tile(np.arange(scores.shape[1]), len(products))
        )
        scores = scores.reshape(-1)
        keep = (scores > 0) & (offers != offer_id)
        offers, scores = offers[keep], scores[keep]
        order = np.lexsort((offers, -scores))[:k]
        return offers[order], scores[order]

    def next_products(self, offer_id: int, k: int) -> np.ndarray:
        """The best carousel of ``k`` for ``offer_id``: the other products most likely to be interacted
        with close after it (by the summed scores of their offers), each shown by its likeliest offer
        (ties: smaller id). [<= k] int64 offer ids; empty for an id that is no offer here."""
        found = self._scores(offer_id, k)
        if found is None:
            return np.zeros(0, np.int64)
        p, products, scores = found
        total = np.where(products == p, 0.0, scores.sum(axis=1))
        order = np.lexsort((products, -total))[:k]
        order = order[total[order] > 0]
        best = scores[order].argmax(axis=1)
        return np.asarray(self.cat.offer_id(products[order], best))


def generator_config(root: str) -> Any:
    """The config the marketplace under ``root`` was generated with (the ``generate`` stage's saved
    config), or None where the data came from elsewhere (no ground truth there)."""
    import yaml

    from retrieval import commit, config, stage_metrics, storage, tables

    path = stage_metrics.config_path(root, "generate")
    if commit.resolve(root, tables.TRUTH_OFFER_PRODUCT.name) is None or not storage.exists(path):
        return None
    return config.from_dict(yaml.safe_load(storage.read_text(path)))


def ceiling_rankings(
    root: str, carousels: bool = False
) -> Callable[[np.ndarray, int], dict[str, np.ndarray]] | None:
    """On synthetic data, a function (query offer ids [Q], k) -> {"ceiling": [Q, k], "ceiling_content":
    [Q, k]} ids (-1 padding): the full oracle's and the content oracle's rankings of offers (with
    ``carousels``: of other products, ``Oracle.next_products``); None elsewhere."""
    cfg = generator_config(root)
    if cfg is None:
        return None
    cat = Catalog(cfg.synth, cfg.seed)
    rates = search_click_rates(cat)
    oracles = {"ceiling": Oracle(cat, True, rates), "ceiling_content": Oracle(cat, False, rates)}

    def rank(queries: np.ndarray, k: int) -> dict[str, np.ndarray]:
        out = {name: np.full((len(queries), k), -1, dtype=np.int64) for name in oracles}
        for name, oracle in oracles.items():
            for i, q in enumerate(queries.tolist()):
                ids = oracle.next_products(int(q), k) if carousels else oracle.next_offers(int(q), k)[0]
                out[name][i, : len(ids)] = ids
        return out

    return rank


def expected_label_gain(
    cat: Catalog, offers: np.ndarray, positions: np.ndarray, grades: np.ndarray
) -> np.ndarray:
    """What ranking one logged listing by the generator's own click model gives: each offer's expected
    nDCG gain ``E[2^label - 1]`` (label 1 clicked, 2 carted, 3 bought) where it was shown, from its
    true grade, its position's examination, its seller's quality and the shopper's taste for its
    product (``SessionSimulator._listing``; the intent is the product of the grade-3 offers).
    Ranking by it maximises the expected DCG against the logged labels: the ceiling of nDCG against
    clicks. offers, positions, grades: [n]; returns [n] float64."""
    from retrieval.synth.sessions import P_CART, P_PURCHASE

    offers = np.asarray(offers, dtype=np.int64)
    grades = np.asarray(grades, dtype=np.int64)
    product, k = cat.offer_product(offers)
    sellers = cat.sellers(product)
    appeal = cat.seller_quality(sellers[np.arange(len(offers)), np.minimum(k, sellers.shape[1] - 1)])
    beta = cat.cfg.latent_strength
    own = product[grades == 3]
    if beta and len(own):
        taste = np.exp(beta * (cat.latent(product) @ cat.latent(own[:1])[0]) - beta * beta / 2.0)
        appeal = np.where(product == own[0], appeal, appeal * taste)
    click = click_probability(np.asarray(positions), grades, appeal, cat.cfg.examination_eta)
    cart = P_CART[grades]
    bought = np.minimum(P_PURCHASE[grades] * appeal, 1.0)
    return np.asarray(click * ((1.0 - cart) * 1.0 + cart * (1.0 - bought) * 3.0 + cart * bought * 7.0))
