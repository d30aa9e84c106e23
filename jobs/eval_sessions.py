"""eval_sessions: the session next-item benchmark on any folder in the SR-GNN format.

    ./submit.sh eval_sessions --set sessions.dir=../shared/data/diginetica --set sessions.name=diginetica

The folder holds train_sessions.txt (one session per line, item ids in click order) and
test_prefix_label.tsv (prefix<TAB>label). Imports both into our offers/events tables under
<root>/sessions/<name> (ids only; ts = click order; the split the files give), trains the encoder in
its id-only mode on every training prefix -> next item (sampled softmax, in-batch negatives, logQ
correction, learned recency pooling of the last sessions.max_len items), then ranks all items for
every test prefix: the encoder's session query, its "last item -> similar items" lookup (what the
recs table serves), and POP, S-POP and Item-KNN (co-occurrence) baselines, all in the same run.
P@20 and MRR@20 in %, beside the published figures, go to <paths.results>/<name>.json.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from retrieval import storage
from retrieval.cli import job_main
from retrieval.config import Config, ConfigError, runtime
from retrieval.sessions.benchmark import (
    SessionData,
    encoder_methods,
    iter_methods,
    p_and_mrr_at_k,
    published,
    table_lines,
)
from retrieval.sessions.spark_import import import_sessions, read_sessions
from retrieval.training.distributed import start_process


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    s = cfg.sessions
    if not s.dir or not s.name:
        raise ConfigError("eval_sessions needs --set sessions.dir=<folder> --set sessions.name=<name>")
    root = storage.join(cfg.paths.root, "sessions", s.name)
    imported = import_sessions(spark, s.dir, root)
    data = read_sessions(spark, root)
    n, k = len(data.item_ids), s.k
    rt = runtime(cfg, "sessions")
    start_process(rt.use_gpu, rt.threads, cfg.seed)  # this process trains: its threads and seed
    model_dir = storage.absolute(storage.join(root, "models", "session_encoder"))
    ranked, history, out_dir = encoder_methods(
        data.train, data.prefixes, data.item_ids, s, cfg.seed, model_dir
    )
    ranked.update(iter_methods(SessionData(data.train, data.prefixes, data.labels, n), k))
    figures: dict[str, dict[str, float]] = {}
    for name, top in ranked.items():
        p, r = p_and_mrr_at_k(np.asarray(top), data.labels, k)
        figures[name] = {f"p_at_{k}": round(p, 2), f"mrr_at_{k}": round(r, 2)}
    pub = published(s.name, s.dir)
    examples = sum(max(0, len(x) - 1) for x in data.train)
    results = {
        "kind": "sessions",
        "name": s.name,
        "command": f"./submit.sh eval_sessions --set sessions.dir={s.dir} --set sessions.name={s.name}",
        "protocol": f"rank all {n:,} items for each of {len(data.labels):,} test prefixes; P@{k}, MRR@{k} in %",
        "dataset": {
            "train_sessions": imported["train_sessions"],
            "train_examples": examples,
            "test_examples": len(data.labels),
            "items": n,
            "events": imported["events"],
            "quarantined_lines": imported["quarantined_lines"],
        },
        "methods": figures,
        "published": pub,
        "training": {
            "history": history,
            "model_version": os.path.basename(out_dir),
            "config": dataclasses.asdict(s),
        },
    }
    results_path = storage.join(cfg.paths.results, f"{s.name}.json")
    storage.write_json_atomic(results_path, results)
    return {
        **results,
        "rows_out": imported["events"],
        "outputs": {**imported["outputs"], "session encoder": out_dir, "results": results_path},
        "summary": [
            f"{imported['train_sessions']:,} training sessions ({examples:,} prefixes), "
            f"{len(data.labels):,} test prefixes, {n:,} items; {imported['quarantined_lines']} lines quarantined",
            f"encoder: {len(history)} epochs, last loss {history[-1]['loss']:.3f}, {history[-1]['examples_per_s']:,.0f} examples/s",
            *table_lines(figures, pub, k),
        ],
    }


if __name__ == "__main__":
    job_main("eval_sessions", run, __doc__)
