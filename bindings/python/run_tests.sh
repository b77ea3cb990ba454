#!/usr/bin/env bash
# Builds the zmws Python module into a virtualenv and runs its pytest suite.
#
#   bindings/python/run_tests.sh [pytest arguments…]
#
# Needs Rust (cargo), a C/C++ compiler (libzmq is built from source by the
# zmq-sys crate) and Python >= 3.9 with the venv module (Debian/Ubuntu:
# apt-get install python3-venv). Downloads maturin and pytest from PyPI.
# Environment: PYTHON (interpreter, default python3), ZMWS_VENV (virtualenv
# directory, default bindings/python/.venv), CARGO_TARGET_DIR (default
# bindings/python/target).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${ZMWS_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"

make_venv() { rm -rf "$venv"; "$python" -m venv "$venv"; }
if [ ! -x "$venv/bin/python" ]; then
    echo "== creating virtualenv $venv"
    if ! make_venv; then
        # Debian/Ubuntu ship venv's ensurepip separately (python3-venv).
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            echo "== installing python3-venv with apt-get"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            make_venv
        else
            rm -rf "$venv"
            echo "error: '$python -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi
vpy="$venv/bin/python"
# maturin's build hook runs the `maturin` executable found on PATH.
export PATH="$venv/bin:$PATH"

echo "== installing maturin and pytest"
"$vpy" -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2.0" "pytest>=7"

echo "== building and installing zmws (cargo release build; minutes the first time)"
# Same as `pip install ./bindings/python`; --no-build-isolation reuses the
# maturin installed above instead of fetching it again for an isolated build.
"$vpy" -m pip install --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps "$here"

echo "== pytest"
cd "$here"
exec "$vpy" -m pytest "$@"
