"""Offers of the synthetic catalogue, one block of products at a time, with injected bad rows.

Each offer's title is its product's tokens as its seller habitually writes them (prefixes, suffixes,
dropped tokens, case, word order, typos), so content is informative but imperfect. A block's output is
a pyarrow table of the raw ``offers`` columns plus the ground truth (``true_*``) and an ``_injected``
marker that the Spark job splits off before writing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from retrieval.synth import vocab
from retrieval.synth.catalog import (
    S_IMAGE,
    S_MISCAT,
    S_MISSING,
    S_OFFER_PRICE,
    S_SELLER_STYLE,
    S_SHOT,
    S_TITLE,
    S_UPDATED,
    Catalog,
    format_ts,
    hash64,
    normal,
    unit,
)

OFFER_SCHEMA = pa.schema(
    [
        ("offer_id", pa.int64()),
        ("title", pa.string()),
        ("category_id", pa.int32()),
        ("price", pa.float64()),
        ("seller_id", pa.int64()),
        ("product_id", pa.int64()),
        ("image_ref", pa.string()),
        ("updated_at", pa.string()),
        ("deleted", pa.bool_()),
        # ground truth and bookkeeping, split off before the raw table is written
        ("true_product_id", pa.int64()),
        ("true_cluster_id", pa.int64()),
        ("true_category_id", pa.int32()),
        ("_injected", pa.string()),
    ]
)


def seller_title(t: dict[str, str], style: np.ndarray, u: np.ndarray) -> str:
    """The title a seller gives its offer of a product.

    Args:
        t: the product's tokens (``Catalog.tokens``).
        style: [6] uniforms fixed per seller (its habits).
        u: [6] uniforms of this one offer.
    """
    core = [t["brand"], t["noun"], t["series"]]
    extras = [t["spec"], t["colour"]]
    # Sellers who drop details drop them often; others keep them.
    drop_rate = 0.05 + 0.4 * style[0]
    extras = [e for e, x in zip(extras, u[:2], strict=True) if x >= drop_rate]
    if u[2] < drop_rate * 0.5:
        core = [core[0], core[1]]  # no model line
    words = extras + core if style[1] < 0.2 else core + extras
    if style[2] < 0.35:
        words = [vocab.PREFIXES[int(style[3] * len(vocab.PREFIXES))], *words]
    if style[4] < 0.35:
        words = [*words, vocab.SUFFIXES[int(u[3] * len(vocab.SUFFIXES))]]
    title = " ".join(words)
    if u[4] < 0.06 and len(title) > 4:  # a typo: two adjacent letters swapped
        i = 1 + int(u[5] * (len(title) - 3))
        title = title[:i] + title[i + 1] + title[i] + title[i + 2 :]
    if style[5] < 0.1:
        return title.upper()
    if style[5] < 0.55:
        return title.title()
    return title


def generate_offers(cat: Catalog, lo: int, hi: int, block: int) -> pa.Table:
    """Offers of products ``[lo, hi)`` plus this block's injected bad offer rows.

    Injected rows are *extra* rows (the clean catalogue stays exactly as the truth says): copies with a
    null ``offer_id`` (kind ``null_key``) and offers with a fresh id and a negative or NaN price
    (``bad_price``), which no event refers to.
    """
    cfg, seed = cat.cfg, cat.seed
    products = np.arange(lo, hi, dtype=np.int64)
    counts = cat.n_offers(products)
    prod = np.repeat(products, counts)
    k = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
    offer_ids = cat.offer_id(prod, k)
    leaves = cat.leaf(prod)
    tops = cat.leaf_top[leaves]
    table = cat.sellers(products)
    sellers = table[np.arange(table.shape[1])[None, :] < counts[:, None]].tolist()  # row-major: by product, k
    product_tokens = dict(zip(products.tolist(), cat.tokens(products), strict=True))
    styles = unit(seed, S_SELLER_STYLE, np.asarray(sellers, dtype=np.int64)[:, None], np.arange(6)[None, :])
    own = unit(seed, S_TITLE, offer_ids[:, None], np.arange(6)[None, :])
    titles = [seller_title(product_tokens[int(p)], styles[i], own[i]) for i, p in enumerate(prod)]
    # 2% of offers are filed under a sibling leaf of the same top category by their seller.
    category = leaves.copy()
    miscat = unit(seed, S_MISCAT, offer_ids) < 0.02
    if miscat.any():
        for i in np.flatnonzero(miscat):
            siblings = np.flatnonzero(cat.leaf_top == tops[i])
            category[i] = siblings[int(hash64(seed, S_MISCAT, offer_ids[i], 1) % np.uint64(len(siblings)))]
    price = np.round(cat.price(prod) * np.exp(0.08 * normal(seed, S_OFFER_PRICE, offer_ids)), 2)
    missing = unit(seed, S_MISSING, offer_ids) < cfg.product_id_missing
    prodkey = hash64(seed, S_IMAGE, prod)
    shot = hash64(seed, S_SHOT, offer_ids) % np.uint64(3)
    image_ref = [f"synth://img/{int(a):016x}/{int(b)}" for a, b in zip(prodkey, shot, strict=True)]
    updated = format_ts(unit(seed, S_UPDATED, offer_ids) * cfg.days * 86400.0, cfg.start_date)
    n = len(offer_ids)
    cols: dict[str, list] = {
        "offer_id": offer_ids.tolist(),
        "title": titles,
        "category_id": category.astype(np.int32).tolist(),
        "price": price.tolist(),
        "seller_id": sellers,
        "product_id": [None if m else int(p) for m, p in zip(missing, prod, strict=True)],
        "image_ref": image_ref,
        "updated_at": updated,
        "deleted": [False] * n,
        "true_product_id": prod.tolist(),
        "true_cluster_id": cat.cluster(prod).tolist(),
        "true_category_id": leaves.astype(np.int32).tolist(),
        "_injected": [None] * n,
    }
    if cfg.bad_row_rate > 0 and n:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7, block]))
        rows = [{name: cols[name][i] for name in cols} for i in range(n)]
        extra: list[dict] = []
        for i in rng.choice(n, size=min(n, rng.binomial(n, cfg.bad_row_rate)), replace=False):
            row = dict(rows[i], offer_id=None, _injected="null_key")
            extra.append(row)
        for j in range(rng.binomial(n, cfg.bad_row_rate)):
            row = dict(rows[int(rng.integers(n))])
            fresh = (1 << 42) + block * 1_000_000 + j  # outside the id space of real offers
            row.update(
                offer_id=fresh,
                price=float("nan") if rng.random() < 0.5 else -round(float(rng.uniform(1, 500)), 2),
                true_product_id=None,
                true_cluster_id=None,
                true_category_id=None,
                _injected="bad_price",
            )
            extra.append(row)
        for row in extra:
            for name in cols:
                cols[name].append(row[name])
    return pa.Table.from_pydict(cols, schema=OFFER_SCHEMA)
