#!/usr/bin/env bash
# Packs the pinned stack and the retrieval package into one archive that Spark unpacks beside every
# executor (Spark's documented venv-pack route), for clusters whose nodes lack our Python packages:
#
#   scripts/pack_env.sh          -> build/retrieval-env.tar.gz, and the spark-submit flags to use
#
# It builds a separate venv (build/pack-venv) with scripts/setup_env.sh, so the pins are exactly the
# dev venv's, then reinstalls the project into it NON-editable (venv-pack cannot ship an editable
# install: it points back into this checkout) and packs it with venv-pack. Reruns are quick: the venv
# is kept (setup_env.sh's stamp), only the project is reinstalled and the archive rewritten.
#
# The archive holds site-packages and symlinks, not Python itself: bin/python links to the absolute
# path of the interpreter that created the venv, and the standard library is read from that
# installation. So every node (executors, and a cluster-mode driver) needs Python 3.11 at that SAME
# path (printed at the end), e.g. the distribution's /usr/bin/python3.11: build with
# PYTHON=/usr/bin/python3.11 on a machine like the nodes, not with a pyenv/conda python under $HOME.
# (venv-pack's --python-prefix, meant to relink python to another path, writes a broken link for
# Python 3 venvs in 0.2.0, so it is not offered here.)
#
# Environment:
#   PYTHON, RETRIEVAL_TORCH, RETRIEVAL_TORCH_PIP_ARGS   as for scripts/setup_env.sh. Mind which torch
#                         build the archive gets: plain PyPI serves a CUDA build of torch==2.13.0 on
#                         Linux x86_64 (GBs of CUDA libraries); for CPU executors pass
#                         RETRIEVAL_TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'.
#                         Another torch needs its own RETRIEVAL_PACK_VENV (an installed one is not swapped).
#   RETRIEVAL_PACK_VENV   the venv that is packed (default: <repo>/build/pack-venv)
#   RETRIEVAL_PACK_OUT    the archive written (default: <repo>/build/retrieval-env.tar.gz)
#   RETRIEVAL_PACK_TOOLS  a venv holding venv-pack itself (default: <repo>/build/pack-tools)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RETRIEVAL_PACK_VENV:-$repo/build/pack-venv}"
out="${RETRIEVAL_PACK_OUT:-$repo/build/retrieval-env.tar.gz}"
tools="${RETRIEVAL_PACK_TOOLS:-$repo/build/pack-tools}"
venv_pack_version="0.2.0"

[[ "$out" == *.tar.gz ]] || { echo "pack: RETRIEVAL_PACK_OUT must end in .tar.gz (got $out)" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
mkdir -p "$(dirname "$venv")"
venv="$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")"

py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
fi
start=$SECONDS

# 0. A kept venv must have been made by the same interpreter and torch as asked for now: setup_env.sh
#    neither recreates a venv for another PYTHON nor swaps an installed torch (its stamp does not cover
#    them), and an archive quietly built from the wrong ones would fail on the nodes.
base_want="$("$py" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
torch_want="${RETRIEVAL_TORCH:-torch==2.13.0} ${RETRIEVAL_TORCH_PIP_ARGS:-}"
if [[ -e "$venv/bin/python" ]]; then
  base_have="$(readlink -f "$venv/bin/python")"
  if [[ "$base_have" != "$base_want" ]]; then
    echo "pack: $venv was made with $base_have, not $base_want; remove it or set RETRIEVAL_PACK_VENV" >&2
    exit 1
  fi
  if [[ -f "$venv/.retrieval-pack-torch" && "$(cat "$venv/.retrieval-pack-torch")" != "$torch_want" ]]; then
    echo "pack: $venv has torch from '$(cat "$venv/.retrieval-pack-torch")', not '$torch_want';" \
      "remove it or set RETRIEVAL_PACK_VENV" >&2
    exit 1
  fi
fi

# 1. The pinned stack, exactly as the dev venv gets it (setup_env.sh installs the project editable;
#    step 2 replaces that). setup_env.sh is skipped by its stamp while pyproject.toml and it are unchanged.
RETRIEVAL_VENV="$venv" PYTHON="$py" "$repo/scripts/setup_env.sh"
printf '%s' "$torch_want" >"$venv/.retrieval-pack-torch"

# 2. The project, non-editable, built from a copy of the working tree's sources (so setuptools' build/
#    dir never lands in the checkout, and no stale module from an earlier build slips into the wheel).
src="$(mktemp -d)"
tmp_out="${out%.tar.gz}.tmp-$$.tar.gz"
trap 'rm -rf "$src" "$tmp_out"' EXIT
tar -C "$repo" --exclude=__pycache__ --exclude='*.egg-info' --exclude='*.pyc' -cf - pyproject.toml README.md lib jobs conf |
  tar -C "$src" -xf -
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --no-deps --force-reinstall "$src" 2>&1 | grep -v 'is ignored' >&2 || true

# Verify rather than trust pip (its exit code is swallowed by the filter above), and check for any
# editable install ourselves: venv-pack 0.2.0 only recognises old-style .pth path entries, not the
# __editable__ finders that setuptools writes for `pip install -e` today.
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
node_needs="$(cd / && "$venv/bin/python" - "$site" <<'EOF'
import glob, json, os, sys
site = sys.argv[1]
import retrieval
if not os.path.realpath(retrieval.__file__).startswith(os.path.realpath(site) + os.sep):
    sys.exit(f"pack: retrieval imports from {retrieval.__file__}, not from {site}")
editable = [os.path.basename(p) for p in glob.glob(os.path.join(site, "__editable__*"))]
for direct_url in glob.glob(os.path.join(site, "*.dist-info", "direct_url.json")):
    with open(direct_url, encoding="utf-8") as f:
        if json.load(f).get("dir_info", {}).get("editable"):
            editable.append(os.path.basename(os.path.dirname(direct_url)))
if editable:
    sys.exit("pack: editable installs left in the venv: " + ", ".join(sorted(editable)))
# The newest glibc that an installed wheel needs (for each wheel, the oldest of its manylinux tags).
legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
floor, who = (2, 17), "manylinux2014"
for wheel in glob.glob(os.path.join(site, "*.dist-info", "WHEEL")):
    with open(wheel, encoding="utf-8") as f:
        platforms = [line.split(":", 1)[1].strip().rsplit("-", 1)[-1] for line in f if line.startswith("Tag:")]
    needs = []
    for p in platforms:
        if p.rsplit("_", 1)[0] in legacy:
            needs.append(legacy[p.rsplit("_", 1)[0]])
        elif p.startswith("manylinux_"):
            needs.append(tuple(int(v) for v in p.split("_")[1:3]))
    if needs and min(needs) > floor:
        floor, who = min(needs), os.path.basename(os.path.dirname(wheel)).split("-")[0]
print(f"glibc {floor[0]}.{floor[1]} or newer (for {who}) on {os.uname().machine}")
EOF
)"

# 3. venv-pack, in a venv of its own so that it does not ship to the executors.
if ! "$tools/bin/python" -c "import venv_pack, sys; sys.exit(venv_pack.__version__ != '$venv_pack_version')" \
  >/dev/null 2>&1; then
  if [[ -e "$tools" && ! -f "$tools/pyvenv.cfg" ]]; then
    echo "pack: $tools exists and is not a venv; set RETRIEVAL_PACK_TOOLS elsewhere" >&2
    exit 1
  fi
  "$py" -m venv --clear "$tools"
  "$tools/bin/python" -m pip --disable-pip-version-check -q install "venv-pack==$venv_pack_version" 2>&1 |
    grep -v 'is ignored' >&2 || true
fi

# 4. The archive: written beside the target, then renamed, so a reader never sees half of one.
echo "pack: packing $venv (a minute or more: one gzip stream of ~2 GB)" >&2
"$tools/bin/venv-pack" --quiet --prefix "$venv" --output "$tmp_out" --format tar.gz \
  --exclude '.retrieval-*'
chmod "$(printf '%o' $((0666 & ~$(umask))))" "$tmp_out"  # venv-pack writes 0600; a shared store needs more
mv -f "$tmp_out" "$out"
trap 'rm -rf "$src"' EXIT

size="$(du -h "$out" | cut -f1)"
base="$(readlink "$venv/bin/python3.11" 2>/dev/null || readlink -f "$venv/bin/python")"
commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
changed="$(git -C "$repo" status --porcelain -- lib pyproject.toml 2>/dev/null | wc -l)"
cat <<EOF
pack: wrote $out ($size) in $((SECONDS - start)) s, from lib/ at $commit with $changed uncommitted change(s)
pack: every node needs Python 3.11 at $base (the venv's bin/python links there and the standard
      library is read there), and $node_needs
EOF
case "$base" in
  "$HOME"/* | /root/* | */.pyenv/* | */conda* | */miniforge* | */mambaforge*)
    echo "pack: warning: $base looks like a per-user install that cluster nodes will not have;" \
      "rebuild with PYTHON=/usr/bin/python3.11 (or the nodes' path) and a fresh RETRIEVAL_PACK_VENV" >&2 ;;
esac
cat <<EOF

spark-submit flags (YARN, Kubernetes or standalone; the archive may also be an hdfs:// or s3a:// URI):
  --archives $out#environment
  --conf spark.pyspark.python=./environment/bin/python
client deploy mode only (the driver runs here, outside the unpacked archive; spark.pyspark.python
would otherwise apply to it too):
  --conf spark.pyspark.driver.python=$repo/.venv/bin/python
EOF
