<?php

declare(strict_types=1);

namespace Zmws;

use FFI;
use FFI\CData;

/**
 * The thin FFI layer: loads libzmws and its declarations once per process and
 * holds the few helpers every wrapper class shares (result codes to
 * exceptions, PHP strings to native buffers, freeing what the library hands
 * out). Zmws\Client, Zmws\Worker and Zmws\Broker are built on it; application
 * code rarely needs it directly.
 *
 * Where the library comes from, in this order:
 *  1. an FFI scope "ZMWS" preloaded by opcache (php-fpm with ffi.enable=preload,
 *     see bindings/php/preload.php and Native::preload());
 *  2. FFI::cdef() (the CLI, or ffi.enable=true) with the declarations of
 *     zmws_ffi.h and the library named by the environment variable ZMWS_LIB,
 *     else the in-tree build target/release/libzmws.so, else the system
 *     library libzmws.so found by the dynamic loader.
 * The declaration file is ZMWS_FFI_HEADER, else the zmws_ffi.h installed
 * beside the library (PREFIX/share/zmws/), else the in-tree include/zmws_ffi.h,
 * else /usr/local/share/zmws or /usr/share/zmws.
 */
final class Native
{
    // The result codes of the C API (enum zmws_code in include/zmws.h).
    public const OK = 0;
    public const TIMEOUT = 1;
    public const NO_SUCH_SERVICE = 2;
    public const INVALID_ARGUMENT = 3;
    public const JOB_FAILED = 4;
    public const QUEUE_FULL = 5;
    public const CLOSED = 6;
    public const NOT_FOUND = 7;
    public const PENDING = 8;
    public const TOO_LARGE = 9;
    public const PROTOCOL = 10;
    public const INTERNAL = 11;
    public const IO = 12;
    public const IDLE = 13;

    /** Symbolic names, as zmws_code_name() gives them. */
    public const CODE_NAMES = [
        self::OK => 'ZMWS_OK',
        self::TIMEOUT => 'ZMWS_TIMEOUT',
        self::NO_SUCH_SERVICE => 'ZMWS_NO_SUCH_SERVICE',
        self::INVALID_ARGUMENT => 'ZMWS_INVALID_ARGUMENT',
        self::JOB_FAILED => 'ZMWS_JOB_FAILED',
        self::QUEUE_FULL => 'ZMWS_QUEUE_FULL',
        self::CLOSED => 'ZMWS_CLOSED',
        self::NOT_FOUND => 'ZMWS_NOT_FOUND',
        self::PENDING => 'ZMWS_PENDING',
        self::TOO_LARGE => 'ZMWS_TOO_LARGE',
        self::PROTOCOL => 'ZMWS_PROTOCOL',
        self::INTERNAL => 'ZMWS_INTERNAL',
        self::IO => 'ZMWS_IO',
        self::IDLE => 'ZMWS_IDLE',
    ];

    /** The exception class of each error code; others give Zmws\Exception. */
    private const EXCEPTIONS = [
        self::TIMEOUT => TimeoutException::class,
        self::NO_SUCH_SERVICE => NoSuchServiceException::class,
        self::INVALID_ARGUMENT => InvalidArgumentException::class,
        self::JOB_FAILED => JobFailedException::class,
        self::QUEUE_FULL => QueueFullException::class,
        self::CLOSED => ClosedException::class,
        self::NOT_FOUND => NotFoundException::class,
        self::PENDING => PendingException::class,
        self::TOO_LARGE => TooLargeException::class,
        self::PROTOCOL => ProtocolException::class,
        self::INTERNAL => InternalException::class,
        self::IO => IoException::class,
    ];

    /** The FFI scope name bindings/php/preload.php registers. */
    public const SCOPE = 'ZMWS';

    private static ?Native $instance = null;

    /**
     * The FFI object: call the C functions on it ($native->ffi->zmws_version()).
     * Always use it as an instance ($ffi->new(), $ffi->cast()): the static
     * forms are deprecated since PHP 8.3.
     */
    public FFI $ffi;

    /** "scope" (preloaded with FFI::load) or "cdef". */
    public string $mode;

    /** The library loaded by FFI::cdef (NULL for a preloaded scope). */
    public ?string $library;

    /** The declaration file used by FFI::cdef (NULL for a preloaded scope). */
    public ?string $header;

    private function __construct(FFI $ffi, string $mode, ?string $library, ?string $header)
    {
        $this->ffi = $ffi;
        $this->mode = $mode;
        $this->library = $library;
        $this->header = $header;
    }

    /**
     * The process-wide instance: the preloaded scope if there is one, else
     * FFI::cdef() with the library and declarations found as described above.
     *
     * @throws LibraryException when FFI is unavailable or the library cannot be loaded
     */
    public static function get(): self
    {
        return self::$instance ??= self::open();
    }

    /** Opens the library without touching the process-wide instance. */
    public static function open(): self
    {
        self::requireFfi();
        try {
            return new self(FFI::scope(self::SCOPE), 'scope', null, null);
        } catch (\FFI\Exception $e) {
            // Not preloaded: fall through to FFI::cdef.
        } catch (\Error $e) {
            // Same (some PHP builds report a missing scope as a plain Error).
        }
        return self::cdef();
    }

    /**
     * Loads the library with FFI::cdef(). $library is a path or a name for
     * the dynamic loader; NULL tries ZMWS_LIB, the in-tree build and the
     * system library in turn. $header defaults as described on the class.
     *
     * @throws LibraryNotFoundException when neither library nor declarations can be found
     * @throws LibraryException         when FFI is restricted or the declarations do not parse
     */
    public static function cdef(?string $library = null, ?string $header = null): self
    {
        self::requireFfi();
        $tried = [];
        foreach ($library !== null ? [$library] : self::libraryCandidates() as $lib) {
            if (str_contains($lib, '/') && !is_file($lib)) {
                $tried[] = "$lib (no such file)";
                continue;
            }
            $decl = $header ?? self::findHeader($lib);
            $text = @file_get_contents($decl);
            if ($text === false) {
                throw new LibraryNotFoundException("cannot read the zmws declaration file $decl");
            }
            try {
                return new self(FFI::cdef($text, $lib), 'cdef', $lib, $decl);
            } catch (\FFI\ParserException $e) {
                throw new LibraryException("PHP's FFI cannot parse $decl: " . $e->getMessage(), 0, $e);
            } catch (\FFI\Exception $e) {
                if (stripos($e->getMessage(), 'restricted') !== false) {
                    throw new LibraryException(
                        'FFI::cdef is not allowed here (' . $e->getMessage() . ', ffi.enable=' . ini_get('ffi.enable')
                        . '): preload the library with ffi.preload=FILE (FILE written by `php ' . dirname(__DIR__)
                        . '/bin/zmws-ffi-scope.php --out=FILE`) or opcache.preload=' . dirname(__DIR__)
                        . '/preload.php, and ffi.enable=preload; see docs/PHP.md',
                        0,
                        $e
                    );
                }
                $tried[] = "$lib (" . $e->getMessage() . ')';
            }
        }
        throw new LibraryNotFoundException(
            'cannot load libzmws; tried: ' . implode('; ', $tried) . '. Build it with `cargo build --release` '
            . 'at the zmws repository root, install it with `make install`, or set ZMWS_LIB to the path of '
            . self::systemName()
        );
    }

    /**
     * Registers the FFI scope "ZMWS" with FFI::load(); call it from an opcache
     * preload script (bindings/php/preload.php does) so that php-fpm workers,
     * where ffi.enable=preload forbids FFI::cdef, find the library through
     * FFI::scope("ZMWS").
     *
     * PHP refuses FFI::load() when opcache.preload_user is set, which it must
     * be when the preloading process runs as root (a usual php-fpm master):
     * there use ffi.preload with a file from writeScopeHeader() instead.
     *
     * FFI::load() reads FFI_SCOPE and FFI_LIB only from the top of a file, so
     * this writes zmws_ffi.h with those two lines in front into $cacheDir
     * (default: the system temporary directory), named after its content.
     */
    public static function preload(?string $library = null, ?string $header = null, ?string $cacheDir = null): FFI
    {
        self::requireFfi();
        $text = self::scopeHeader($library, $header);
        $dir = $cacheDir ?? sys_get_temp_dir();
        $file = $dir . '/zmws_ffi_scope_' . substr(hash('sha256', $text), 0, 16) . '.h';
        if (@file_get_contents($file) !== $text) {
            self::writeScopeHeader($file, $library, $header);
        }
        try {
            $ffi = FFI::load($file);
        } catch (\FFI\Exception $e) {
            $hint = str_contains($e->getMessage(), 'preload_user')
                ? ' Generate a scope file with `php ' . dirname(__DIR__) . '/bin/zmws-ffi-scope.php --out=FILE` and set ffi.preload=FILE instead.'
                : '';
            throw new LibraryException("FFI::load($file) failed: " . $e->getMessage() . $hint, 0, $e);
        }
        if ($ffi === null) {
            throw new LibraryException("FFI::load($file) failed (see the PHP warning above)");
        }
        return $ffi;
    }

    /**
     * The declarations of zmws_ffi.h preceded by `#define FFI_SCOPE "ZMWS"`
     * and `#define FFI_LIB "<library>"`: the form FFI::load() and the
     * ffi.preload ini setting read. $library defaults to the first existing
     * candidate of libraryCandidates() (made absolute), else the system name.
     */
    public static function scopeHeader(?string $library = null, ?string $header = null): string
    {
        if ($library === null) {
            foreach (self::libraryCandidates() as $lib) {
                $library = $lib;
                if (!str_contains($lib, '/') || is_file($lib)) {
                    break;
                }
            }
        }
        $library = (string) $library;
        if (str_contains($library, '/')) {
            if (!is_file($library)) {
                throw new LibraryNotFoundException("cannot use libzmws: $library does not exist");
            }
            $library = (string) realpath($library);
        }
        $header ??= self::findHeader($library);
        $decl = @file_get_contents($header);
        if ($decl === false) {
            throw new LibraryNotFoundException("cannot read the zmws declaration file $header");
        }
        return '#define FFI_SCOPE "' . self::SCOPE . "\"\n"
            . '#define FFI_LIB "' . addcslashes($library, "\"\\") . "\"\n"
            . $decl;
    }

    /** Writes scopeHeader() into $file (atomically); returns $file. */
    public static function writeScopeHeader(string $file, ?string $library = null, ?string $header = null): string
    {
        $text = self::scopeHeader($library, $header);
        $tmp = $file . '.' . getmypid() . '.tmp';
        if (@file_put_contents($tmp, $text) === false || !@rename($tmp, $file)) {
            @unlink($tmp);
            throw new LibraryException("cannot write the FFI scope file $file");
        }
        return $file;
    }

    /**
     * The libraries FFI::cdef tries, in order: ZMWS_LIB alone when set (an
     * explicit choice never falls back), else the in-tree build and the
     * system library name.
     *
     * @return list<string>
     */
    public static function libraryCandidates(): array
    {
        $env = getenv('ZMWS_LIB');
        if (is_string($env) && $env !== '') {
            return [$env];
        }
        return [self::repoRoot() . '/target/release/' . self::systemName(), self::systemName()];
    }

    /** The zmws_ffi.h to use with $library (see the class comment). */
    public static function findHeader(?string $library = null): string
    {
        $env = getenv('ZMWS_FFI_HEADER');
        if (is_string($env) && $env !== '') {
            return $env;
        }
        $candidates = [];
        if ($library !== null && str_contains($library, '/')) {
            $prefix = dirname($library, 2);
            $candidates[] = $prefix . '/share/zmws/zmws_ffi.h';
            $candidates[] = $prefix . '/include/zmws_ffi.h';
            if (basename(dirname($library)) === 'release' && basename(dirname($library, 2)) === 'target') {
                $candidates[] = dirname($library, 3) . '/include/zmws_ffi.h';
            }
        }
        $candidates[] = self::repoRoot() . '/include/zmws_ffi.h';
        $candidates[] = '/usr/local/share/zmws/zmws_ffi.h';
        $candidates[] = '/usr/share/zmws/zmws_ffi.h';
        foreach ($candidates as $c) {
            if (is_file($c)) {
                return $c;
            }
        }
        throw new LibraryNotFoundException(
            'cannot find zmws_ffi.h (the declarations for PHP\'s FFI); looked in: ' . implode(', ', $candidates)
            . '. Set ZMWS_FFI_HEADER to its path.'
        );
    }

    /** The file name of the shared library on this system. */
    public static function systemName(): string
    {
        return PHP_OS_FAMILY === 'Darwin' ? 'libzmws.dylib' : 'libzmws.so';
    }

    private static function repoRoot(): string
    {
        return dirname(__DIR__, 3);
    }

    private static function requireFfi(): void
    {
        if (!extension_loaded('ffi') || !class_exists(FFI::class, false)) {
            throw new LibraryException(
                'the PHP FFI extension is not loaded (php -m | grep FFI); install or enable it '
                . '(Debian: it is part of php-cli; otherwise extension=ffi in php.ini)'
            );
        }
    }

    // ------------------------------------------------------------- helpers

    /** The library version, e.g. "0.1.0". */
    public function version(): string
    {
        return (string) $this->ffi->zmws_version();
    }

    /** The message of the last failed call on this thread ("" after a success). */
    public function lastError(): string
    {
        return (string) $this->ffi->zmws_last_error();
    }

    /** Throws the exception of $rc unless it is OK. */
    public function check(int $rc, string $context = ''): void
    {
        if ($rc !== self::OK) {
            throw $this->error($rc, $context);
        }
    }

    /** The exception for result code $rc with the library's message. */
    public function error(int $rc, string $context = ''): Exception
    {
        $message = $this->lastError();
        if ($message === '') {
            $message = self::CODE_NAMES[$rc] ?? "zmws error $rc";
        }
        if ($rc === self::JOB_FAILED && str_starts_with($message, 'job failed: job failed ')) {
            // "job failed: job failed after 2 attempt(s): …": the broker's
            // reason already says it; keep one prefix.
            $message = substr($message, strlen('job failed: '));
        }
        if ($context !== '') {
            $message = "$context: $message";
        }
        $class = self::EXCEPTIONS[$rc] ?? Exception::class;
        return new $class($message, $rc);
    }

    /**
     * $value checked for a `const char *` parameter: a NUL byte would end the
     * C string early and the library takes UTF-8 only.
     *
     * @param string $what the argument, for the message (e.g. '$service')
     * @throws InvalidArgumentException naming $what
     */
    public static function cString(string $value, string $what): string
    {
        if (str_contains($value, "\0")) {
            throw new InvalidArgumentException("$what must not contain NUL bytes: " . self::show($value), self::INVALID_ARGUMENT);
        }
        if (!preg_match('//u', $value)) {
            throw new InvalidArgumentException("$what is not valid UTF-8: " . self::show($value), self::INVALID_ARGUMENT);
        }
        return $value;
    }

    /** A string quoted for a message, control and non-ASCII bytes escaped (at most 80 bytes shown). */
    public static function show(string $value): string
    {
        $cut = strlen($value) > 80;
        return '"' . addcslashes($cut ? substr($value, 0, 80) : $value, "\0..\37\177..\377\\\"") . '"' . ($cut ? '…' : '');
    }

    /**
     * A PHP string as a native byte array for `const uint8_t *` parameters
     * (PHP's FFI passes strings only as `char *`), or NULL for "". Freed by
     * PHP when the returned object goes away.
     */
    public function bytes(string $data): ?CData
    {
        $n = strlen($data);
        if ($n === 0) {
            return null;
        }
        $buf = $this->ffi->new("uint8_t[$n]");
        FFI::memcpy($buf, $data, $n);
        return $buf;
    }

    /** A new native value of $type (e.g. "char *") for an output parameter. */
    public function out(string $type): CData
    {
        return $this->ffi->new($type);
    }

    /** Copies a `char *` the library handed out into PHP and frees it. */
    public function takeString(CData $ptr): string
    {
        try {
            return FFI::isNull($ptr) ? '' : FFI::string($ptr);
        } finally {
            $this->ffi->zmws_string_free($ptr);
        }
    }

    /** Copies a `uint8_t *` result buffer of $len bytes into PHP and frees it. */
    public function takeBuffer(CData $ptr, int $len): string
    {
        try {
            return ($len === 0 || FFI::isNull($ptr)) ? '' : FFI::string($ptr, $len);
        } finally {
            $this->ffi->zmws_buffer_free($ptr);
        }
    }

    /** Decodes a JSON text the library produced. */
    public static function decodeJson(string $json): mixed
    {
        try {
            return json_decode($json, true, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new ProtocolException('the library returned invalid JSON: ' . $e->getMessage(), self::PROTOCOL, $e);
        }
    }

    /**
     * A job parameter as payload bytes: a string as is, NULL as "", anything
     * else (arrays, objects, numbers, booleans) JSON-encoded.
     */
    public static function encodeParam(mixed $param): string
    {
        if (is_string($param)) {
            return $param;
        }
        if ($param === null) {
            return '';
        }
        try {
            return json_encode($param, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        } catch (\JsonException $e) {
            throw new InvalidArgumentException('cannot JSON-encode the job parameter: ' . $e->getMessage(), self::INVALID_ARGUMENT, $e);
        }
    }
}
