"""eval_sessions: the session next-item benchmark on any folder in the SR-GNN format.

    ./submit.sh eval_sessions --set sessions.dir=../shared/data/diginetica --set sessions.name=diginetica

The folder holds train_sessions.txt (one session per line, item ids in click order) and
test_prefix_label.tsv (prefix<TAB>label). Imports both into our offers/events tables under
<root>/sessions/<name> (ids only; ts = click order; the split the files give), trains the encoder in
its id-only mode on every training prefix -> next item (sampled softmax, in-batch negatives, logQ
correction, learned recency pooling of the last sessions.max_len items), then ranks all items for
every test prefix: the encoder's session query, its "last item -> similar items" lookup (what the
recs table serves), and POP, S-POP and Item-KNN (co-occurrence) baselines, all in the same run.
P@20 and MRR@20 in %, beside the published figures, go to <sessions.results_dir>/<name>.json.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from retrieval import storage
from retrieval.artifacts import content_version, model_dir
from retrieval.cli import job_main
from retrieval.config import Config, ConfigError
from retrieval.encoder.features import Vocab
from retrieval.encoder.model import EncoderConfig, OfferTower, SessionPool, save
from retrieval.encoder.sessions import (
    histories,
    id_features,
    item_vectors,
    session_examples,
    session_vectors,
    train_sessions,
)
from retrieval.evaluation import exact_search
from retrieval.sessions.benchmark import SessionData, iter_methods, p_and_mrr_at_k, published
from retrieval.sessions.spark_import import import_sessions, read_sessions


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    s = cfg.sessions
    if not s.dir or not s.name:
        raise ConfigError("eval_sessions needs --set sessions.dir=<folder> --set sessions.name=<name>")
    root = storage.join(cfg.paths.root, "sessions", s.name)
    imported = import_sessions(spark, s.dir, root)
    data = read_sessions(spark, root)
    n, k = len(data.item_ids), s.k
    if s.threads:
        torch.set_num_threads(s.threads)
    torch.manual_seed(cfg.seed)

    figures: dict[str, dict[str, float]] = {}

    def score(name: str, ranked: np.ndarray) -> None:
        p, r = p_and_mrr_at_k(ranked, data.labels, k)
        figures[name] = {f"p_at_{k}": round(p, 2), f"mrr_at_{k}": round(r, 2)}

    # The encoder, id-only: dense item indices are the id embedding's rows (no hashing, no collisions).
    enc = EncoderConfig(
        dim=s.dim,
        embed_dim=s.dim,
        content=False,
        id_dropout=0.0,
        session_len=s.max_len,
        vocab=Vocab(ids=n + 1),
    )
    tower, pool, features = OfferTower(enc), SessionPool(enc), id_features()
    examples = session_examples(data.train, s.max_len)
    history = train_sessions(
        tower,
        pool,
        features,
        examples,
        n,
        s.epochs,
        s.batch_size,
        s.lr,
        s.temperature,
        s.uniform_negatives,
        seed=cfg.seed,
    )
    version = content_version({"encoder": enc.to_dict(), "sessions": dataclasses.asdict(s), "seed": cfg.seed})
    out_dir = storage.absolute(model_dir(root, "session_encoder", version))
    save(tower, out_dir, {"item_ids": data.item_ids.tolist()}, pool=pool)
    items = item_vectors(tower, features, n)
    dense = np.arange(1, n + 1)
    hist, lengths = histories(data.prefixes, s.max_len)
    score(
        "encoder_session",
        exact_search(session_vectors(tower, pool, features, hist, lengths), items, dense, k)[1],
    )
    last = hist[:, -1]
    score("encoder_last_item", exact_search(items[last - 1], items, dense, k, exclude=last)[1])
    for name, ranked in iter_methods(SessionData(data.train, data.prefixes, data.labels, n), k):
        score(name, ranked)

    pub = published(s.name, s.dir)
    results = {
        "name": s.name,
        "command": f"./submit.sh eval_sessions --set sessions.dir={s.dir} --set sessions.name={s.name}",
        "protocol": f"rank all {n:,} items for each of {len(data.labels):,} test prefixes; P@{k}, MRR@{k} in %",
        "dataset": {
            "train_sessions": imported["train_sessions"],
            "train_examples": len(examples),
            "test_examples": len(data.labels),
            "items": n,
            "events": imported["events"],
            "quarantined_lines": imported["quarantined_lines"],
        },
        "methods": figures,
        "published": pub,
        "training": {"history": history, "model_version": version, "config": dataclasses.asdict(s)},
    }
    results_path = storage.join(s.results_dir, f"{s.name}.json")
    storage.write_json_atomic(results_path, results)
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
    return {
        **results,
        "rows_out": imported["events"],
        "outputs": {**imported["outputs"], "session encoder": out_dir, "results": results_path},
        "summary": [
            f"{imported['train_sessions']:,} training sessions ({len(examples):,} prefixes), "
            f"{len(data.labels):,} test prefixes, {n:,} items; {imported['quarantined_lines']} lines quarantined",
            f"encoder: {len(history)} epochs, last loss {history[-1]['loss']:.3f}, "
            f"{history[-1]['examples_per_s']:,.0f} examples/s",
            *lines,
        ],
    }


if __name__ == "__main__":
    job_main("eval_sessions", run, __doc__)
