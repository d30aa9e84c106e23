"""The session next-item protocol of SR-GNN (Wu et al., AAAI 2019), and its simple baselines.

A dataset folder holds ``train_sessions.txt`` (one session per line, item ids in click order) and
``test_prefix_label.tsv`` (header ``prefix<TAB>label``: the session so far, the next item). For every
test prefix a method ranks **all** items; P@20 (= Recall@20 = HR@20) is the share of prefixes whose
label is in the top 20, MRR@20 the mean reciprocal rank of the label within the top 20 (0 outside), both
in %. Baselines here: POP (global popularity), S-POP (items of the prefix by their count in it, then
POP), and Item-KNN (items most similar to the prefix's last item, cosine over sessions).

Measured on ../shared/data/diginetica (tests/test_session_benchmark.py): POP 0.93 / 0.21 and S-POP
21.08 / 13.69 reproduce the dataset's recomputed figures exactly, which confirms the protocol; Item-KNN
35.06 / 11.00 (published 35.75 / 11.57), with repeats allowed 43.51 / 16.25.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Published P@20 / MRR@20 (%) on a dataset's standard split, keyed by dataset name. A folder may also
# carry its own in ``published.json`` ({method: {"p_at_20": x, "mrr_at_20": y}, "source": "..."}).
PUBLISHED: dict[str, dict[str, Any]] = {
    "diginetica": {
        "source": "SR-GNN (Wu et al., AAAI 2019), Table 2; same split (CIKM Cup 2016, SR-GNN preprocessing)",
        "methods": {
            "pop": (0.89, 0.20),
            "s_pop": (21.06, 13.68),
            "item_knn": (35.75, 11.57),
            "bpr_mf": (5.24, 1.98),
            "fpmc": (26.53, 6.95),
            "gru4rec": (29.45, 8.33),
            "narm": (49.70, 16.17),
            "stamp": (45.64, 14.32),
            "sr_gnn": (50.73, 17.59),
        },
    },
}


def published(name: str, folder: str) -> dict[str, Any]:
    """The published figures to compare with: ``<folder>/published.json`` if present, else :data:`PUBLISHED`."""
    own = os.path.join(folder, "published.json")
    if os.path.exists(own):
        with open(own, encoding="utf-8") as f:
            data = json.load(f)
        return {"source": data.pop("source", own), "methods": data}
    known = PUBLISHED.get(name)
    if known is None:
        return {"source": None, "methods": {}}
    return {
        "source": known["source"],
        "methods": {m: {"p_at_20": p, "mrr_at_20": r} for m, (p, r) in known["methods"].items()},
    }


@dataclass
class SessionData:
    train: list[list[int]]  # training sessions, item ids in click order
    prefixes: list[list[int]]  # test prefixes
    labels: np.ndarray  # [T] next item of each prefix
    n_items: int  # item ids are 1..n_items (0 is never an item)


def load(folder: str) -> SessionData:
    """Reads the two files of a session dataset folder; errors name the file and line."""
    train_path = os.path.join(folder, "train_sessions.txt")
    test_path = os.path.join(folder, "test_prefix_label.tsv")
    for p in (train_path, test_path):
        if not os.path.exists(p):
            raise FileNotFoundError(
                f"{p} not found: a session dataset folder needs train_sessions.txt and test_prefix_label.tsv"
            )
    train = []
    with open(train_path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    train.append([int(x) for x in line.split()])
                except ValueError:
                    raise ValueError(
                        f"{train_path}:{n}: not a list of integer item ids: {line.strip()[:80]!r}"
                    ) from None
    prefixes, labels = [], []
    with open(test_path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["prefix", "label"]:
            raise ValueError(f"{test_path}: header must be 'prefix<TAB>label'; got {header}")
        for n, line in enumerate(f, 2):
            if not line.strip():
                continue
            try:
                prefix, label = line.rstrip("\n").split("\t")
                prefixes.append([int(x) for x in prefix.split()])
                labels.append(int(label))
            except ValueError:
                raise ValueError(
                    f"{test_path}:{n}: expected 'items<TAB>label'; got {line.strip()[:80]!r}"
                ) from None
    n_items = max(max(max(s) for s in train), max(labels), max(max(p) for p in prefixes if p))
    return SessionData(train, prefixes, np.asarray(labels, dtype=np.int64), n_items)


def p_and_mrr_at_k(ranked: np.ndarray, labels: np.ndarray, k: int = 20) -> tuple[float, float]:
    """P@k and MRR@k in % for ranked [T, >=k] item ids and labels [T]."""
    hits = ranked[:, :k] == labels[:, None]
    found = hits.any(axis=1)
    ranks = hits.argmax(axis=1) + 1
    return 100.0 * float(found.mean()), 100.0 * float(np.where(found, 1.0 / ranks, 0.0).mean())


def popularity(train: Sequence[Sequence[int]], n_items: int) -> np.ndarray:
    """Item counts over the training sessions: [n_items + 1] (index = item id)."""
    counts = np.zeros(n_items + 1, dtype=np.int64)
    for s in train:
        np.add.at(counts, np.asarray(s, dtype=np.int64), 1)
    return counts


def pop_ranking(counts: np.ndarray, k: int) -> np.ndarray:
    """The k most popular items (ties by id): [k]."""
    order = np.lexsort((np.arange(len(counts)), -counts))
    return order[order != 0][:k]


def s_pop(prefixes: Sequence[Sequence[int]], counts: np.ndarray, k: int = 20) -> np.ndarray:
    """S-POP: the prefix's items by their count in the prefix (ties: global popularity, then id), then POP."""
    top = pop_ranking(counts, k + 50)
    out = np.zeros((len(prefixes), k), dtype=np.int64)
    for i, p in enumerate(prefixes):
        c = Counter(p)
        own = sorted(c, key=lambda x: (-c[x], -counts[x] if x < len(counts) else 0, x))[:k]
        rest = [x for x in top if x not in c][: k - len(own)]
        out[i] = own + rest
    return out


def item_knn(
    train: Sequence[Sequence[int]],
    n_items: int,
    prefixes: Sequence[Sequence[int]],
    k: int = 20,
    include_self: bool = False,
    block: int = 4096,
    progress_s: float = 30.0,
) -> np.ndarray:
    """Item-KNN on the last item: cosine between items' session-occurrence vectors, top k; POP fills gaps.

    ``include_self=False`` is the classic method (what SR-GNN's table reports); True lets the last item
    recommend itself, which pays off on logs with many repeated clicks. A progress line every
    ``progress_s`` seconds (a 60k-item set takes minutes).
    """
    from scipy import sparse

    from retrieval.progress import Progress

    rows = np.repeat(np.arange(len(train)), [len(set(s)) for s in train])
    cols = np.concatenate([np.fromiter(set(s), dtype=np.int64) for s in train])
    x = sparse.csr_matrix(
        (np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(train), n_items + 1)
    )
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    co = (x.T @ x).tocsr()  # [items, items] co-occurrence counts
    counts = popularity(train, n_items)
    fill = pop_ranking(counts, k + 1)
    last = np.array([p[-1] if p else 0 for p in prefixes], dtype=np.int64)
    out = np.zeros((len(prefixes), k), dtype=np.int64)
    name = "item_knn_with_repeats" if include_self else "item_knn"
    with Progress(f"{name} scoring", total=len(last), unit="prefixes", every_s=progress_s) as progress:
        for lo in range(0, len(last), block):
            _item_knn_block(co, norms, fill, last, lo, block, k, include_self, out)
            progress.update(min(block, len(last) - lo))
    return out


def _item_knn_block(
    co: Any,
    norms: np.ndarray,
    fill: np.ndarray,
    last: np.ndarray,
    lo: int,
    block: int,
    k: int,
    include_self: bool,
    out: np.ndarray,
) -> None:
    """Item-KNN's top ``k`` for the prefixes ``lo:lo+block`` (their last items ``last``), into ``out``."""
    sims = co[last[lo : lo + block]].toarray()  # [b, items]
    sims = sims / np.maximum(norms[last[lo : lo + block], None] * norms[None, :], 1e-12)
    if not include_self:
        sims[np.arange(len(sims)), last[lo : lo + block]] = 0.0
    sims[:, 0] = -1.0
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.take_along_axis(sims, top, axis=1)
    top = np.take_along_axis(top, np.argsort(-order, axis=1, kind="stable"), axis=1)
    valid = np.take_along_axis(sims, top, axis=1) > 0
    for i in range(len(top)):
        got = [int(t) for t, v in zip(top[i], valid[i], strict=True) if v]
        out[lo + i] = (got + [int(f) for f in fill if f not in got])[:k]


def iter_methods(
    data: SessionData, k: int = 20, progress_s: float = 30.0
) -> Iterator[tuple[str, np.ndarray]]:
    counts = popularity(data.train, data.n_items)
    yield "pop", np.tile(pop_ranking(counts, k), (len(data.prefixes), 1))
    yield "s_pop", s_pop(data.prefixes, counts, k)
    yield "item_knn", item_knn(data.train, data.n_items, data.prefixes, k, progress_s=progress_s)
    knn = item_knn(data.train, data.n_items, data.prefixes, k, include_self=True, progress_s=progress_s)
    yield "item_knn_with_repeats", knn


def encoder_methods(
    train: Sequence[Sequence[int]],
    prefixes: Sequence[Sequence[int]],
    item_ids: np.ndarray,
    s: Any,
    seed: int,
    model_dir: str,
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]], str]:
    """The encoder in its id-only mode, trained on every training prefix -> next item (sampled softmax,
    in-batch negatives, logQ correction, learned recency pooling of the last ``s.max_len`` items) and
    saved under ``model_dir/<version>`` (with ``item_ids``: dense index i is item ``item_ids[i - 1]``); then the top-``s.k`` items of every test prefix by its session
    query (``encoder_session``) and by its last item's nearest items (``encoder_last_item``, what the
    recs table serves). Returns ({method: [prefixes, k] items}, the training history, the model dir).

    ``s``: the ``sessions`` config section. Dense item indices 1..n are the id embedding's rows (no
    hashing, no collisions)."""
    import dataclasses

    import torch

    from retrieval import storage
    from retrieval.artifacts import content_version
    from retrieval.encoder.features import Vocab
    from retrieval.encoder.model import OfferTower, SessionPool, TowerConfig
    from retrieval.encoder.sessions import (
        histories,
        id_features,
        item_vectors,
        session_examples,
        session_vectors,
        train_sessions,
    )
    from retrieval.evaluation import exact_search
    from retrieval.training.models import save_model

    n_items = len(item_ids)
    torch.manual_seed(seed)
    tower_cfg = TowerConfig(
        dim=s.dim,
        embed_dim=s.dim,
        content=False,
        id_dropout=0.0,
        session_len=s.max_len,
        vocab=Vocab(ids=n_items + 1),
    )
    tower, pool, features = OfferTower(tower_cfg), SessionPool(tower_cfg), id_features()
    examples = session_examples(train, s.max_len)
    history = train_sessions(
        tower,
        pool,
        features,
        examples,
        n_items,
        s.epochs,
        s.batch_size,
        s.lr,
        s.temperature,
        s.uniform_negatives,
        seed=seed,
    )
    version = content_version(
        {"encoder": tower_cfg.to_dict(), "sessions": dataclasses.asdict(s), "seed": seed}
    )
    out_dir = storage.join(model_dir, version)
    save_model(tower, out_dir, {"item_ids": np.asarray(item_ids).tolist()}, parts={"session_pool": pool})
    items = item_vectors(tower, features, n_items)
    dense = np.arange(1, n_items + 1)
    hist, lengths = histories(prefixes, s.max_len)
    last = hist[:, -1]
    ranked = {
        "encoder_session": exact_search(
            session_vectors(tower, pool, features, hist, lengths), items, dense, s.k
        )[1],
        "encoder_last_item": exact_search(items[last - 1], items, dense, s.k, exclude=last)[1],
    }
    return ranked, history, out_dir


def table_lines(figures: dict[str, dict[str, float]], pub: dict[str, Any], k: int) -> list[str]:
    """Our methods' P@k / MRR@k, with the published figure beside each where there is one."""
    lines = [f"{'method':<22}{'P@' + str(k):>8}{'MRR@' + str(k):>9}   (published)"]
    for m, f in figures.items():
        ref = pub["methods"].get(m, {})
        tail = f"   ({ref[f'p_at_{k}']:.2f} / {ref[f'mrr_at_{k}']:.2f})" if f"p_at_{k}" in ref else ""
        lines.append(f"{m:<22}{f[f'p_at_{k}']:>8.2f}{f[f'mrr_at_{k}']:>9.2f}{tail}")
    for m, f in pub["methods"].items():
        if m not in figures and f"p_at_{k}" in f:
            lines.append(
                f"{m:<22}{'':>8}{'':>9}   ({f[f'p_at_{k}']:.2f} / {f[f'mrr_at_{k}']:.2f}) published only"
            )
    return lines


def figures_of(ranked: dict[str, np.ndarray], labels: np.ndarray, k: int) -> dict[str, dict[str, float]]:
    """{method: {p_at_k, mrr_at_k}} in %, rounded to 2 places, of every method's [prefixes, k] items."""
    out = {}
    for name, top in ranked.items():
        p, r = p_and_mrr_at_k(np.asarray(top), labels, k)
        out[name] = {f"p_at_{k}": round(p, 2), f"mrr_at_{k}": round(r, 2)}
    return out


def payload(
    s: Any, imported: dict[str, Any], data: Any, figures: dict[str, Any], history: list[Any], model_dir: str
) -> dict[str, Any]:
    """The benchmark file (``kind: sessions``): the protocol, the data, every method's figures beside the
    published ones, and the encoder's training."""
    import dataclasses

    n, k = len(data.item_ids), s.k
    return {
        "kind": "sessions",
        "name": s.name,
        "command": f"./submit.sh eval_sessions --set sessions.dir={s.dir} --set sessions.name={s.name}",
        "protocol": f"rank all {n:,} items for each of {len(data.labels):,} test prefixes; P@{k}, MRR@{k} in %",
        "dataset": {
            "train_sessions": imported["train_sessions"],
            "train_examples": sum(max(0, len(x) - 1) for x in data.train),
            "test_examples": len(data.labels),
            "items": n,
            "events": imported["events"],
            "quarantined_lines": imported["quarantined_lines"],
        },
        "methods": figures,
        "published": published(s.name, s.dir),
        "training": {
            "history": history,
            "model_version": os.path.basename(model_dir.rstrip("/")),
            "config": dataclasses.asdict(s),
        },
    }
