#!/usr/bin/env bash
# Regenerates the two lanes' hashed lock files from pyproject.toml and the lane's .in file:
#   requirements/compile.sh [default|petastorm ...]     (both when none is named)
# Needs pip-tools (pip install pip-tools) in the Python that runs it (RETRIEVAL_PIP_COMPILE=/path/to/pip-compile).
# Each lock resolves torch (so that its own dependencies are locked) but leaves it out (--unsafe-package
# torch): scripts/setup_env.sh installs torch first, the CPU wheel here or a CUDA build on a GPU image.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
compile="${RETRIEVAL_PIP_COMPILE:-pip-compile}"
lanes=("$@")
[[ ${#lanes[@]} -gt 0 ]] || lanes=(default petastorm)
for lane in "${lanes[@]}"; do
  extras=(--extra dev --extra bench --extra s3)
  [[ $lane == petastorm ]] && extras+=(--extra petastorm)
  CUSTOM_COMPILE_COMMAND="requirements/compile.sh $lane" "$compile" -q --generate-hashes --strip-extras \
    --unsafe-package torch --no-emit-index-url --no-emit-find-links "${extras[@]}" \
    -o "requirements/$lane.txt" pyproject.toml "requirements/$lane.in"
done
