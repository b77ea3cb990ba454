#!/usr/bin/env bash
# Sets up and starts the seed's scenario on a fresh Debian 12 machine: builds
# zmws, installs what the sample workers need when missing (php-cli; the zmws
# Python module in ./.venv), then runs
#   zmws start -c examples/zmws.toml
# (broker + HTTP gateway on 127.0.0.1:5580, PHP SLEEP and STR-REV workers,
# a Python STR-REV worker), and prints three requests to try.
# `scripts/run.sh stop` (or `target/release/zmws stop -c examples/zmws.toml`) ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
zmws="$root/target/release/zmws"
config="$root/examples/zmws.toml"

if [ "${1:-}" = stop ]; then
  exec "$zmws" stop -c "$config"
fi

cargo build --release --locked

if ! command -v php >/dev/null 2>&1; then
  echo "== installing php-cli (the PHP sample workers)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq php-cli >/dev/null
fi

# The Python sample worker needs the zmws module: build it into ./.venv once.
if ! "$root/.venv/bin/python" -c "import zmws" >/dev/null 2>&1; then
  echo "== building the zmws Python module into .venv (a few minutes the first time)"
  python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.5,<2.0"
  PATH="$root/.venv/bin:$PATH" CARGO_TARGET_DIR="$root/target" \
    "$root/.venv/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation "$root/bindings/python"
fi
# Workers started below find this python3 first.
export PATH="$root/.venv/bin:$PATH"

"$zmws" start -c "$config"
cat <<'TXT'

zmws is running (broker, HTTP gateway on 127.0.0.1:5580, PHP and Python workers). Try:

  curl http://127.0.0.1:5580/SERVER-WORKERS
  curl http://127.0.0.1:5580/SLEEP
  curl 'http://127.0.0.1:5580/SYNC-STR-REV?str=Hello,+world'

Status: target/release/zmws status -c examples/zmws.toml
Stop:   scripts/run.sh stop
TXT
