"""publish_recs: the `recs` table loaded into Redis for serving, then made live in one atomic flip.

    ./submit.sh publish_recs --set serving.redis_url=redis://localhost:6379/0
    ./submit.sh lookup 1234567 --set serving.redis_url=redis://localhost:6379/0   # read it back

The carousels go under the recs table's committed version (`<namespace>:v:<version>:<offer_id>`,
packed ids and scores), written from the executors in pipelined batches. The job counts the keys
that arrived against the table's rows, marks the version loaded, and points `<namespace>:current` at
it in one step: readers (`lookup`, `retrieval.serving.store.RedisStore.get`, one server-side script
per read) see the old version's carousels or the new one's, never a mix and never a missing one. The
version before stays for a rollback; older ones are deleted (serving.keep_versions). Publishing a
version that is already live loads nothing. Metrics: rows, the version, the one it replaced, the
versions deleted, and seconds to load.
"""

from __future__ import annotations

import time
from typing import Any

from retrieval import commit, tables
from retrieval.cli import job_main
from retrieval.config import Config, ConfigError
from retrieval.serving.spark_publish import load_recs
from retrieval.serving.store import RedisStore, connect
from retrieval.spark_tables import read_table


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    s = cfg.serving
    if not s.redis_url:
        raise ConfigError(
            "publish_recs needs serving.redis_url (e.g. --set serving.redis_url=redis://localhost:6379/0)"
        )
    store = RedisStore(connect(s.redis_url), s.namespace)
    version = commit.version_of(tables.path(cfg.paths.root, tables.RECS))
    recs = read_table(spark, cfg.paths.root, tables.RECS)
    rows = recs.count()
    started, loaded = time.time(), 0
    if store.loaded(version) != rows:  # not already loaded whole (a re-run after the flip, or after a crash)
        loaded = load_recs(recs, s.redis_url, s.namespace, version, s.batch)
        found = store.count(version)
        if found != rows:
            raise RuntimeError(
                f"publish_recs: {found} carousels of version {version} in Redis, the recs table has {rows}; "
                "the alias was not moved (re-run to load again)"
            )
        store.mark_loaded(version, rows)
    seconds = round(time.time() - started, 1)
    replaced = store.flip(version)
    replaced = None if replaced == version else replaced  # it was live already
    dropped = store.retain(s.keep_versions)
    return {
        "rows": rows,
        "rows_loaded": loaded,
        "version": version,
        "replaced": replaced,
        "dropped": dropped,
        "load_seconds": seconds,
        "rows_per_second": round(loaded / seconds) if loaded and seconds else None,
        "summary": [
            f"{rows:,} carousels of recs version {version} live in {s.namespace} "
            + (f"(loaded in {seconds} s)" if loaded else "(already loaded)")
            + (f"; replaced {replaced}" if replaced else "")
            + (f"; deleted {', '.join(dropped)}" if dropped else "")
        ],
    }


if __name__ == "__main__":
    job_main("publish_recs", run, __doc__)
