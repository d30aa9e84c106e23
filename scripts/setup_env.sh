#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv and installs the pinned stack.
#
#   scripts/setup_env.sh [--dev]      (--dev adds the test tools and the benchmarks' peers)
#
# Idempotent and quick when nothing changed: a stamp file holds the hash of the inputs that decide
# what gets installed (pyproject.toml and this script). Called by submit.sh and test.sh.
#
# Environment:
#   PYTHON              interpreter that creates the venv (default: python3.11, else python3)
#   RETRIEVAL_VENV      where the venv lives (default: <repo>/.venv)
#   RETRIEVAL_TORCH     torch requirement installed first (default: torch==2.13.0, the CPU wheel here).
#                       A GPU cluster image installs a CUDA build of the same version instead.
#   RETRIEVAL_TORCH_PIP_ARGS  extra pip arguments for that one install (e.g. an index that serves
#                       CPU-only wheels, on machines where PyPI's default torch wheel is a CUDA one)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RETRIEVAL_VENV:-$repo/.venv}"
dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
fi

stamp_inputs="$(cat "$repo/pyproject.toml" "$repo/scripts/setup_env.sh"; echo "dev=$dev")"
stamp_hash="$(printf '%s' "$stamp_inputs" | sha256sum | cut -c1-16)"
stamp="$venv/.retrieval-setup-$stamp_hash"
# A dev install also satisfies a non-dev request.
dev_stamp="$venv/.retrieval-setup-$(printf '%s' "${stamp_inputs%dev=*}dev=1" | sha256sum | cut -c1-16)"
if [[ -f "$stamp" || -f "$dev_stamp" ]]; then
  exit 0
fi

if ! command -v java >/dev/null 2>&1 && [[ -z "${JAVA_HOME:-}" ]]; then
  echo "setup: warning: no java on PATH and JAVA_HOME unset; Spark needs Java 17" >&2
fi

version="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$version" != "3.11" ]]; then
  echo "setup: Python 3.11 is required (found $version at $py); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

echo "setup: preparing $venv (first run takes ~2 minutes)" >&2
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
# --no-compile: byte-compiling every installed module (torch and pyspark are most of them) costs more
# of a first run than compiling, on first import, the ones a run uses
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --no-compile --upgrade "pip>=24,<26" 2>&1 | grep -v 'is ignored' >&2 || true
# 1. torch first, on its own: if the resolver met torch later through another package it could pick a
#    multi-GB CUDA build while backtracking.
# shellcheck disable=SC2086
"${pip[@]}" install --no-compile "${RETRIEVAL_TORCH:-torch==2.13.0}" ${RETRIEVAL_TORCH_PIP_ARGS:-} 2>&1 | grep -v 'is ignored' >&2 || true
# 2. the project and its pinned dependencies (pyproject.toml says why each pin is where it is).
extra=""
[[ $dev == 1 ]] && extra="[dev,bench]"
"${pip[@]}" install --no-compile -e "$repo$extra" 2>&1 | grep -v 'is ignored' >&2 || true
# 3. petastorm without its declared deps (setuptools<70 clashes with torch's setuptools>=77; its real
#    runtime deps are in pyproject.toml).
"${pip[@]}" install --no-compile --no-deps "petastorm==0.13.1" 2>&1 | grep -v 'is ignored' >&2 || true

# Verify rather than trust pip's exit codes (they are swallowed above by the warning filter).
"$venv/bin/python" - <<'EOF'
import importlib, sys, warnings
warnings.simplefilter("ignore")
want = {"pyspark": "4.0.5", "pyarrow": "14.0.2", "numpy": "1.26.4", "torch": "2.13.0", "petastorm": "0.13.1",
        "faiss": None, "xgboost": None, "sklearn": None, "yaml": None, "retrieval": None}
bad = []
for name, version in want.items():
    try:
        mod = importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - report every failure at once
        bad.append(f"{name}: import failed ({e})")
        continue
    got = getattr(mod, "__version__", "")
    if version and not got.startswith(version):
        bad.append(f"{name}: want {version}, got {got}")
if bad:
    sys.exit("setup: the environment is not right:\n  " + "\n  ".join(bad))
EOF
rm -f "$venv"/.retrieval-setup-*
touch "$stamp"
echo "setup: $venv ready" >&2
