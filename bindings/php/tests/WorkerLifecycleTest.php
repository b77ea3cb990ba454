<?php

declare(strict_types=1);

namespace Zmws\Tests;

/**
 * Worker processes: SIGTERM after the current job, idle(), where the worker
 * connects (flags, failover list and failback, ZMWS_WORKER_ENDPOINT), seed-style scripts.
 */
final class WorkerLifecycleTest extends ZmwsTestCase
{
    public static function setUpBeforeClass(): void
    {
        self::startBroker();
    }

    public function testSigtermStopsAfterTheCurrentJob(): void
    {
        if (!function_exists('pcntl_async_signals')) {
            $this->markTestSkipped('needs the pcntl extension');
        }
        $w = self::startWorker('PHP-TERM');
        self::waitForWorkers('PHP-TERM', 1);
        $id = self::$client->submit('PHP-TERM', ['op' => 'sleep', 'ms' => 800, 'tag' => 'term']);
        self::eventually(fn () => self::$client->status($id)['state'] === 'active', 5000, 'the job to start');
        usleep(100000);
        $w->signal(SIGTERM);
        $this->assertSame(0, $w->wait(5000), 'the worker exits 0 after its job: ' . $w->output());
        $result = json_decode(self::$client->wait($id, 5000));
        $this->assertGreaterThanOrEqual(800, $result->slept_ms, 'the job was not interrupted');
        $status = self::$client->status($id);
        $this->assertSame('complete', $status['state']);
        $this->assertSame(1, $status['attempts']);
    }

    /**
     * pcntl_fork() while a broker, a client and a worker are open: the
     * child's inherited handles throw ClosedException naming fork(), its
     * exit (destructors included) does not hang on the parent's threads, and
     * the parent's handles keep working (tests/fixtures/fork_check.php).
     */
    public function testForkedChildIsRefusedClearlyAndExitsWithoutHanging(): void
    {
        if (!function_exists('pcntl_fork')) {
            $this->markTestSkipped('needs the pcntl extension');
        }
        $lines = [];
        $cmd = 'timeout -k 5 90 ' . escapeshellarg(PHP_BINARY) . ' ' . escapeshellarg(self::fixture('fork_check.php')) . ' 2>&1';
        exec($cmd, $lines, $rc);
        $out = implode("\n", $lines);
        $this->assertSame(0, $rc, $out);
        $this->assertSame('ok', end($lines), $out);
    }

    public function testJobsDoneKeepsTheFinalCountAfterSigterm(): void
    {
        if (!function_exists('pcntl_async_signals')) {
            $this->markTestSkipped('needs the pcntl extension');
        }
        // The fixture prints "loop ended after {$worker->jobsDone()} jobs"
        // once loop() has returned FALSE (the native handle is freed by then).
        $w = self::startWorker('PHP-COUNT');
        self::waitForWorkers('PHP-COUNT', 1);
        for ($i = 0; $i < 5; $i++) {
            $this->assertSame("cba$i", self::$client->call('PHP-COUNT', ['str' => "{$i}abc"], 5000));
        }
        $w->signal(SIGTERM);
        $this->assertSame(0, $w->wait(5000), $w->output());
        $this->assertStringContainsString('loop ended after 5 jobs', $w->output());
    }

    public function testJobsDoneInProcessBeforeDuringAndAfterTheLoop(): void
    {
        $worker = new class (['t.php', '--backend-server=' . self::$broker->workerEndpoint(), '--heartbeat-ms=' . self::HEARTBEAT_MS]) extends \Worker_Base {
            public $serviceName = 'PHP-COUNT-INPROC';
            public $handleSignals = false;
            /** @var list<int> jobsDone() as seen inside work() */
            public array $seen = [];

            public function work($jobid, $param = '')
            {
                $this->seen[] = $this->jobsDone();
                return strrev($param->str);
            }
        };
        $this->assertSame(0, $worker->jobsDone(), 'before connecting');
        $worker->connect();
        $this->assertTrue(self::$client->waitForService('PHP-COUNT-INPROC', 5000));
        $ids = [];
        for ($i = 0; $i < 3; $i++) {
            $ids[] = self::$client->submit('PHP-COUNT-INPROC', ['str' => "ab$i"]);
        }
        $deadline = microtime(true) + 10;
        while ($worker->jobsDone() < 3 && microtime(true) < $deadline) {
            $this->assertTrue($worker->loop());
        }
        $this->assertSame(3, $worker->jobsDone());
        $this->assertSame([0, 1, 2], $worker->seen);
        $this->assertSame('1ba', self::$client->wait($ids[1], 5000));

        $worker->stop();
        $this->assertFalse($worker->loop());
        $this->assertTrue($worker->isStopping());
        $this->assertSame(3, $worker->jobsDone(), 'after loop() returned FALSE');
        $worker->close();
        $this->assertSame(3, $worker->jobsDone(), 'after a second close()');
        $this->assertNull($worker->currentJobId());
        $this->assertSame(0, $worker->currentAttempt());
    }

    public function testSigtermWhileWaitingStopsPromptly(): void
    {
        if (!function_exists('pcntl_async_signals')) {
            $this->markTestSkipped('needs the pcntl extension');
        }
        $w = self::startWorker('PHP-TERM-IDLE');
        self::waitForWorkers('PHP-TERM-IDLE', 1);
        $start = microtime(true);
        $w->signal(SIGTERM);
        $this->assertSame(0, $w->wait(3000), $w->output());
        $this->assertLessThan(2.0, microtime(true) - $start);
        self::eventually(fn () => !self::$client->serviceAvailable('PHP-TERM-IDLE'), 3000, 'the worker to leave the broker');
    }

    public function testIdleIsCalledAfterQuietHeartbeats(): void
    {
        $log = self::tempFile();
        $w = self::startWorker('PHP-IDLE', ["--log-file=$log"]);
        self::waitForWorkers('PHP-IDLE', 1);
        $window = 3 * self::HEARTBEAT_MS;
        self::eventually(fn () => str_contains((string) file_get_contents($log), "idle {$w->pid}"), 20 * $window, 'idle()');
        // A job, then quiet again: idle() comes back.
        $before = substr_count((string) file_get_contents($log), 'idle');
        $this->assertSame('cba', self::$client->call('PHP-IDLE', ['str' => 'abc'], 5000));
        self::eventually(fn () => substr_count((string) file_get_contents($log), 'idle') > $before, 20 * $window, 'idle() again');
        $this->assertSame(0, $w->stop());
    }

    public function testWorkerEndpointEnvironmentOverridesFlags(): void
    {
        $w = self::startWorker('PHP-ENV', ['--backend-server=192.0.2.1', '--backend-port=1'], ['ZMWS_WORKER_ENDPOINT' => self::$broker->workerEndpoint()]);
        self::waitForWorkers('PHP-ENV', 1);
        $this->assertSame('cba', self::$client->call('PHP-ENV', ['str' => 'abc'], 5000));
        $this->assertSame(0, $w->stop());
    }

    public function testFailoverListReachesTheSecondServer(): void
    {
        // The first server never answers; the worker moves on to the second.
        [$host, $port] = self::workerHostPort();
        $w = self::startWorker('PHP-FAILOVER', ["--backend-servers=127.0.0.1:1,$host"]);
        self::waitForWorkers('PHP-FAILOVER', 1, 20000);
        $this->assertSame('ba', self::$client->call('PHP-FAILOVER', ['str' => 'ab'], 5000));
        $this->assertSame(0, $w->stop());
    }

    public function testWorkerMovesBackToTheFirstServerWhenItReturns(): void
    {
        // The first server of the list is down at the start: the worker
        // serves the second (this class's broker) until the first comes up.
        $firstPort = self::unusedPort();
        [$host, $port] = self::workerHostPort();
        $w = self::startWorker('PHP-FAILBACK', ["--backend-servers=127.0.0.1:$firstPort,$host"]);
        self::waitForWorkers('PHP-FAILBACK', 1, 20000);
        $this->assertSame('ba', self::$client->call('PHP-FAILBACK', ['str' => 'ab'], 5000));

        $first = new \Zmws\Broker([
            'client_endpoint' => 'tcp://127.0.0.1:*',
            'worker_endpoint' => "tcp://127.0.0.1:$firstPort",
            'news_endpoint' => null,
            'heartbeat_ms' => self::HEARTBEAT_MS,
            'liveness' => self::LIVENESS,
        ]);
        $first->start();
        try {
            $onFirst = new \Zmws\Client($first->clientEndpoint(), 2000);
            self::eventually(
                static fn (): bool => in_array('PHP-FAILBACK', array_column($onFirst->workers(), 'service'), true),
                20000,
                'the worker moved back to the first server'
            );
            $this->assertSame('dc', $onFirst->call('PHP-FAILBACK', ['str' => 'cd'], 5000));
            $this->assertSame(0, $w->stop());
        } finally {
            $first->stop();
        }
    }

    public function testSeedStyleScriptsRunUnchanged(): void
    {
        // examples/php/reverse.php as a user would start it (flags only, no env).
        [$host, $port] = self::workerHostPort();
        $script = dirname(__DIR__, 3) . '/examples/php/reverse.php';
        $w = new WorkerProcess($script, ["--backend-port=$port", "--backend-server=$host", '--heartbeat-ms=' . self::HEARTBEAT_MS], ['ZMWS_WORKER_ENDPOINT' => null, 'ZMWS_HEARTBEAT_MS' => null]);
        self::$workers[] = $w;
        self::waitForWorkers('STR-REV', 1);
        $this->assertSame('dlrow ,olleH', self::$client->call('STR-REV', ['str' => 'Hello, world'], 5000));
        // UTF-8 by characters, as the Python STR-REV worker answers (no mbstring needed).
        $this->assertSame('olléh', self::$client->call('STR-REV', ['str' => 'héllo'], 5000));
        $this->assertSame('🙂 ab 日本', self::$client->call('STR-REV', ['str' => '本日 ba 🙂'], 5000));
        $this->assertSame(0, $w->stop());
    }

    public function testWorkerWithoutServiceNameFails(): void
    {
        $w = self::startWorker('', [], ['ZMWS_SERVICE' => null]);
        $this->assertNotSame(0, $w->wait(10000));
        $this->assertStringContainsString('no service name', $w->output());
    }

    public function testWorkersPrintedNoPhpDiagnostics(): void
    {
        foreach (self::$workers as $w) {
            if (str_contains($w->output(), 'no service name')) {
                continue; // the deliberate failure above
            }
            $this->assertSame([], array_values($w->phpDiagnostics()), $w->output());
        }
    }
}
