"""Offer features for the encoder, hashed into fixed vocabularies (pure numpy, no fitted state).

Hashing keeps the featurizer stateless: the same function runs on any executor, on a catalogue of any
size, and a new offer's words get ids without a vocabulary rebuild. Title words and character n-grams
(``#ab``, ``abc``… of each word padded with ``#``) feed embedding bags, which is what lets the model
match "iphone15" with "iphone 15" and survive sellers' typos; category, price bucket and seller are
single ids; the offer id is hashed too, for the collaborative part that content cannot explain.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from retrieval.mining.listings import tokenize


@dataclass(frozen=True)
class Vocab:
    """Sizes of the hashed vocabularies (part of the model's config: changing one changes every id)."""

    words: int = 1 << 17  # title word buckets
    chars: int = 1 << 17  # character n-gram buckets
    char_n: tuple[int, ...] = (3, 4)  # n-gram lengths
    categories: int = 4096  # category id buckets
    prices: int = 64  # log-price buckets (25% wide)
    sellers: int = 1 << 16  # seller id buckets
    ids: int = 1 << 18  # offer id buckets (collaborative embedding; collisions grow with the catalogue)
    max_words: int = 16  # title words kept per offer (padded with 0 to this length)
    max_chars: int = 128  # character n-grams kept per offer (padded with 0 to this length)


def stable_hash(text: str, salt: str, buckets: int) -> int:
    """A hash of ``text`` that is the same in every process and Python version (not ``hash()``), in [1, buckets).

    Bucket 0 is kept for "missing".
    """
    return 1 + zlib.crc32(f"{salt}\x1f{text}".encode()) % (buckets - 1)


def char_ngrams(word: str, sizes: Sequence[int]) -> list[str]:
    padded = f"#{word}#"
    return [padded[i : i + n] for n in sizes for i in range(len(padded) - n + 1)]


def price_bucket(price: float | None, buckets: int) -> int:
    """0 for missing/invalid, else 1 + floor(log_1.25(1 + price)) clipped to the last bucket."""
    if price is None or not math.isfinite(price) or price < 0:
        return 0
    return min(buckets - 1, 1 + int(math.log1p(price) / math.log(1.25)))


def id_bucket(value: int | None, salt: str, buckets: int) -> int:
    return 0 if value is None else stable_hash(str(int(value)), salt, buckets)


@dataclass
class OfferFeatures:
    """Features of a batch of offers, ready for ``nn.EmbeddingBag`` with ``padding_idx=0``.

    Shapes: words [B, max_words], chars [B, max_chars] int64, right-padded with 0 (fixed lengths keep
    batches rectangular, which Petastorm needs and DataLoaders like); category, price, seller,
    offer [B] int64 (0 = missing).
    """

    words: np.ndarray
    chars: np.ndarray
    category: np.ndarray
    price: np.ndarray
    seller: np.ndarray
    offer: np.ndarray

    def __len__(self) -> int:
        return len(self.category)


def offer_row_features(row: Mapping[str, Any], vocab: Vocab) -> dict[str, Any]:
    """Hashed features of one offer (what the featurize job stores per offer, as plain lists and ints)."""
    words = tokenize(row.get("title"))
    word_ids = [stable_hash(w, "w", vocab.words) for w in words][: vocab.max_words]
    char_ids = [stable_hash(g, "c", vocab.chars) for w in words for g in char_ngrams(w, vocab.char_n)][
        : vocab.max_chars
    ]
    return {
        "word_ids": word_ids + [0] * (vocab.max_words - len(word_ids)),
        "char_ids": char_ids + [0] * (vocab.max_chars - len(char_ids)),
        "category": id_bucket(row.get("category_id"), "cat", vocab.categories),
        "price_bucket": price_bucket(row.get("price"), vocab.prices),
        "seller": id_bucket(row.get("seller_id"), "seller", vocab.sellers),
        "offer": id_bucket(row.get("offer_id"), "offer", vocab.ids),
    }


def collate(rows: Sequence[Mapping[str, Any]]) -> OfferFeatures:
    """Stacks per-offer features (``offer_row_features`` dicts) into one batch."""

    def ints(key: str) -> np.ndarray:
        return np.array([r[key] for r in rows], dtype=np.int64)

    return OfferFeatures(
        np.array([r["word_ids"] for r in rows], dtype=np.int64).reshape(len(rows), -1),
        np.array([r["char_ids"] for r in rows], dtype=np.int64).reshape(len(rows), -1),
        ints("category"),
        ints("price_bucket"),
        ints("seller"),
        ints("offer"),
    )


def take(f: OfferFeatures, idx: np.ndarray | slice) -> OfferFeatures:
    """Rows ``idx`` of a feature batch (an index array or a slice)."""
    return OfferFeatures(
        f.words[idx], f.chars[idx], f.category[idx], f.price[idx], f.seller[idx], f.offer[idx]
    )
