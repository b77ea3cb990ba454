#!/usr/bin/env bash
# bench/compare.sh — zmws beside gearmand, beanstalkd and raw libzmq, in one
# run (issue 8). Reps are interleaved: rep 1 of every peer and of zmws, then
# rep 2, ..., so slow drift of the machine hits everybody alike. Prints the
# median lines and a side-by-side table with ratios zmws / best peer.
#
# The peers' harness is used as it is (its setup.sh, Makefile and programs,
# built out of tree into bench/build/peers so its directory stays untouched);
# zmws is measured by bench/zmws-bench (same scenarios, same line format).
#
#   bench/compare.sh            full run, REPS=3, about 5-6 minutes
#   QUICK=1 bench/compare.sh    smoke run, 1 rep, N/10, under a minute
#
# Knobs (environment):
#   ZMWS_BENCH_PEERS=../shared/bench-peers (relative to the repo root)
#   REPS=3 N_SYNC=20000 N_TPUT=100000 N_ZMQ=1000000 PAYLOAD=100
#   CAPACITIES="16 256 1024"  zmws workers that take several jobs at once:
#                     pipe_w4_capN and drain_w4_capN for each N
#   PERSIST_CAPACITIES="1 256" worker capacities of the durable pipe_w4*_persist runs
#   PIPE_WINDOW_ZMWS=10000    jobs per Client::submit_batch message in pipe_w4
#                     (the peers use their best windows too; swept 1000/3000/10000)
#   PIPE_WINDOW_GEARMAND=1000 PIPE_WINDOW_BEANSTALKD=10000
#   SCEN_TIMEOUT=40   per program (each runs under `timeout`)
#   BUDGET_S=330      no rep is started that (judged by the last) would end later
#   HARD_LIMIT_S=350  no program runs past this many seconds after the start
#   PERSIST=auto      also run the pipe_w4*_persist runs when the broker has --data-dir
#   BIG=1             also fill a broker with 10 x N_TPUT jobs (no workers) and
#                     read its peak memory (rss_1000000_queued_batchfill)
#   SPIN_US=300       also run sync_w1, sync_w4, tput_w4 and drain_w4 with the
#                     broker's --spin-us (busy-polls that long after each
#                     message; off by default); empty or 0: skip them
#   EXTRA=""          extra zmws variants: "ipc" (sync_w1/tput_w4 over ipc://),
#                     "news" (pipe_w4 with job events published), "raw"
#                     (sync_w1 and drain_w4 with --raw-worker: bench-made MDP
#                     workers instead of zmws::Worker)
#   SKIP_SETUP=1      do not run the peers' setup.sh (apt-get) when tools miss
#   SKIP_BUILD=1      use the binaries already built (zmws and zmws-bench)
#   ZMWS_BIN=target/release/zmws  broker binary
#   OUT_DIR=bench     where results.txt, results.raw.txt, report.md go
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PEERS=${ZMWS_BENCH_PEERS:-$ROOT/../shared/bench-peers}
[ -d "$PEERS" ] || { echo "peers harness not found at $PEERS (set ZMWS_BENCH_PEERS)" >&2; exit 1; }
PEERS=$(cd "$PEERS" && pwd)

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-1} N_SYNC=${N_SYNC:-2000} N_TPUT=${N_TPUT:-10000} N_ZMQ=${N_ZMQ:-100000}
  SCEN_TIMEOUT=${SCEN_TIMEOUT:-15} BUDGET_S=${BUDGET_S:-45} HARD_LIMIT_S=${HARD_LIMIT_S:-50}
fi
REPS=${REPS:-3}
N_SYNC=${N_SYNC:-20000}
N_TPUT=${N_TPUT:-100000}
N_ZMQ=${N_ZMQ:-1000000}
PAYLOAD=${PAYLOAD:-100}
CAPACITIES=${CAPACITIES:-${CAPACITY:-16 256 1024}}
PERSIST_CAPACITIES=${PERSIST_CAPACITIES:-1 256}
PIPE_WINDOW_ZMWS=${PIPE_WINDOW_ZMWS:-10000}
PIPE_WINDOW_GEARMAND=${PIPE_WINDOW_GEARMAND:-1000}
PIPE_WINDOW_BEANSTALKD=${PIPE_WINDOW_BEANSTALKD:-10000}
SCEN_TIMEOUT=${SCEN_TIMEOUT:-40}
BUDGET_S=${BUDGET_S:-330}
HARD_LIMIT_S=${HARD_LIMIT_S:-350}
PERSIST=${PERSIST:-auto}
BIG=${BIG:-1}
EXTRA=${EXTRA:-}
SPIN_US=${SPIN_US-300}
OUT_DIR=${OUT_DIR:-$HERE}
mkdir -p "$OUT_DIR"
ZMWS_BIN=${ZMWS_BIN:-$ROOT/target/release/zmws}
BENCH=$HERE/zmws-bench/target/release/zmws-bench
BUILD_NOTE=""
PEER_BIN=$HERE/build/peers
export ZMWS_BIN

# ---------------------------------------------------------------- setup, build
if ! command -v gearmand >/dev/null || ! command -v beanstalkd >/dev/null || ! pkg-config --exists libzmq 2>/dev/null; then
  if [ "${SKIP_SETUP:-0}" = 1 ]; then
    echo "gearmand/beanstalkd/libzmq missing: run $PEERS/setup.sh (as root)" >&2; exit 1
  fi
  echo "== installing the peers ($PEERS/setup.sh)" >&2
  "$PEERS/setup.sh" >&2 || { echo "peers setup failed" >&2; exit 1; }
fi
mkdir -p "$PEER_BIN"
make -s -C "$PEER_BIN" -f "$PEERS/Makefile" VPATH="$PEERS" >&2 || { echo "building the peer programs failed" >&2; exit 1; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "== building zmws and zmws-bench (release)" >&2
  # The core tree changes often; a build that fails falls back to the
  # binaries already there (if any), with a warning in the header.
  (cd "$ROOT" && timeout 1800 cargo build --release --quiet --bin zmws) >&2 \
    || { echo "WARNING: cargo build (zmws) failed; using the existing $ZMWS_BIN" >&2; BUILD_NOTE=" (build failed: older binary)"; }
  timeout 1800 cargo build --release --quiet --manifest-path "$HERE/zmws-bench/Cargo.toml" >&2 \
    || { echo "WARNING: cargo build (zmws-bench) failed; using the existing $BENCH" >&2; BUILD_NOTE=" (build failed: older binary)"; }
fi
for b in "$ZMWS_BIN" "$BENCH" "$PEER_BIN/freeport"; do
  [ -x "$b" ] || { echo "missing $b" >&2; exit 1; }
done
if [ "$PERSIST" = auto ]; then
  case "$("$ZMWS_BIN" broker --help 2>/dev/null)" in *--data-dir*) PERSIST=1 ;; *) PERSIST=0 ;; esac
fi

# ---------------------------------------------------------------- servers
WORK=$(mktemp -d /tmp/zmws-compare.XXXXXX)
: >"$WORK/none.conf"      # empty gearmand config: ignore any system one
SRV_PID=""
T_START=$SECONDS

stop_server() {
  [ -n "$SRV_PID" ] || return 0
  kill "$SRV_PID" 2>/dev/null
  for _ in $(seq 1 40); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$SRV_PID" 2>/dev/null
  wait "$SRV_PID" 2>/dev/null
  SRV_PID=""
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_peer gearmand|beanstalkd -> SRV_PID, SRV_PORT (fresh server, free port)
start_peer() {
  local kind=$1 try
  for try in 1 2 3 4 5; do
    SRV_PORT=$("$PEER_BIN/freeport")
    if [ "$kind" = gearmand ]; then
      gearmand -L 127.0.0.1 -p "$SRV_PORT" -t 1 -l none -P "$WORK/gearmand.pid" \
        --config-file "$WORK/none.conf" >"$WORK/server.log" 2>&1 &
    else
      beanstalkd -l 127.0.0.1 -p "$SRV_PORT" >"$WORK/server.log" 2>&1 &
    fi
    SRV_PID=$!
    for _ in $(seq 1 50); do
      kill -0 "$SRV_PID" 2>/dev/null || break
      listening "$SRV_PORT" && return 0
      sleep 0.1
    done
    echo "  $kind did not start on port $SRV_PORT (try $try): $(tail -2 "$WORK/server.log")" >&2
    stop_server
  done
  return 1
}

# ---------------------------------------------------------------- measuring
RAW=$OUT_DIR/results.raw.txt
: >"$RAW"

# CPU time (ns) used so far by all threads of a process
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'; }

# run_one REP CMD... : one program under `timeout`; its stdout lines go to RAW.
# With a peer server running (SRV_PID), its CPU time during the program,
# per job (n=), is appended as server_cpu_us_per_job= (zmws-bench measures
# its own broker the same way).
run_one() {
  local rep=$1; shift
  local out rc c0="" lim=$SCEN_TIMEOUT left=$((HARD_LIMIT_S - (SECONDS - T_START)))
  [ "$left" -lt "$lim" ] && lim=$left
  if [ "$lim" -lt 5 ]; then echo "  SKIP (hard limit ${HARD_LIMIT_S}s): ${*##*/}" >&2; return 1; fi
  [ -n "$SRV_PID" ] && c0=$(cpu_ns "$SRV_PID")
  out=$(BENCH_WAIT_S=$((lim - 3)) timeout -k 2 "$lim" "$@" 2>"$WORK/err")
  rc=$?
  if [ $rc -ne 0 ] || [ -z "$out" ]; then
    echo "  FAIL rc=$rc: $* :: $(grep -v '^#' "$WORK/err" | tail -3 | tr '\n' ' ')" >&2
    return 1
  fi
  if [ -n "$c0" ]; then
    out=$(awk -v d="$(( $(cpu_ns "$SRV_PID") - c0 ))" '{
      n = 0; for (i = 1; i <= NF; i++) if ($i ~ /^n=/) n = substr($i, 3) + 0
      if (n > 0) $0 = $0 sprintf(" server_cpu_us_per_job=%.1f", d / 1000 / n)
      print }' <<<"$out")
  fi
  sed "s/^/rep=$rep /" <<<"$out" | tee -a "$RAW" >&2
}

rss_line() { # rss_line REP PEER IDLE_KB : server RSS after the fill
  local hwm rss
  hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$SRV_PID/status")
  rss=$(awk '/^VmRSS:/{print $2}' "/proc/$SRV_PID/status")
  echo "rep=$1 peer=$2 scenario=rss_${N_TPUT}_queued vmhwm_kb=$hwm vmrss_kb=$rss idle_vmrss_kb=$3 bytes_per_job=$(( (rss - $3) * 1024 / N_TPUT ))" | tee -a "$RAW" >&2
}

peer_rep() { # peer_rep REP gearmand|beanstalkd
  local rep=$1 kind=$2 bin win w idle
  if [ "$kind" = gearmand ]; then bin=$PEER_BIN/gearman_bench win=$PIPE_WINDOW_GEARMAND
  else bin=$PEER_BIN/beanstalk_bench win=$PIPE_WINDOW_BEANSTALKD; fi
  for w in 1 4; do
    start_peer "$kind" || return 1
    run_one "$rep" "$bin" sync 127.0.0.1 "$SRV_PORT" "$N_SYNC" "$w" "$PAYLOAD"
    stop_server
  done
  start_peer "$kind" || return 1
  run_one "$rep" "$bin" tput 127.0.0.1 "$SRV_PORT" "$N_TPUT" 4 "$PAYLOAD"
  stop_server
  start_peer "$kind" || return 1
  run_one "$rep" "$bin" pipe 127.0.0.1 "$SRV_PORT" "$N_TPUT" 4 "$PAYLOAD" "$win"
  stop_server
  start_peer "$kind" || return 1
  idle=$(awk '/^VmRSS:/{print $2}' "/proc/$SRV_PID/status")
  if run_one "$rep" "$bin" fill 127.0.0.1 "$SRV_PORT" "$N_TPUT" "$PAYLOAD"; then
    rss_line "$rep" "$kind" "$idle"
    run_one "$rep" "$bin" drain 127.0.0.1 "$SRV_PORT" "$N_TPUT" 4
  fi
  stop_server
}

zmq_rep() {
  local rep=$1
  # what one thread hand-off costs on this machine (eventfd / TCP ping-pong)
  run_one "$rep" "$BENCH" wakeup --n 10000
  run_one "$rep" "$PEER_BIN/zmq_limit" direct "$N_SYNC" 1 "$PAYLOAD"
  run_one "$rep" "$PEER_BIN/zmq_limit" sync "$N_SYNC" 1 "$PAYLOAD"
  run_one "$rep" "$PEER_BIN/zmq_limit" sync "$N_SYNC" 4 "$PAYLOAD"
  run_one "$rep" "$PEER_BIN/zmq_limit" pipe_echo "$N_ZMQ" 4 "$PAYLOAD"
}

zmws_rep() { # every zmws-bench run starts its own broker on ephemeral ports
  local rep=$1 x
  run_one "$rep" "$BENCH" sync --n "$N_SYNC" --workers 1 --payload "$PAYLOAD"
  run_one "$rep" "$BENCH" sync --n "$N_SYNC" --workers 4 --payload "$PAYLOAD"
  run_one "$rep" "$BENCH" tput --n "$N_TPUT" --workers 4 --payload "$PAYLOAD"
  run_one "$rep" "$BENCH" pipe --n "$N_TPUT" --workers 4 --payload "$PAYLOAD" --window "$PIPE_WINDOW_ZMWS"
  run_one "$rep" "$BENCH" filldrain --n "$N_TPUT" --workers 4 --payload "$PAYLOAD"
  for c in $CAPACITIES; do
    run_one "$rep" "$BENCH" pipe --n "$N_TPUT" --workers 4 --payload "$PAYLOAD" --window "$PIPE_WINDOW_ZMWS" --capacity "$c"
    # (the fill before these drains goes by submit_batch; the serial fill is measured above)
    run_one "$rep" "$BENCH" filldrain --n "$N_TPUT" --workers 4 --payload "$PAYLOAD" --capacity "$c" --quiet-fill \
      --batch-fill --window "$PIPE_WINDOW_ZMWS"
  done
  # durable store on: the same async pipe_w4 (zmws.submit.batch jobs are journaled)
  if [ "$PERSIST" = 1 ]; then
    for c in $PERSIST_CAPACITIES; do
      run_one "$rep" "$BENCH" pipe --n "$N_TPUT" --workers 4 --payload "$PAYLOAD" --window "$PIPE_WINDOW_ZMWS" \
        --capacity "$c" --persist
    done
  fi
  # 1,000,000 queued jobs (filled by submit_batch, 10,000 a message): the broker's peak memory
  [ "$BIG" = 1 ] && run_one "$rep" "$BENCH" filldrain --n $((N_TPUT * 10)) --workers 4 --payload "$PAYLOAD" --no-drain \
    --batch-fill --window 10000 --broker-arg --max-queued --broker-arg $((N_TPUT * 20))
  # the capacity-1 scenarios again with a spinning broker (--spin-us)
  if [ -n "$SPIN_US" ] && [ "$SPIN_US" != 0 ]; then
    run_one "$rep" "$BENCH" sync --n "$N_SYNC" --workers 1 --payload "$PAYLOAD" --spin-us "$SPIN_US"
    run_one "$rep" "$BENCH" sync --n "$N_SYNC" --workers 4 --payload "$PAYLOAD" --spin-us "$SPIN_US"
    run_one "$rep" "$BENCH" tput --n "$N_TPUT" --workers 4 --payload "$PAYLOAD" --spin-us "$SPIN_US"
    run_one "$rep" "$BENCH" filldrain --n "$N_TPUT" --workers 4 --payload "$PAYLOAD" --quiet-fill --spin-us "$SPIN_US"
  fi
  for x in $EXTRA; do
    case $x in
      ipc)
        run_one "$rep" "$BENCH" sync --n "$N_SYNC" --workers 1 --payload "$PAYLOAD" --transport ipc
        run_one "$rep" "$BENCH" tput --n "$N_TPUT" --workers 4 --payload "$PAYLOAD" --transport ipc ;;
      news) run_one "$rep" "$BENCH" pipe --n "$N_TPUT" --workers 4 --payload "$PAYLOAD" --news ;;
      raw)
        run_one "$rep" "$BENCH" sync --n "$N_SYNC" --workers 1 --payload "$PAYLOAD" --raw-worker
        run_one "$rep" "$BENCH" filldrain --n "$N_TPUT" --workers 4 --payload "$PAYLOAD" --raw-worker --quiet-fill ;;
      *) echo "unknown EXTRA item $x" >&2 ;;
    esac
  done
  return 0
}

cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo "+dirty-src")
{
  echo "# zmws compare $(date -u +%FT%TZ) host=$(uname -n) nproc=$(nproc) kernel=$(uname -r) cpu=\"$cpu\""
  echo "# load at start: $(cut -d' ' -f1-3 /proc/loadavg); reps=$REPS payload=$PAYLOAD n_sync=$N_SYNC n_tput=$N_TPUT capacities=$CAPACITIES window=$PIPE_WINDOW_ZMWS quick=$QUICK"
  echo "# zmws $rev$BUILD_NOTE (broker binary built $(date -r "$ZMWS_BIN" +%FT%T), zmws-bench built $(date -r "$BENCH" +%FT%T))"
  hp=/sys/module/haltpoll/parameters/guest_halt_poll_ns
  echo "# cpuidle driver $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo none)$([ -r $hp ] && echo ", guest_halt_poll_ns=$(cat $hp)") (waking an idle vCPU: see the wakeup_* lines and bench/README.md)"
  echo "# ($ZMWS_BIN; broker --no-news --no-http --no-persist unless _persist, fresh per run); gearmand $(gearmand --version 2>/dev/null | awk 'NF{print $2; exit}') -t 1; beanstalkd $(beanstalkd -v 2>&1 | awk '{print $2}') (in memory); libzmq $(pkg-config --modversion libzmq 2>/dev/null)"
} >"$WORK/header"
cat "$WORK/header" >&2

LAST_REP_S=0
for rep in $(seq 1 "$REPS"); do
  if [ $((SECONDS - T_START + LAST_REP_S)) -gt "$BUDGET_S" ]; then
    echo "budget ${BUDGET_S}s: stopping after $((rep - 1)) reps" >&2
    echo "# stopped after $((rep - 1)) reps (budget ${BUDGET_S}s)" >>"$WORK/header"
    break
  fi
  echo "== rep $rep ($((SECONDS - T_START))s elapsed, load $(cut -d' ' -f1 /proc/loadavg))" >&2
  REP_T0=$SECONDS
  peer_rep "$rep" gearmand
  peer_rep "$rep" beanstalkd
  zmq_rep "$rep"
  zmws_rep "$rep"
  LAST_REP_S=$((SECONDS - REP_T0))
done
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg); total ${SECONDS}s" >>"$WORK/header"

REPORT=$OUT_DIR/report.md
{ cat "$WORK/header"; "$BENCH" report "$RAW"; } >"$REPORT" || { echo "report failed" >&2; exit 1; }
{ cat "$WORK/header"; sed -n '/^## medians/,/^$/p' "$REPORT" | grep '^peer='; } >"$OUT_DIR/results.txt"
cat "$REPORT"
echo "total ${SECONDS}s; per-rep lines in $RAW, medians in $OUT_DIR/results.txt, table in $REPORT" >&2
