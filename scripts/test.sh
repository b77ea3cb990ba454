#!/usr/bin/env bash
# Runs every test suite of the repository. On a bare Debian 12 machine with
# Rust and Python it first installs what the suites need (apt-get, as root).
#
#   scripts/test.sh            # everything
#   SKIP_VALGRIND=1 scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '\n== %s ==\n' "$*"; }

# ---------------------------------------------------------------- set-up
missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v php >/dev/null 2>&1 || missing+=(php-cli)
command -v phpunit >/dev/null 2>&1 || missing+=(phpunit)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

suites_passed=0
suites_failed=0
failed_names=()
run_suite() {
  local name=$1; shift
  log "$name"
  local start=$SECONDS
  if "$@"; then
    suites_passed=$((suites_passed + 1))
    echo "-- $name: ok ($((SECONDS - start)) s)"
  else
    suites_failed=$((suites_failed + 1))
    failed_names+=("$name")
    echo "-- $name: FAILED ($((SECONDS - start)) s)"
  fi
}

# ---------------------------------------------------------------- suites
# One release build serves every suite: the Rust tests run in release mode
# too, so the dependencies (libzmq, SQLite, …) are compiled once.
log "build"
cargo build --release --locked

# Formatting (rustfmt.toml): cheap, and keeps diffs to what changed.
if cargo fmt --version >/dev/null 2>&1; then
  run_suite "rust: cargo fmt --check" sh -c 'cargo fmt --check &&
    cargo fmt --check --manifest-path bindings/python/Cargo.toml &&
    cargo fmt --check --manifest-path bench/zmws-bench/Cargo.toml'
else
  echo "-- rust: cargo fmt --check: skipped (rustfmt is not installed for this toolchain)"
fi
run_suite "rust: unit and integration tests" cargo test --release --locked --no-fail-fast -- --test-threads=2
[ -x tests/c/run.sh ] && run_suite "c: tests, valgrind, header drift" tests/c/run.sh
# The Python crate shares the release target dir, so libzmq & co. are not rebuilt.
[ -x bindings/python/run_tests.sh ] && run_suite "python: pytest" env CARGO_TARGET_DIR="$root/target" bindings/python/run_tests.sh
[ -x bindings/php/run_tests.sh ] && run_suite "php: phpunit" bindings/php/run_tests.sh

log "summary"
for n in "${failed_names[@]:-}"; do [ -n "$n" ] && echo "failed: $n"; done
echo "suites: $suites_passed passed, $suites_failed failed"
[ "$suites_failed" -eq 0 ]
