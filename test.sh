#!/usr/bin/env bash
# Sets up .venv (with the dev tools) if needed, then runs the test suite: ./test.sh [pytest args]
#   ./test.sh                 everything (Spark, slow and lint tests included)
#   ./test.sh -m "not slow"   the fast path while developing
#   ./test.sh --petastorm -m petastorm   in the Petastorm lane (.venv-petastorm): its feed and training tests
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ "${1:-}" == "--petastorm" ]]; then export RETRIEVAL_LANE=petastorm; shift; fi
export RETRIEVAL_LANE="${RETRIEVAL_LANE:-default}"  # the tests check that the lane's lock is what is installed
venv="$("$repo/scripts/setup_env.sh")"
cd "$repo"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$venv/bin/python}"  # Spark's Python workers: the venv, not PATH's python3
# petastorm's exit-time cache cleanup warns about a pyarrow API it still uses, after pytest's summary
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::FutureWarning:petastorm.fs_utils}"
exec "$venv/bin/python" -m pytest "$@"
