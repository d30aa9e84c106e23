#!/usr/bin/env bash
# Runs a job (or the whole pipeline) through spark-submit. ./submit.sh --help for the options.
#   ./submit.sh pipeline                          the whole pipeline on the embedded synthetic marketplace
#   ./submit.sh generate --config conf/test.yaml  one stage
# The first run creates .venv with the pinned stack (scripts/setup_env.sh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${RETRIEVAL_VENV:-$repo/.venv}"
"$repo/scripts/setup_env.sh"
cd "$repo"
exec "$venv/bin/python" -m retrieval.submit "$@"
