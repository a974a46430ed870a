#!/usr/bin/env bash
# Install everything the test suite needs, then run it. This is the README's
# test command and what CI (.ci/run) calls.
#   bash tests/run.sh [PYTEST ARGS...]
# System packages are installed with apt-get when running as root; the
# package goes into a private virtual environment (UFENCE_VENV, default
# build/venv) so the tests exercise what `pip install .` really installs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

packages=(gcc g++ make cmake binutils llvm valgrind
          qemu-system-x86 busybox-static cpio gcc-12 kmod
          rt-tests electric-fence duma util-linux golang-go python3-dev)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "tests/run.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

venv=${UFENCE_VENV:-$repo/build/venv}
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q "$repo[test]"

ruff check src tests bench
# Run from outside the tree so the installed package (and its built engine) is what is tested.
cd "$repo/tests"
exec python -m pytest -p no:cacheprovider "$@"
