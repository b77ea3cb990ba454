#!/usr/bin/env bash
# Runs the PHP binding's PHPUnit suite against the in-tree library.
#
#   bindings/php/run_tests.sh [phpunit arguments…]
#
# 1. Installs php-cli and phpunit with apt-get when missing (Debian/Ubuntu;
#    needs root or sudo; runs `apt-get update` first).
# 2. Builds target/release/libzmws.so with `cargo build --release` at the
#    repository root (the target directory is shared: waiting for its lock is
#    normal).
# 3. Runs phpunit with bindings/php/phpunit.xml.dist. The tests start their own
#    brokers on free loopback ports and their own worker processes.
#
# Environment: ZMWS_PHP_MEMORY_JOBS=N also runs tools/memory.php over N jobs
# afterwards (the README's memory figures use 100000).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

missing=()
command -v php >/dev/null 2>&1 || missing+=(php-cli)
command -v phpunit >/dev/null 2>&1 || missing+=(phpunit)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]} with apt-get"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: ${missing[*]} missing and no apt-get; install PHP >= 8.1 (with FFI) and PHPUnit 9+" >&2
        exit 1
    fi
    sudo=()
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "error: installing ${missing[*]} needs root (or sudo)" >&2
            exit 1
        fi
    fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

if ! php -r 'exit(extension_loaded("ffi") ? 0 : 1);'; then
    echo "error: PHP's FFI extension is not loaded (php -m); Debian's php-cli has it, elsewhere enable extension=ffi" >&2
    exit 1
fi
php -r 'exit(PHP_VERSION_ID >= 80100 ? 0 : 1);' || { echo "error: PHP >= 8.1 needed, found $(php -r 'echo PHP_VERSION;')" >&2; exit 1; }

echo "== cargo build --release (libzmws)"
(cd "$root" && cargo build --release)
test -f "$root/target/release/libzmws.so" || { echo "error: $root/target/release/libzmws.so was not built" >&2; exit 1; }

# The tests use the in-tree library and their own brokers: ignore settings
# meant for other installations.
unset ZMWS_LIB ZMWS_FFI_HEADER ZMWS_WORKER_ENDPOINT ZMWS_BROKER ZMWS_HEARTBEAT_MS ZMWS_SERVICE

echo "== phpunit ($(php -r 'echo PHP_VERSION;'), $(phpunit --version | head -n 1))"
cd "$here"
status=0
phpunit -c phpunit.xml.dist "$@" || status=$?

if [ "$status" = 0 ] && [ -n "${ZMWS_PHP_MEMORY_JOBS:-}" ]; then
    echo "== worker memory over $ZMWS_PHP_MEMORY_JOBS jobs"
    php tools/memory.php --jobs="$ZMWS_PHP_MEMORY_JOBS" || status=$?
fi
exit "$status"
