<?php

/*
 * opcache preload script: registers the FFI scope "ZMWS" with FFI::load(),
 * which Zmws\Native then finds with FFI::scope("ZMWS"), and preloads the
 * Zmws classes. For php-fpm and other SAPIs where ffi.enable=preload (PHP's
 * default) forbids FFI::cdef:
 *
 *     ; php.ini
 *     opcache.enable=1
 *     opcache.preload=/path/to/zmws/bindings/php/preload.php
 *     ffi.enable=preload
 *
 * PHP refuses FFI::load() together with opcache.preload_user, which is
 * required when the preloading process runs as root (a php-fpm master
 * started as root). Then use ffi.preload instead (no opcache needed):
 *
 *     php bindings/php/bin/zmws-ffi-scope.php --out=/etc/php/zmws_scope.h
 *     ; php.ini
 *     ffi.enable=preload
 *     ffi.preload=/etc/php/zmws_scope.h
 *
 * This script is also harmless next to ffi.preload: an existing "ZMWS"
 * scope is kept. The library is ZMWS_LIB from the environment, else the
 * in-tree target/release/libzmws.so, else libzmws.so from the loader path.
 * Restart php-fpm after rebuilding or upgrading the library.
 */

declare(strict_types=1);

require_once __DIR__ . '/autoload.php';

$zmwsScopeExists = true;
try {
    FFI::scope(Zmws\Native::SCOPE);
} catch (Throwable $e) {
    $zmwsScopeExists = false;
}
if (!$zmwsScopeExists) {
    Zmws\Native::preload();
}
unset($zmwsScopeExists);

foreach (glob(__DIR__ . '/src/*.php') ?: [] as $file) {
    class_exists('Zmws\\' . basename($file, '.php'));
}
