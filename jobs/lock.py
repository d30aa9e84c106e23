"""lock: the one-writer lock of paths.root, taken and released by a scheduler's run group.

    RETRIEVAL_RUN_GROUP=<run id> ./submit.sh lock acquire [--config ...] [--set paths.root=...]
    RETRIEVAL_RUN_GROUP=<run id> ./submit.sh lock release
    ./submit.sh lock show

Every stage holds the lock of its root while it runs (a second run on the root exits with a message
naming the holder). A scheduler whose run is several stage applications (the Airflow DAGs) takes it
for its whole run: `acquire` before the first stage, `release` after the last, every task with
RETRIEVAL_RUN_GROUP set to the run's id, so its stages join the lock and no other run interleaves.
A lock whose heartbeat is older than --stale-seconds (default 6 hours for a scheduler's lock; the
stages renew it while they run) is taken over with a warning.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from retrieval.cli import load_config


def main(argv: Sequence[str] | None = None) -> int:
    def arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("action", choices=("acquire", "release", "show"))
        p.add_argument("--stale-seconds", type=float, default=6 * 3600.0)

    cfg, _, args = load_config("lock", __doc__, argv, arguments)
    from retrieval import runlock

    return runlock.command(args.action, cfg.paths.root, args.stale_seconds)


if __name__ == "__main__":
    sys.exit(main())
