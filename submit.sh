#!/usr/bin/env bash
# Runs a job (or the whole pipeline) through spark-submit: the installed package's `retrieval submit`
# command, in the lane's venv. ./submit.sh --help for the options.
#   ./submit.sh pipeline                          the whole pipeline on the embedded synthetic marketplace
#   ./submit.sh generate --config conf/test.yaml  one stage
# The first run creates .venv with the default lane's locked stack (scripts/setup_env.sh);
# RETRIEVAL_LANE=petastorm ./submit.sh ... runs in the Petastorm lane's .venv-petastorm instead.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$("$repo/scripts/setup_env.sh")"
cd "$repo"
exec "$venv/bin/retrieval" submit "$@"
