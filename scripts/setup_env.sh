#!/usr/bin/env bash
# Creates (or refreshes) a lane's virtual environment and installs its locked, hashed stack.
#
#   scripts/setup_env.sh                 the default lane in .venv: current pyspark / pyarrow / numpy 2,
#                                        training fed by the Arrow feed (requirements/default.txt)
#   scripts/setup_env.sh --petastorm     the Petastorm lane in .venv-petastorm: pyspark 4.0.5, pyarrow 14,
#                                        numpy 1.26 and petastorm 0.13.1 (requirements/petastorm.txt)
#   --dev                                accepted for old scripts; every lane has its test tools
#   RETRIEVAL_LANE=petastorm             the same as --petastorm (submit.sh and test.sh pass it on)
# It prints the venv's path on stdout (everything else goes to stderr), for the scripts that call it.
#
# Steps: torch first and on its own (it is in no lock, see below), then the lock with --require-hashes
# and --no-deps (the lock is the whole resolved set), then the project itself (editable), then anything
# the venv holds that the lock does not (an older lane's packages) is removed, and the result verified.
# Idempotent and quick when nothing changed: a stamp file holds the hash of the inputs that decide what
# gets installed (the lock, pyproject.toml and this script). Called by submit.sh and test.sh.
#
# Environment:
#   PYTHON              interpreter that creates the venv (default: python3.11, else python3)
#   RETRIEVAL_VENV      where the venv lives (default: <repo>/.venv, or <repo>/.venv-petastorm)
#   RETRIEVAL_TORCH     torch requirement installed first (default: torch==2.13.0, the CPU wheel here).
#                       A GPU cluster image installs a CUDA build of the same version instead. A hashed
#                       lock would capture one build or the other, so torch stays out of the locks.
#   RETRIEVAL_TORCH_PIP_ARGS  extra pip arguments for that one install (e.g. an index that serves
#                       CPU-only wheels, on machines where PyPI's default torch wheel is a CUDA one)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lane="${RETRIEVAL_LANE:-default}"
for arg in "$@"; do
  case "$arg" in
    --petastorm) lane=petastorm ;;
    --dev) ;;
    --default) lane=default ;;
    *) echo "setup: unknown argument '$arg' (use --petastorm for the Petastorm lane)" >&2; exit 2 ;;
  esac
done
if [[ $lane != default && $lane != petastorm ]]; then
  echo "setup: unknown lane '$lane' (RETRIEVAL_LANE is default or petastorm)" >&2; exit 2
fi
if [[ $lane == petastorm ]]; then venv="${RETRIEVAL_VENV:-$repo/.venv-petastorm}"; else venv="${RETRIEVAL_VENV:-$repo/.venv}"; fi
lock="$repo/requirements/$lane.txt"

py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
fi

stamp_inputs="$(cat "$lock" "$repo/pyproject.toml" "$repo/scripts/setup_env.sh" "$repo/requirements/petastorm-nodeps.txt"; echo "lane=$lane torch=${RETRIEVAL_TORCH:-}")"
stamp="$venv/.retrieval-setup-$(printf '%s' "$stamp_inputs" | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]]; then
  echo "$venv"
  exit 0
fi

if ! command -v java >/dev/null 2>&1 && [[ -z "${JAVA_HOME:-}" ]]; then
  echo "setup: warning: no java on PATH and JAVA_HOME unset; Spark needs Java 17" >&2
fi

version="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$version" != "3.11" ]]; then
  # The locks are compiled for 3.11 (their wheels' hashes are 3.11's); the package itself also works on
  # 3.12 and 3.13 (pyproject.toml's requires-python): pip install . there, without a lock.
  echo "setup: the locked lanes are for Python 3.11 (found $version at $py); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

echo "setup: preparing the $lane lane in $venv (first run takes ~3 minutes)" >&2
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
# --no-compile: byte-compiling every installed module (torch and pyspark are most of them) costs more
# of a first run than compiling, on first import, the ones a run uses
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
quiet() { grep -v -e 'is ignored' -e 'BuildBackendWarning' >&2 || true; }
# 1. torch first, on its own: a resolver that met torch through another package could pick a multi-GB
#    CUDA build.
# shellcheck disable=SC2086
"${pip[@]}" install --no-compile "${RETRIEVAL_TORCH:-torch==2.13.0}" ${RETRIEVAL_TORCH_PIP_ARGS:-} 2>&1 | quiet
# 2. the lane's lock: every package pinned and hashed, installed as it is (no resolving).
"${pip[@]}" install --no-compile --require-hashes --no-deps -r "$lock" 2>&1 | quiet
# 3. petastorm itself, in its lane only (without its declared deps: pyproject.toml says why).
if [[ $lane == petastorm ]]; then
  "${pip[@]}" install --no-compile --require-hashes --no-deps -r "$repo/requirements/petastorm-nodeps.txt" 2>&1 | quiet
fi
# 4. the project, editable, over what is there.
"${pip[@]}" install --no-compile --no-deps --no-build-isolation -e "$repo" 2>&1 | quiet

# 5. remove what the lock does not name (an older lane's packages), then verify rather than trust pip's
#    exit codes (they are swallowed above by the warning filter).
"$venv/bin/python" - "$lock" "$lane" <<'EOF'
import importlib, importlib.metadata as md, re, subprocess, sys, warnings
warnings.simplefilter("ignore")
lock_path, lane = sys.argv[1], sys.argv[2]
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
locked = {}
for line in open(lock_path):
    m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", line)
    if m:
        locked[norm(m.group(1))] = m.group(2)
keep = set(locked) | {"pip", "torch", "retrieval-at-scale"} | ({"petastorm"} if lane == "petastorm" else set())
# torch's own requirements come with torch (a CUDA build brings its nvidia-* libraries)
torch_reqs = md.requires("torch") or []
keep |= {norm(re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0]) for r in torch_reqs if "extra ==" not in r}
installed = {norm(d.metadata["Name"]): d.version for d in md.distributions()}
stray = sorted(n for n in installed if n not in keep and not n.startswith("nvidia-") and n != "triton")
if stray:
    print("setup: removing what the lock does not name: " + " ".join(stray), file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", *stray], check=True)
bad = [f"{n}: want {v}, got {installed.get(n, 'nothing')}" for n, v in locked.items() if installed.get(n) != v]
mods = ["pyspark", "pyarrow", "numpy", "torch", "faiss", "xgboost", "sklearn", "yaml", "retrieval"]
mods += ["petastorm"] if lane == "petastorm" else []
for name in mods:
    try:
        importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - report every failure at once
        bad.append(f"{name}: import failed ({e})")
if bad:
    sys.exit("setup: the environment is not right:\n  " + "\n  ".join(bad))
EOF
rm -f "$venv"/.retrieval-setup-*
touch "$stamp"
echo "setup: $venv ready ($lane lane)" >&2
echo "$venv"
