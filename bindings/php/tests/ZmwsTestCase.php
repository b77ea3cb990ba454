<?php

declare(strict_types=1);

namespace Zmws\Tests;

use PHPUnit\Framework\TestCase;
use Zmws\Broker;
use Zmws\Client;

/**
 * A broker embedded in the test process (free loopback ports, 100 ms
 * heartbeats × 3, so the liveness window is 300 ms) plus helpers to run PHP
 * workers as child processes. Everything is torn down after each test class.
 */
abstract class ZmwsTestCase extends TestCase
{
    public const HEARTBEAT_MS = 100;
    public const LIVENESS = 3;

    protected static ?Broker $broker = null;
    protected static ?Client $client = null;
    /** @var list<WorkerProcess> */
    protected static array $workers = [];
    /** @var list<string> */
    protected static array $tempFiles = [];

    protected static function startBroker(array $options = []): Broker
    {
        $broker = new Broker($options + [
            'client_endpoint' => 'tcp://127.0.0.1:*',
            'worker_endpoint' => 'tcp://127.0.0.1:*',
            'news_endpoint' => null,
            'heartbeat_ms' => self::HEARTBEAT_MS,
            'liveness' => self::LIVENESS,
        ]);
        $broker->start();
        self::$broker = $broker;
        self::$client = new Client($broker->clientEndpoint(), 2000);
        return $broker;
    }

    protected static function fixture(string $name = 'test_worker.php'): string
    {
        return __DIR__ . '/fixtures/' . $name;
    }

    /**
     * A loopback TCP port nobody listens on, for a server started later.
     * Taken from below the kernel's ephemeral range: a released port-0 bind
     * may be taken by any outgoing connection before the server binds.
     * Unique within this process, spread over processes by pid, and checked
     * to be bindable now.
     */
    protected static function unusedPort(): int
    {
        static $counter = 0;
        $first = 20000;
        $range = @file_get_contents('/proc/sys/net/ipv4/ip_local_port_range');
        $ephemeralLow = $range === false ? 32768 : (int) preg_split('/\s+/', trim($range))[0];
        $span = $ephemeralLow - $first;
        if ($span < 1000) {
            $s = stream_socket_server('tcp://127.0.0.1:0');
            $name = (string) stream_socket_get_name($s, false);
            fclose($s);
            return (int) substr((string) strrchr($name, ':'), 1);
        }
        $base = getmypid() * 7919;
        for ($i = 0; $i < $span; $i++) {
            $port = $first + ($base + $counter++) % $span;
            $s = @stream_socket_server("tcp://127.0.0.1:$port");
            if ($s !== false) {
                fclose($s);
                return $port;
            }
        }
        throw new \RuntimeException("no free loopback port between $first and $ephemeralLow");
    }

    /** [host, port] of the broker's worker endpoint. */
    protected static function workerHostPort(): array
    {
        $ep = self::$broker->workerEndpoint();
        if (!preg_match('#^tcp://(.+):(\d+)$#', $ep, $m)) {
            throw new \RuntimeException("unexpected worker endpoint $ep");
        }
        return [$m[1], $m[2]];
    }

    /**
     * Starts the fixture worker for $service, configured through the seed's
     * flags (--backend-server, --backend-port) and --heartbeat-ms.
     *
     * @param list<string>          $args more flags
     * @param array<string, string> $env
     */
    protected static function startWorker(string $service, array $args = [], array $env = [], ?string $script = null): WorkerProcess
    {
        [$host, $port] = self::workerHostPort();
        $proc = new WorkerProcess($script ?? self::fixture(), array_merge([
            "--service-name=$service",
            "--backend-server=$host",
            '--backend-port', $port,
            '--heartbeat-ms=' . self::HEARTBEAT_MS,
        ], $args), $env + ['ZMWS_WORKER_ENDPOINT' => null, 'ZMWS_HEARTBEAT_MS' => null]);
        self::$workers[] = $proc;
        return $proc;
    }

    /** Waits until $count live workers offer $service. */
    protected static function waitForWorkers(string $service, int $count, int $timeoutMs = 15000): void
    {
        $deadline = microtime(true) + $timeoutMs / 1000;
        while (true) {
            $n = count(array_filter(self::$client->workers(), static fn (array $w): bool => $w['service'] === $service));
            if ($n >= $count) {
                return;
            }
            if (microtime(true) >= $deadline) {
                $logs = implode("\n---\n", array_map(static fn (WorkerProcess $p): string => $p->output(), self::$workers));
                throw new \RuntimeException("only $n of $count workers for $service after $timeoutMs ms; worker output:\n$logs");
            }
            usleep(20000);
        }
    }

    protected static function tempFile(string $prefix = 'zmws-php-test-'): string
    {
        $f = tempnam(sys_get_temp_dir(), $prefix) ?: throw new \RuntimeException('tempnam failed');
        self::$tempFiles[] = $f;
        return $f;
    }

    /** Waits (bounded) until $cond() is true. */
    protected static function eventually(callable $cond, int $timeoutMs = 10000, string $what = 'condition'): void
    {
        $deadline = microtime(true) + $timeoutMs / 1000;
        while (!$cond()) {
            if (microtime(true) >= $deadline) {
                throw new \RuntimeException("timed out after $timeoutMs ms waiting for $what");
            }
            usleep(20000);
        }
    }

    public static function tearDownAfterClass(): void
    {
        foreach (self::$workers as $w) {
            $w->stop(3000);
        }
        self::$workers = [];
        self::$client = null;
        if (self::$broker !== null) {
            self::$broker->stop();
            self::$broker = null;
        }
        foreach (self::$tempFiles as $f) {
            @unlink($f);
        }
        self::$tempFiles = [];
    }
}
