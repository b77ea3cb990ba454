#!/usr/bin/env bash
# C tests of the zmws C ABI. Called by the main test script; run from anywhere.
#
#  1. builds the release library and checks the committed header for drift;
#  2. compiles tests/c/test_zmws.c with -Wall -Wextra -Werror and runs it
#     (round trip, async/status/result, errors, timeouts, failing workers,
#     10,000-job batch in order, ...);
#  3. builds examples/c and runs broker + worker + client as processes;
#  4. `make install PREFIX=<tmp>`, then compiles the minimal program of
#     docs/C.md with `cc app.c $(pkg-config --cflags --libs zmws)` and runs it,
#     and links the static library once;
#  5. runs the tests (smaller batch) and the minimal program under
#     valgrind --leak-check=full --error-exitcode=1, plus a negative control
#     that must make valgrind fail.
#
# Needs: cargo, a C compiler (cc/gcc), g++ (optional, header check as C++),
# make, pkg-config, valgrind (Debian/Ubuntu: build-essential pkg-config valgrind).
# Environment: ZMWS_VALGRIND=0 or SKIP_VALGRIND=1 skips step 5;
# ZMWS_VALGRIND_BATCH (default 1000) is the batch size under valgrind.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=tests/c/build
CC=${CC:-cc}
CFLAGS="-std=c11 -O1 -g -Wall -Wextra -Werror -pedantic"
LIB="$ROOT/target/release"
mkdir -p "$BUILD"

step() { printf '\n== C: %s\n' "$*"; }
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -n "${prefix:-}" ] && rm -rf "$prefix"
}
trap cleanup EXIT

step "release library and header drift (include/zmws.h, include/zmws_ffi.h)"
tests/c/check_header.sh

step "compile tests/c/test_zmws.c ($CFLAGS)"
$CC $CFLAGS -Iinclude tests/c/test_zmws.c -o "$BUILD/test_zmws" -L"$LIB" -Wl,-rpath,"$LIB" -lzmws -pthread

step "run C tests"
timeout 300 "$BUILD/test_zmws"

step "examples/c: broker, worker, client as processes"
make -s -C examples/c
ex=examples/c/build
: > "$BUILD/broker.out"
"$ex/broker" 'tcp://127.0.0.1:*' 'tcp://127.0.0.1:*' '' > "$BUILD/broker.out" 2> "$BUILD/broker.err" &
broker_pid=$!; pids+=("$broker_pid")
client_ep=; worker_ep=
for _ in $(seq 1 100); do
  client_ep=$(awk '$1 == "client" { print $2 }' "$BUILD/broker.out")
  worker_ep=$(awk '$1 == "worker" { print $2 }' "$BUILD/broker.out")
  [ -n "$client_ep" ] && [ -n "$worker_ep" ] && break
  sleep 0.1
done
[ -n "$client_ep" ] || { echo "example broker did not print its endpoints" >&2; cat "$BUILD/broker.err" >&2; exit 1; }
"$ex/worker" "$worker_ep" STR-REV 2> "$BUILD/worker.err" &
worker_pid=$!; pids+=("$worker_pid")
timeout 60 "$ex/client" "$client_ep" STR-REV Hello | tee "$BUILD/client.out"
grep -qx 'async result {"str":"olleH"}' "$BUILD/client.out"
grep -qx 'sync result {"str":"olleH"}' "$BUILD/client.out"
grep -q '"state":"complete"' "$BUILD/client.out"
kill -TERM "$worker_pid"; wait "$worker_pid" || { echo "example worker exited with an error" >&2; cat "$BUILD/worker.err" >&2; exit 1; }
kill -TERM "$broker_pid"; wait "$broker_pid" || { echo "example broker exited with an error" >&2; cat "$BUILD/broker.err" >&2; exit 1; }
pids=()
echo "examples: ok"

step "make install PREFIX=<tmp>, pkg-config, the minimal program of docs/C.md"
prefix=$(mktemp -d)
make -s install PREFIX="$prefix"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
echo "pkg-config: zmws $(pkg-config --modversion zmws): $(pkg-config --cflags --libs zmws)"
sed -n '/<!-- BEGIN minimal.c/,/<!-- END minimal.c/p' docs/C.md | sed '1,2d;$d' | sed '$d' > "$BUILD/minimal.c"
grep -q 'int main' "$BUILD/minimal.c"
# shellcheck disable=SC2046
$CC -Wall -Wextra -Werror "$BUILD/minimal.c" -o "$BUILD/minimal" $(pkg-config --cflags --libs zmws)
# ldd to a file first: `ldd | grep -q` under pipefail fails at random when grep
# exits on the first match and ldd then dies of SIGPIPE.
LD_LIBRARY_PATH="$prefix/lib" ldd "$BUILD/minimal" > "$BUILD/minimal.ldd"
grep -q "$prefix/lib/libzmws" "$BUILD/minimal.ldd"
LD_LIBRARY_PATH="$prefix/lib" timeout 60 "$BUILD/minimal" | tee "$BUILD/minimal.out"
grep -qx 'result: olleH' "$BUILD/minimal.out"
$CC -Wall -Wextra -Werror "$BUILD/minimal.c" -o "$BUILD/minimal-static" -I"$prefix/include" \
  "$prefix/lib/libzmws.a" -lstdc++ -lpthread -ldl -lm
timeout 60 "$BUILD/minimal-static" > /dev/null
echo "install: ok"

if [ "${ZMWS_VALGRIND:-1}" = 0 ] || [ "${SKIP_VALGRIND:-0}" = 1 ]; then
  echo "valgrind pass skipped (ZMWS_VALGRIND=0 or SKIP_VALGRIND=1)"
  exit 0
fi
step "valgrind (memcheck, leaks and invalid accesses)"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
vg=(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect,possible
    --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=1 --num-callers=40
    --suppressions=tests/c/valgrind.supp)
ZMWS_TEST_BATCH=${ZMWS_VALGRIND_BATCH:-1000} ZMWS_TEST_SLOW=1 timeout 900 "${vg[@]}" "$BUILD/test_zmws"
LD_LIBRARY_PATH="$prefix/lib" timeout 300 "${vg[@]}" "$BUILD/minimal" > /dev/null
# Negative control: a string lost on purpose must fail the same command.
if ZMWS_TEST_LEAK=1 timeout 300 "${vg[@]}" "$BUILD/test_zmws" version_and_codes > "$BUILD/leak.out" 2>&1; then
  echo "valgrind did not report the intentional leak: the leak check is broken" >&2
  cat "$BUILD/leak.out" >&2
  exit 1
fi
grep -q "definitely lost" "$BUILD/leak.out"
echo "valgrind: no leaks, no invalid accesses (and the intentional leak was caught)"
