<?php

/*
 * Writes the FFI scope file for the ffi.preload ini setting (php-fpm and
 * other SAPIs where ffi.enable=preload forbids FFI::cdef): zmws_ffi.h with
 * `#define FFI_SCOPE "ZMWS"` and `#define FFI_LIB "<absolute library path>"`
 * in front. Zmws\Native then finds the library with FFI::scope("ZMWS").
 *
 *   php bindings/php/bin/zmws-ffi-scope.php --out=/etc/php/zmws_scope.h \
 *       [--lib=/usr/local/lib/libzmws.so] [--header=/usr/local/share/zmws/zmws_ffi.h]
 *
 *   ; php.ini of php-fpm
 *   ffi.enable=preload
 *   ffi.preload=/etc/php/zmws_scope.h
 *
 * Without --lib: ZMWS_LIB, else the in-tree target/release/libzmws.so, else
 * the system name libzmws.so. Without --out the file goes to stdout. Run it
 * again after moving or upgrading the library, then restart php-fpm.
 */

declare(strict_types=1);

require_once dirname(__DIR__) . '/autoload.php';

$args = get_cli_args();
$lib = cli_config_get($args, ['lib'], null);
$header = cli_config_get($args, ['header'], null);
$out = cli_config_get($args, ['out', 'o'], null);
if (cli_config_get($args, ['help', 'h'], false) === true) {
    fwrite(STDOUT, "usage: php zmws-ffi-scope.php [--out=FILE] [--lib=LIBRARY] [--header=zmws_ffi.h]\n");
    exit(0);
}

try {
    $lib = is_string($lib) ? $lib : null;
    $header = is_string($header) ? $header : null;
    if (is_string($out)) {
        Zmws\Native::writeScopeHeader($out, $lib, $header);
        fwrite(STDERR, "wrote $out; set ffi.preload=" . realpath($out) . " (and ffi.enable=preload)\n");
    } else {
        fwrite(STDOUT, Zmws\Native::scopeHeader($lib, $header));
    }
} catch (Zmws\Exception $e) {
    fwrite(STDERR, 'zmws-ffi-scope: ' . $e->getMessage() . "\n");
    exit(1);
}
