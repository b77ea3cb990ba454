<?php

declare(strict_types=1);

namespace Zmws\Tests;

use PHPUnit\Framework\TestCase;
use Zmws\Broker;
use Zmws\Client;
use Zmws\InvalidArgumentException;
use Zmws\IoException;
use Zmws\LibraryNotFoundException;
use Zmws\Native;

/** The FFI layer: loading, result codes, errors, preloading, native memory. */
final class NativeTest extends TestCase
{
    private static function root(): string
    {
        return dirname(__DIR__, 3);
    }

    /**
     * Runs PHP in a fresh process: `-r $code` after the autoloader, or the
     * script and arguments of $script; $prefix goes before the PHP binary.
     */
    private static function php(string $code, array $env = [], array $ini = [], ?array $script = null, array $prefix = []): array
    {
        $environment = getenv();
        foreach ($env as $k => $v) {
            if ($v === null) {
                unset($environment[$k]);
            } else {
                $environment[$k] = $v;
            }
        }
        $cmd = array_merge($prefix, [PHP_BINARY]);
        foreach ($ini as $k => $v) {
            $cmd[] = '-d';
            $cmd[] = "$k=$v";
        }
        if ($script !== null) {
            $cmd = array_merge($cmd, $script);
        } else {
            $cmd[] = '-r';
            $cmd[] = 'require ' . var_export(dirname(__DIR__) . '/autoload.php', true) . ';' . $code;
        }
        $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['redirect', 1]], $pipes, null, $environment);
        $out = stream_get_contents($pipes[1]);
        fclose($pipes[1]);
        return [proc_close($proc), (string) $out];
    }

    public function testLoadsTheInTreeLibrary(): void
    {
        $n = Native::get();
        $this->assertSame('cdef', $n->mode);
        $this->assertMatchesRegularExpression('/^\d+\.\d+\.\d+/', $n->version());
        $this->assertSame(Native::get(), $n, 'one instance per process');
    }

    public function testMissingLibraryGivesAClearException(): void
    {
        try {
            Native::cdef('/nonexistent/dir/libzmws.so');
            $this->fail('no exception');
        } catch (LibraryNotFoundException $e) {
            $this->assertInstanceOf(\Zmws\Exception::class, $e);
            $this->assertStringContainsString('/nonexistent/dir/libzmws.so (no such file)', $e->getMessage());
            $this->assertStringContainsString('ZMWS_LIB', $e->getMessage());
        }
        try {
            Native::cdef('libzmws-not-installed-anywhere.so');
            $this->fail('no exception');
        } catch (LibraryNotFoundException $e) {
            $this->assertStringContainsString('libzmws-not-installed-anywhere.so', $e->getMessage());
        }
    }

    public function testMissingLibraryFromTheEnvironment(): void
    {
        [$rc, $out] = self::php(
            'try { new Zmws\Client(); echo "loaded"; } catch (Zmws\LibraryNotFoundException $e) { echo get_class($e), "|", $e->getMessage(); }',
            ['ZMWS_LIB' => '/nonexistent/libzmws.so']
        );
        $this->assertSame(0, $rc, $out);
        $this->assertStringStartsWith('Zmws\LibraryNotFoundException|cannot load libzmws; tried: /nonexistent/libzmws.so (no such file)', $out);
    }

    public function testResultCodesMirrorTheHeader(): void
    {
        $header = (string) file_get_contents(self::root() . '/include/zmws_ffi.h');
        $this->assertSame(1, preg_match('/typedef enum zmws_code \{(.*?)\}/s', $header, $m));
        preg_match_all('/ZMWS_([A-Z_]+) = (\d+)/', $m[1], $codes, PREG_SET_ORDER);
        $this->assertNotEmpty($codes);
        $ffi = Native::get()->ffi;
        foreach ($codes as [, $name, $value]) {
            $this->assertSame((int) $value, constant(Native::class . '::' . $name), $name);
            $this->assertSame("ZMWS_$name", Native::CODE_NAMES[(int) $value]);
            $this->assertSame("ZMWS_$name", $ffi->zmws_code_name((int) $value));
        }
        $this->assertCount(count($codes), Native::CODE_NAMES);
    }

    public function testErrorsCarryTheLibraryMessage(): void
    {
        try {
            new Broker(['heartbeat_ms' => 0]);
            $this->fail('no exception');
        } catch (InvalidArgumentException $e) {
            $this->assertSame(Native::INVALID_ARGUMENT, $e->getCode());
            $this->assertStringContainsString('heartbeat', $e->getMessage());
        }
        $this->expectException(InvalidArgumentException::class);
        new Client('not an endpoint');
    }

    public function testBrokerLifecycleAndBindErrors(): void
    {
        $a = new Broker(['client_endpoint' => 'tcp://127.0.0.1:*', 'worker_endpoint' => 'tcp://127.0.0.1:*', 'news_endpoint' => 'tcp://127.0.0.1:*']);
        $this->assertFalse($a->isRunning());
        $a->start();
        $this->assertTrue($a->isRunning());
        $this->assertMatchesRegularExpression('#^tcp://127\.0\.0\.1:\d+$#', (string) $a->newsEndpoint());
        $b = new Broker(['client_endpoint' => $a->clientEndpoint(), 'worker_endpoint' => 'tcp://127.0.0.1:*', 'news_endpoint' => null]);
        try {
            $b->start();
            $this->fail('binding a port in use must fail');
        } catch (IoException $e) {
            $this->assertNotSame('', $e->getMessage());
        }
        $a->stop();
        $this->assertFalse($a->isRunning());
        $a->start(); // a stopped broker starts again
        $this->assertTrue($a->isRunning());
        $a->free();
        $this->assertFalse($a->isRunning());
    }

    public function testBrokerSpinUsIsCheckedAndASpinningBrokerAnswers(): void
    {
        foreach ([10001, 4294967297, -1, 'x'] as $bad) {
            try {
                new Broker(['spin_us' => $bad]);
                $this->fail("spin_us $bad must be refused");
            } catch (InvalidArgumentException $e) {
                $this->assertSame(Native::INVALID_ARGUMENT, $e->getCode());
                $this->assertStringContainsString('spin_us', $e->getMessage());
            }
        }
        $broker = (new Broker(['client_endpoint' => 'tcp://127.0.0.1:*', 'worker_endpoint' => 'tcp://127.0.0.1:*', 'news_endpoint' => null, 'spin_us' => 300]))->start();
        $client = new Client($broker->clientEndpoint(), 2000);
        for ($i = 0; $i < 20; $i++) {
            $this->assertSame([], $client->workers());
        }
        $client->close();
        $broker->stop();
    }

    public function testBrokerRefusesNumbersOutOfRangeNamingOptionAndValue(): void
    {
        $cases = [
            ['max_attempts', -1, '-1'],
            ['max_attempts', 0, '0'],
            ['max_attempts', 4294967296, '4294967296'],
            ['max_attempts', '-1', '"-1"'],
            ['max_attempts', '99999999999999999999999', '"99999999999999999999999"'],
            ['liveness', -1, '-1'],
            ['heartbeat_ms', -1, '-1'],
            ['heartbeat_ms', 1000000000001, '1000000000001'],
            ['job_timeout_ms', -5, '-5'],
            ['result_ttl_ms', 0, '0'],
            ['max_payload', -1, '-1'],
            ['max_queued', (1 << 40) + 1, (string) ((1 << 40) + 1)],
            ['history_len', -1, '-1'],
            ['hwm', 0, '0'],
            ['hwm', 2147483648, '2147483648'],
            ['spin_us', -1, '-1'],
            ['liveness', 'x', '"x"'],
        ];
        foreach ($cases as [$name, $value, $shown]) {
            try {
                new Broker([$name => $value]);
                $this->fail("$name => $shown must be refused");
            } catch (InvalidArgumentException $e) {
                $this->assertSame(Native::INVALID_ARGUMENT, $e->getCode());
                $this->assertStringContainsString("'$name'", $e->getMessage());
                $this->assertStringEndsWith("not $shown", $e->getMessage());
                $this->assertStringNotContainsString('18446744073709551615', $e->getMessage());
            }
        }
        // The limits themselves are accepted, digit strings too.
        new Broker(['max_attempts' => 4294967295, 'liveness' => 1, 'heartbeat_ms' => '1000', 'history_len' => 0,
            'job_timeout_ms' => 1000000000000, 'max_queued' => 1 << 40, 'hwm' => 2147483647, 'spin_us' => 0]);
        try {
            new Broker(['data_dir' => "/tmp/a\0b"]);
            $this->fail('a NUL byte in data_dir must be refused');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString("broker option 'data_dir' must not contain NUL bytes", $e->getMessage());
        }
    }

    public function testBrokerWithADurableStore(): void
    {
        $dir = sys_get_temp_dir() . '/zmws-php-store-' . getmypid() . '-' . bin2hex(random_bytes(4));
        try {
            $b = new Broker(['client_endpoint' => 'tcp://127.0.0.1:*', 'worker_endpoint' => 'tcp://127.0.0.1:*', 'news_endpoint' => null, 'data_dir' => $dir]);
            $b->start();
            $this->assertTrue($b->isRunning());
            $this->assertDirectoryExists($dir);
            // One broker per store directory.
            $second = new Broker(['client_endpoint' => 'tcp://127.0.0.1:*', 'worker_endpoint' => 'tcp://127.0.0.1:*', 'news_endpoint' => null, 'data_dir' => $dir]);
            try {
                $second->start();
                $this->fail('a second broker on the same data_dir must be refused');
            } catch (\Zmws\Exception $e) {
                $this->assertStringContainsString('in use by another broker', $e->getMessage());
            } finally {
                $second->free();
            }
            $b->free();
            // Freed: the directory is free again.
            $again = new Broker(['client_endpoint' => 'tcp://127.0.0.1:*', 'worker_endpoint' => 'tcp://127.0.0.1:*', 'news_endpoint' => null, 'data_dir' => $dir]);
            $again->start();
            $this->assertTrue($again->isRunning());
            $again->free();
            touch("$dir.file");
            $bad = new Broker(['client_endpoint' => 'tcp://127.0.0.1:*', 'worker_endpoint' => 'tcp://127.0.0.1:*', 'news_endpoint' => null, 'data_dir' => "$dir.file"]);
            try {
                $bad->start();
                $this->fail('a file is no store directory');
            } catch (\Zmws\Exception $e) {
                $this->assertNotSame('', $e->getMessage());
            }
        } finally {
            @unlink("$dir.file");
            foreach (glob("$dir/*") ?: [] as $f) {
                @unlink($f);
            }
            @rmdir($dir);
        }
    }

    public function testScopeFromFfiPreload(): void
    {
        // php-fpm as root: ffi.preload with the file bin/zmws-ffi-scope.php writes.
        $file = sys_get_temp_dir() . '/zmws-php-test-scope-' . getmypid() . '.h';
        try {
            [$rc, $out] = self::php('', [], [], [dirname(__DIR__) . '/bin/zmws-ffi-scope.php', "--out=$file"]);
            $this->assertSame(0, $rc, $out);
            $this->assertStringStartsWith("#define FFI_SCOPE \"ZMWS\"\n#define FFI_LIB \"/", (string) file_get_contents($file));
            [$rc, $out] = self::php(
                '$n = Zmws\Native::get(); echo $n->mode, "|", $n->version(), "|", (new Zmws\Broker())->isRunning() ? "running" : "stopped";',
                [],
                ['ffi.enable' => 'preload', 'ffi.preload' => $file]
            );
            $this->assertSame(0, $rc, $out);
            $this->assertSame('scope|' . Native::get()->version() . '|stopped', trim($out));
        } finally {
            @unlink($file);
        }
    }

    public function testScopeFromOpcachePreload(): void
    {
        if (!function_exists('opcache_get_status')) {
            $this->markTestSkipped('needs opcache');
        }
        // FFI::load() does not work with opcache.preload_user, which root
        // needs: preload as an unprivileged user, as a non-root php-fpm would.
        $prefix = [];
        if (function_exists('posix_geteuid') && posix_geteuid() === 0) {
            $runuser = is_executable('/usr/sbin/runuser') ? '/usr/sbin/runuser' : (is_executable('/sbin/runuser') ? '/sbin/runuser' : null);
            if ($runuser === null || posix_getpwnam('nobody') === false) {
                $this->markTestSkipped('running as root without runuser/nobody to preload as another user');
            }
            $prefix = [$runuser, '-u', 'nobody', '--'];
        }
        [$rc, $out] = self::php(
            '$n = Zmws\Native::get(); echo $n->mode, "|", $n->version(), "|", (new Zmws\Broker())->isRunning() ? "running" : "stopped";',
            [],
            [
                'opcache.enable' => '1',
                'opcache.enable_cli' => '1',
                'opcache.preload' => dirname(__DIR__) . '/preload.php',
                'ffi.enable' => 'preload',
            ],
            null,
            $prefix
        );
        if ($prefix !== [] && str_contains($out, 'Permission denied')) {
            $this->markTestSkipped("user nobody cannot read the library or the tree: $out");
        }
        $this->assertSame(0, $rc, $out);
        $this->assertSame('scope|' . Native::get()->version() . '|stopped', trim($out));
    }

    public function testNoNativeMemoryGrowth(): void
    {
        // Worker, client and broker in this process: a few thousand jobs after
        // a warm-up must not grow PHP's heap, nor the process noticeably.
        $broker = (new Broker(['client_endpoint' => 'tcp://127.0.0.1:*', 'worker_endpoint' => 'tcp://127.0.0.1:*', 'news_endpoint' => null, 'result_ttl_ms' => 1]))->start();
        $client = new Client($broker->clientEndpoint());
        $worker = new class (['t.php', '--backend-server=' . $broker->workerEndpoint()]) extends \Worker_Base {
            public $serviceName = 'PHP-MEM';

            public function work($jobid, $param = '')
            {
                return strrev($param->str);
            }
        };
        $worker->connect();
        $this->assertTrue($client->waitForService('PHP-MEM', 5000));
        $round = function (int $n) use ($client, $worker): void {
            for ($i = 0; $i < $n; $i++) {
                $id = $client->submit('PHP-MEM', ['str' => "payload $i " . str_repeat('x', 200)]);
                $this->assertTrue($worker->loop());
                try {
                    $client->status($id);
                } catch (\Zmws\NotFoundException $e) {
                    // result_ttl_ms is 1: the finished record may already be pruned.
                }
            }
        };
        $round(2000);
        gc_collect_cycles();
        $heap = memory_get_usage();
        $rss = self::rssKb();
        $round(4000);
        gc_collect_cycles();
        $this->assertLessThan(16 * 1024, memory_get_usage() - $heap, 'PHP heap growth in bytes over 4000 jobs');
        if ($rss !== null) {
            $this->assertLessThan(4096, self::rssKb() - $rss, 'RSS growth in KiB over 4000 jobs');
        }
        $worker->stop();
        $this->assertFalse($worker->loop());
        $broker->stop();
    }

    private static function rssKb(): ?int
    {
        $status = @file_get_contents('/proc/self/status');
        return $status !== false && preg_match('/^VmRSS:\s+(\d+) kB/m', $status, $m) ? (int) $m[1] : null;
    }
}
