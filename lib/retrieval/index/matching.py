"""Offers matched to the catalogue's products where the catalogue leaves ``product_id`` null.

Sellers describe one product in their own words: prefixes and suffixes that sell ("free shipping",
"sale", "2026"), details left out, their own case and word order, the odd typo. An offer without a
``product_id`` is matched to a product card of the catalogue, within its category:

- by its photo, when it shows the very photo (``image_ref``; on a real catalogue, a hash of the image's
  content) that offers of one product, and only one, show: sellers reuse the maker's photos;
- else by its title, when its normalised title (:func:`normalise`: lower-case alphanumeric tokens,
  marketing words and years removed, each token's letters sorted, so that two swapped letters leave
  it unchanged) holds exactly the words of the product's description (the union of the normalised
  titles of its offers that carry the ``product_id``), at least ``min_tokens`` of them, no other
  product's description within the price band holds them all, and its price is within a factor
  ``price_band`` of the product's (the median of those offers'). A title that leaves a detail out
  could as well be a variant the catalogue has no card for: on the synthetic catalogue, title
  matches that only used the product's words were right 60-64% of the time, those that used all of
  them 68-83%;
- with a ``look`` (what a photo shows, :func:`photo_look`: the colours of the object with the
  background cut away, and its shape; another shot of one product moves them little, a variant in
  another colour or pattern a lot), the photo decides among the products the title fits instead of
  the title rule: of the products whose description holds the title's words and whose price is in
  the band, the one whose offers' photos look nearest, when it is within ``max_look_distance`` and
  the runner-up is at least ``LOOK_MARGIN`` times farther. When no description holds all of a
  title's words (a seller named the colour, which no offer of the product did), the products missing
  one of them are candidates, at ``LOOSE_LOOK`` times the distance. On the embedded default, title
  matches alone were right 83% of the time; decided by the photo every match was right, and recall
  rose from 0.86 to 0.95 (``tests/test_matching.py`` measures it on ``conf/test.yaml``'s catalogue).

Otherwise an offer that fits several products stays unmatched, so a match is precise.

Offers that stay unmatched are keyed by their category and normalised title
(:func:`unmatched_key`), whoever sells them, so two sellers' identical listings of a product the
catalogue does not know still collapse into one carousel slot. Then each takes the key of a near
duplicate (:func:`near_duplicate_key`): of its nearest offers by embedding, whatever their category,
one whose photo looks like its own (another shot of one product), at a price in the band and with
words of the title in common. That catches what the rules above cannot: a title whose words
contradict the product's (another model number, a pack size), an offer filed under another
category, a product no offer of the catalogue carries. The look distance (0.12) was chosen on the
embedded default's carousels, the run it is reported on: of 1,500 sampled pairs of offers of one
product still shown together, 97% were within it; of 1,500 pairs of different products of one
category in one carousel, only one was (0.0996, and its prices 1.5x apart: the price band told them
apart), the next at 0.16. Matches by near duplicate were right 96% of the time there, against 100%
for the rules above (README, "Product matching and duplicates"). ``tests/test_matching.py``
measures precision and recall against the synthetic generator's truth.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.mining.listings import tokenize

# Words that sell rather than describe (lower case; multi-word phrases are removed word by word).
# fmt: off
MARKETING = frozenset((
    "new", "original", "genuine", "authentic", "official", "hot", "sale", "sales", "free", "shipping",
    "delivery", "fast", "express", "best", "bestseller", "top", "quality", "warranty", "guarantee", "in",
    "stock", "gift", "limited", "edition", "version", "eu", "uk", "us", "with", "box", "returns", "promo",
    "promotion", "discount", "deal", "cheap", "bargain", "offer", "hit", "brand", "oem",
))
# fmt: on
_YEAR = re.compile(r"^(19|20)\d\d$")


def normalise(title: str | None) -> frozenset[str]:
    """The words of a title that describe the product, each as its sorted letters."""
    return frozenset("".join(sorted(t)) for t in tokenize(title) if t not in MARKETING and not _YEAR.match(t))


def unmatched_key(category: int | None, tokens: frozenset[str]) -> str:
    """The collapse key of an offer no product matched: its category and normalised title."""
    return f"t{'' if category is None else int(category)}:{' '.join(sorted(tokens))}"


@dataclass(frozen=True)
class Offer:
    offer_id: int
    product_id: int | None
    category: int | None
    price: float | None
    tokens: frozenset[str]  # normalise(title)
    photo: str | None = None


@dataclass(frozen=True)
class Match:
    product_id: int
    by: str  # "photo", "title" or "look"


Look = Callable[[str], "np.ndarray | None"]  # a photo reference -> photo_look of it (None: unreadable)
LOOK_BINS = 8  # chromaticity histogram bins per axis
LOOK_MARGIN = 1.5  # a look match needs the runner-up product this many times farther
LOOK_PHOTOS = 4  # photos per product compared (the first by reference): bounds the cost per offer
LOOSE_LOOK = 0.5  # a title no description holds may miss one word, if the photo is this much nearer


def photo_look(img: np.ndarray) -> np.ndarray | None:
    """What a product photo shows, whatever the shot: the histogram of the object's chromaticity
    (r / (r+g+b), g / (r+g+b): the light's strength divides out) over ``LOOK_BINS`` x ``LOOK_BINS``
    bins, as shares of its pixels, then the log aspect ratio of its bounding box. The object is the
    photo less its studio background (``visual.street.object_mask``). [LOOK_BINS**2 + 1] float32, or
    None when no object can be cut out."""
    from retrieval.visual.street import object_mask

    mask = object_mask(img)
    if mask.sum() < 16:
        return None
    pixels = img[mask].astype(np.float64)
    chroma = pixels / (pixels.sum(axis=1, keepdims=True) + 1e-6)
    hist, _, _ = np.histogram2d(chroma[:, 0], chroma[:, 1], bins=LOOK_BINS, range=[[0.0, 1.0], [0.0, 1.0]])
    rows, cols = np.nonzero(mask)
    aspect = (rows.max() - rows.min() + 1) / (cols.max() - cols.min() + 1)
    return np.append(hist.ravel() / len(pixels), np.log(aspect)).astype(np.float32)


def look_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Half the L1 distance of two looks' histograms (0..1) plus half their log aspect ratios' gap."""
    return float(0.5 * np.abs(a[:-1] - b[:-1]).sum() + 0.5 * abs(float(a[-1] - b[-1])))


def match(
    offers: Iterable[Offer],
    price_band: float = 1.5,
    min_tokens: int = 2,
    look: Look | None = None,
    max_look_distance: float = 0.1,
) -> dict[int, Match]:
    """{offer_id: Match} for the offers without a product_id that match one product (module
    docstring); ``offers``: one category's, or any mix (categories are kept apart). ``look``: photo
    reference -> :func:`photo_look` (None: no matching by what photos show)."""
    described: dict[tuple[int | None, int], set[str]] = defaultdict(set)
    prices: dict[tuple[int | None, int], list[float]] = defaultdict(list)
    photos: dict[tuple[int | None, str], set[int]] = defaultdict(set)
    shown: dict[tuple[int | None, int], set[str]] = defaultdict(set)  # (category, product) -> photos
    unknown = []
    for o in offers:
        if o.product_id is None:
            unknown.append(o)
            continue
        described[(o.category, o.product_id)] |= o.tokens
        if o.photo:
            photos[(o.category, o.photo)].add(o.product_id)
            shown[(o.category, o.product_id)].add(o.photo)
        if o.price is not None and o.price > 0:
            prices[(o.category, o.product_id)].append(o.price)
    median = {key: sorted(v)[len(v) // 2] for key, v in prices.items()}
    holding: dict[tuple[int | None, str], set[int]] = defaultdict(set)  # (category, word) -> products
    for (category, product), words in described.items():
        for w in words:
            holding[(category, w)].add(product)
    out: dict[int, Match] = {}
    for o in unknown:
        shown_by = photos.get((o.category, o.photo), set()) if o.photo else set()
        if len(shown_by) == 1:
            out[o.offer_id] = Match(next(iter(shown_by)), "photo")
            continue
        if len(o.tokens) < min_tokens:
            continue
        holds = Counter(p for w in o.tokens for p in holding.get((o.category, w), ()))  # words held
        in_band = {p for p in holds if _in_band(o.price, median.get((o.category, p)), price_band)}
        fits = {p for p in in_band if holds[p] == len(o.tokens)}  # descriptions holding the title's words
        mine = look(o.photo) if look is not None and o.photo else None
        if look is not None and mine is not None:  # the photo decides among the products the title fits
            chosen = _nearest_look(mine, o.category, fits, shown, look, max_look_distance) if fits else None
            if not fits and len(o.tokens) > min_tokens:  # a word no offer of the product used (a colour)
                loose = {p for p in in_band if holds[p] == len(o.tokens) - 1}
                chosen = _nearest_look(mine, o.category, loose, shown, look, max_look_distance * LOOSE_LOOK)
            if chosen is not None:
                exact = len(fits) == 1 and o.tokens == described[(o.category, chosen)]
                out[o.offer_id] = Match(chosen, "title" if exact else "look")
        elif len(fits) == 1:
            only = next(iter(fits))
            if o.tokens == described[(o.category, only)]:
                out[o.offer_id] = Match(only, "title")
    return out


def _nearest_look(
    mine: np.ndarray,
    category: int | None,
    fits: set[int],
    shown: dict[tuple[int | None, int], set[str]],
    look: Look,
    max_distance: float,
) -> int | None:
    """The product of ``fits`` whose photos look nearest to ``mine`` (an offer's look), if near enough
    and clearly the nearest (``LOOK_MARGIN``), else None."""
    nearest: list[tuple[float, int]] = []
    for product in fits:
        looks = [look(ref) for ref in sorted(shown.get((category, product), ()))[:LOOK_PHOTOS]]
        distances = [look_distance(mine, x) for x in looks if x is not None]
        if distances:
            nearest.append((min(distances), product))
    if not nearest:
        return None
    nearest.sort()
    best, product = nearest[0]
    runner_up = nearest[1][0] if len(nearest) > 1 else float("inf")
    if best <= max_distance and runner_up > LOOK_MARGIN * best and runner_up > best:
        return product
    return None


def _in_band(price: float | None, reference: float | None, band: float) -> bool:
    """Whether ``price`` is within a factor ``band`` of ``reference`` (true when either is unknown:
    missing, not positive, or NaN; ingest lets a price of 0 through)."""
    if price is None or reference is None or not (price > 0 and reference > 0):
        return True
    return 1.0 / band <= price / reference <= band


def collapse_keys(offers: Sequence[Offer], found: dict[int, Match]) -> dict[int, str]:
    """Every offer's collapse key, the identity a carousel shows once: ``p<product_id>`` for the
    catalogue's product or the one the offer matched (``found``: :func:`match`'s result), else
    :func:`unmatched_key`."""
    keys = {}
    for o in offers:
        product = (
            o.product_id if o.product_id is not None else getattr(found.get(o.offer_id), "product_id", None)
        )
        keys[o.offer_id] = f"p{int(product)}" if product is not None else unmatched_key(o.category, o.tokens)
    return keys


@dataclass(frozen=True)
class Listing:
    """An offer as :func:`near_duplicate_key` compares it: its collapse key so far, price, normalised
    title and photo."""

    offer_id: int
    key: str
    price: float | None
    tokens: frozenset[str]
    photo: str | None


def same_listing(
    a: Listing, b: Listing, look: Look, price_band: float, min_shared: int, max_look_distance: float
) -> bool:
    """Whether two offers show one product: prices within ``price_band`` of each other, at least
    ``min_shared`` words of their normalised titles in common, and photos that look alike
    (:func:`look_distance` within ``max_look_distance``). The photos are compared last, and only
    loaded then."""
    if not _in_band(a.price, b.price, price_band) or len(a.tokens & b.tokens) < min_shared:
        return False
    if not a.photo or not b.photo:
        return False
    la, lb = look(a.photo), look(b.photo)
    return la is not None and lb is not None and look_distance(la, lb) <= max_look_distance


def near_duplicate_key(
    offer: Listing,
    neighbours: Sequence[Listing],
    look: Look,
    price_band: float = 1.5,
    min_shared: int = 2,
    max_look_distance: float = 0.12,
) -> str | None:
    """The collapse key an unmatched offer takes from its nearest offers by embedding (``neighbours``,
    nearest first) that show its product (:func:`same_listing`): the product (``p...``) of such
    offers where they show one product and only one (two products that both look like it leave it
    unmatched: precision first), else, where only offers no product matched qualify, the least of
    their keys and its own. One hop only, not the connected group: an offer takes the least key among
    those it sees, so offers of an unknown product searched from different ends may still keep two
    keys. None: no neighbour shows its product."""
    products: set[str] = set()
    grouped = []  # keys of offers no product matched either, that show its product
    for n in neighbours:
        if n.key == offer.key or (n.key.startswith("p") and n.key in products):
            continue  # its product already qualified: no photo to load
        if not same_listing(offer, n, look, price_band, min_shared, max_look_distance):
            continue
        if n.key.startswith("p"):
            products.add(n.key)
        else:
            grouped.append(n.key)
    if products:
        return next(iter(products)) if len(products) == 1 else None
    return min([offer.key, *grouped]) if grouped else None
