#!/usr/bin/env bash
# Header drift check for the C API.
#
#   tests/c/check_header.sh            fail if include/zmws.h or include/zmws_ffi.h
#                                      differ from what build.rs generates now
#   tests/c/check_header.sh --update   copy the fresh generation into include/
#
# build.rs (cbindgen) writes both files into Cargo's OUT_DIR only; this script
# finds that directory through `cargo build --message-format=json`. The check
# also compiles the header as C99 and C++ and the PHP declarations as C, and
# makes sure the PHP file holds nothing PHP's FFI parser rejects.
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=check
case "${1:-}" in
  --update) mode=update ;;
  "") ;;
  *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac

CARGO=${CARGO:-cargo}
CC=${CC:-cc}
CXX=${CXX:-c++}

json=$("$CARGO" build --release --locked --lib --message-format=json-render-diagnostics)
out_dir=$(printf '%s\n' "$json" \
  | grep '"reason":"build-script-executed"' \
  | grep -E '"package_id":"([^"]*#zmws@|zmws )' \
  | sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)
if [ -z "$out_dir" ] || [ ! -f "$out_dir/zmws.h" ] || [ ! -f "$out_dir/zmws_ffi.h" ]; then
  echo "check_header: cannot find the generated header (OUT_DIR '$out_dir')" >&2
  exit 1
fi

status=0
for f in zmws.h zmws_ffi.h; do
  if [ "$mode" = update ]; then
    if ! cmp -s "$out_dir/$f" "include/$f"; then
      cp "$out_dir/$f" "include/$f"
      echo "check_header: updated include/$f"
    fi
  elif ! cmp -s "$out_dir/$f" "include/$f"; then
    echo "check_header: include/$f differs from the generated header (run 'make header' and commit it):" >&2
    diff -u "include/$f" "$out_dir/$f" >&2 || true
    status=1
  fi
done
[ "$status" = 0 ] || exit 1
[ "$mode" = update ] && exit 0

# PHP's FFI parser: no preprocessor lines, no extern "C", no typed enums.
if grep -nE '^[[:space:]]*#|extern "C"|enum[[:space:]]+[A-Za-z_0-9]+[[:space:]]*:' include/zmws_ffi.h >&2; then
  echo "check_header: include/zmws_ffi.h holds something PHP's FFI cannot parse (lines above)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include "zmws.h"\nint main(void) { return zmws_version() == 0; }\n' > "$tmp/h.c"
"$CC" -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude -fsyntax-only "$tmp/h.c"
if command -v "$CXX" >/dev/null 2>&1; then
  cp "$tmp/h.c" "$tmp/h.cpp"
  "$CXX" -Wall -Wextra -Werror -Iinclude -fsyntax-only "$tmp/h.cpp"
fi
{ printf '#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n'; cat include/zmws_ffi.h; } > "$tmp/ffi.c"
"$CC" -std=c99 -Wall -Wextra -Werror -pedantic -fsyntax-only "$tmp/ffi.c"
echo "check_header: include/zmws.h and include/zmws_ffi.h are up to date"
