#!/usr/bin/env bash
# Builds zmws and runs the broker in the foreground with default endpoints
# (clients tcp://127.0.0.1:5555, workers :5556, events :5557). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
exec target/release/zmws broker "$@"
