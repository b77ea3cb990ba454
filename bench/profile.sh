#!/usr/bin/env bash
# bench/profile.sh — profile the zmws broker process on one scenario.
#
#   bench/profile.sh                        callgrind, pipe_w4_cap16 with N=20000
#   bench/profile.sh filldrain --n 20000    any zmws-bench arguments
#   TOOL=perf bench/profile.sh              perf sampling of the broker process
#   TOOL=strace bench/profile.sh ...        syscall counts of the broker
#
# callgrind counts instructions of the broker's user code and libraries (all
# its threads: the loop and libzmq's I/O thread), not kernel time, and slows
# the broker ~50x, so the broker is the bottleneck by construction — what it
# shows is the broker's own work per job. perf samples wall-clock CPU time
# including the kernel (syscalls), at full speed. Output: bench/profile/.
# Needs the release builds (bench/compare.sh builds both, or see README.md).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BENCH=$HERE/zmws-bench/target/release/zmws-bench
# The release profile of the main package carries no debug info, so the
# broker is profiled from its own build with line tables (same sources,
# same optimisation), in bench/build/profile-target. SKIP_BUILD=1 reuses it;
# ZMWS_BIN=... profiles any other binary.
if [ -z "${ZMWS_BIN:-}" ]; then
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && CARGO_PROFILE_RELEASE_DEBUG=line-tables-only timeout 1800 \
      cargo build --release --quiet --bin zmws --target-dir "$HERE/build/profile-target") >&2
  fi
  ZMWS_BIN=$HERE/build/profile-target/release/zmws
fi
export ZMWS_BIN
TOOL=${TOOL:-callgrind}
OUT=${OUT:-$HERE/profile}
TOP=${TOP:-40}
mkdir -p "$OUT"
[ -x "$BENCH" ] && [ -x "$ZMWS_BIN" ] || { echo "build first: cargo build --release --manifest-path bench/zmws-bench/Cargo.toml (and $ZMWS_BIN)" >&2; exit 1; }
if [ $# -eq 0 ]; then set -- pipe --n 20000 --workers 4 --capacity 16; fi
name=$(echo "$*" | sed 's/--//g; s/ /_/g')

case $TOOL in
  callgrind)
    f=$OUT/callgrind.$name.out
    ZMWS_BROKER_WRAP="valgrind --tool=callgrind --callgrind-out-file=$f" ZMWS_BROKER_STOP_S=120 BENCH_WAIT_S=400 \
      timeout -k 5 600 "$BENCH" "$@" 2> >(grep -v '^\[broker\] ==' >&2)
    sleep 1
    { callgrind_annotate --inclusive=no "$f" 2>/dev/null || true; } | head -$((TOP + 25)) >"$OUT/callgrind.$name.self.txt" || true
    { callgrind_annotate --inclusive=yes "$f" 2>/dev/null || true; } | head -$((TOP + 25)) >"$OUT/callgrind.$name.inclusive.txt" || true
    echo "== self (exclusive) instruction counts: $OUT/callgrind.$name.self.txt"
    cat "$OUT/callgrind.$name.self.txt"
    echo "== inclusive: $OUT/callgrind.$name.inclusive.txt"
    ;;
  perf)
    f=$OUT/perf.$name.data
    err=$OUT/perf.$name.stderr
    # run the scenario, attach perf to the broker process (all its threads:
    # the loop and libzmq's I/O thread) once it has reported its pid; perf
    # ends when the broker does
    timeout -k 5 300 "$BENCH" "$@" 2>"$err" &
    bench_pid=$!
    pid=""
    for _ in $(seq 1 200); do
      pid=$(awk '/^# broker pid/{print $4; exit}' "$err")
      [ -n "$pid" ] && break
      sleep 0.05
    done
    [ -n "$pid" ] || { echo "no broker pid in $err" >&2; kill "$bench_pid"; exit 1; }
    perf record -g -F 4999 -p "$pid" -o "$f" 2>>"$err" >/dev/null &
    perf_pid=$!
    wait "$bench_pid" || { tail -5 "$err" >&2; exit 1; }
    wait "$perf_pid" || true
    { perf report -i "$f" --no-children --sort comm,dso --stdio -g none 2>/dev/null || true; } | grep -E '^ +[0-9]' | head -15 >"$OUT/perf.$name.dso.txt" || true
    { perf report -i "$f" --no-children --sort sym --stdio -g none 2>/dev/null || true; } | grep -E '^ +[0-9]' | head -"$TOP" >"$OUT/perf.$name.sym.txt" || true
    echo "== broker pid $pid, by thread and DSO: $OUT/perf.$name.dso.txt"; cat "$OUT/perf.$name.dso.txt"
    echo "== by symbol (self): $OUT/perf.$name.sym.txt"; cat "$OUT/perf.$name.sym.txt"
    ;;
  strace)
    # syscall counts of the broker (all threads) during the scenario
    f=$OUT/strace.$name.txt
    err=$OUT/strace.$name.stderr
    timeout -k 5 300 "$BENCH" "$@" 2>"$err" &
    bench_pid=$!
    pid=""
    for _ in $(seq 1 200); do
      pid=$(awk '/^# broker pid/{print $4; exit}' "$err")
      [ -n "$pid" ] && break
      sleep 0.05
    done
    [ -n "$pid" ] || { echo "no broker pid in $err" >&2; kill "$bench_pid"; exit 1; }
    strace -f -c -p "$pid" -o "$f" 2>/dev/null &
    st_pid=$!
    wait "$bench_pid" || { tail -5 "$err" >&2; exit 1; }
    wait "$st_pid" || true
    echo "== syscalls of broker pid $pid (strace -c; strace slows the broker): $f"
    head -25 "$f"
    ;;
  *) echo "TOOL=callgrind|perf|strace" >&2; exit 1 ;;
esac
