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

from typing import Any

from retrieval import storage
from retrieval.cli import job_main
from retrieval.config import Config, ConfigError, runtime
from retrieval.sessions import benchmark
from retrieval.sessions.spark_import import import_sessions, read_sessions
from retrieval.training.distributed import start_process


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    s = cfg.sessions
    if not s.dir or not s.name:
        raise ConfigError("eval_sessions needs --set sessions.dir=<folder> --set sessions.name=<name>")
    root = storage.join(cfg.paths.root, "sessions", s.name)
    imported = import_sessions(spark, s.dir, root)
    data = read_sessions(spark, root)
    rt = runtime(cfg, "sessions")
    start_process(rt.use_gpu, rt.threads, cfg.seed)  # this process trains: its threads and seed
    model_dir = storage.absolute(storage.join(root, "models", "session_encoder"))
    ranked, history, out_dir = benchmark.encoder_methods(
        data.train, data.prefixes, data.item_ids, s, cfg.seed, model_dir
    )
    sessions = benchmark.SessionData(data.train, data.prefixes, data.labels, len(data.item_ids))
    ranked.update(benchmark.iter_methods(sessions, s.k, cfg.progress_s))
    figures = benchmark.figures_of(ranked, data.labels, s.k)
    results = benchmark.payload(s, imported, data, figures, history, out_dir)
    results_path = storage.join(cfg.paths.results, f"{s.name}.json")
    storage.write_json_atomic(results_path, results)
    last = history[-1]
    return {
        **results,
        "rows_out": imported["events"],
        "outputs": {**imported["outputs"], "session encoder": out_dir, "results": results_path},
        "summary": [
            f"{imported['train_sessions']:,} training sessions ({results['dataset']['train_examples']:,} "
            f"prefixes), {len(data.labels):,} test prefixes, {len(data.item_ids):,} items; "
            f"{imported['quarantined_lines']} lines quarantined",
            f"encoder: {len(history)} epochs, last loss {last['loss']:.3f}, {last['examples_per_s']:,.0f} examples/s",
            *benchmark.table_lines(figures, results["published"], s.k),
        ],
    }


if __name__ == "__main__":
    job_main("eval_sessions", run, __doc__)
