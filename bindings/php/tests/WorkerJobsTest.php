<?php

declare(strict_types=1);

namespace Zmws\Tests;

use Zmws\BatchException;
use Zmws\InvalidArgumentException;
use Zmws\JobFailedException;
use Zmws\NoSuchServiceException;
use Zmws\NotFoundException;
use Zmws\TimeoutException;

/**
 * A seed-style Worker_Base subclass (tests/fixtures/test_worker.php) in two
 * child processes, driven by Zmws\Client through a broker embedded in the
 * test process.
 */
final class WorkerJobsTest extends ZmwsTestCase
{
    private const SERVICE = 'PHP-TEST';
    private static string $log = '';

    public static function setUpBeforeClass(): void
    {
        self::startBroker();
        self::$log = self::tempFile('zmws-php-jobs-');
        self::startWorker(self::SERVICE, ['--log-file=' . self::$log]);
        self::startWorker(self::SERVICE, ['--log-file', self::$log]);
        self::waitForWorkers(self::SERVICE, 2);
    }

    public function testSyncCallReadsParamStr(): void
    {
        $this->assertSame('dlrow ,olleH', self::$client->call(self::SERVICE, ['str' => 'Hello, world'], 10000));
    }

    /**
     * The seed's workers ran tasks with exec(): a program started so while
     * this process holds an embedded broker and a client must inherit none
     * of libzmq's sockets, eventfds or epoll instances (libzmws's libzmq is
     * compiled with its close-on-exec defines, .cargo/config.toml).
     */
    public function testProgramsStartedWithExecInheritNoLibzmqDescriptors(): void
    {
        $this->assertSame('cba', self::$client->call(self::SERVICE, ['str' => 'abc'], 10000));
        $lines = [];
        exec('for f in /proc/$$/fd/*; do printf "%s %s\\n" "$f" "$(readlink "$f")"; done', $lines, $rc);
        $this->assertSame(0, $rc);
        $this->assertGreaterThanOrEqual(2, count($lines), 'no fd listing from the child');
        $inherited = array_values(array_filter(
            $lines,
            static fn (string $l): bool => str_contains($l, 'socket:') || str_contains($l, 'anon_inode:')
        ));
        $this->assertSame([], $inherited, "the child inherited libzmq descriptors:\n" . implode("\n", $lines));
    }

    public function testAsyncSubmitThenResult(): void
    {
        $id = self::$client->submit(self::SERVICE, ['str' => 'abc']);
        $this->assertMatchesRegularExpression('/^[0-9a-f]{32}$/', $id);
        $this->assertSame('cba', self::$client->wait($id, 10000));
        $this->assertSame('cba', self::$client->result($id));
        $status = self::$client->status($id);
        $this->assertSame($id, $status['job_id']);
        $this->assertSame(self::SERVICE, $status['service']);
        $this->assertSame('complete', $status['state']);
        $this->assertSame(1, $status['attempts']);
    }

    public function testSubmitUniqueIsIdempotent(): void
    {
        $key = 'order-' . bin2hex(random_bytes(6));
        $id = self::$client->submitUnique(self::SERVICE, ['str' => 'once'], $key);
        $this->assertSame($id, self::$client->submitUnique(self::SERVICE, ['str' => 'twice'], $key));
        $this->assertSame('ecno', self::$client->wait($id, 10000));
        $this->assertSame($id, self::$client->submitUnique(self::SERVICE, ['str' => 'thrice'], $key), 'within the result TTL');
        $this->assertNotSame($id, self::$client->submitUnique(self::SERVICE, ['str' => 'other'], $key . '-2'));
    }

    public function testSubmitBatchReturnsIdsInInputOrder(): void
    {
        $params = [['str' => 'one'], 'raw', null, ['str' => 'four'], ['op' => 'number']];
        $ids = self::$client->submitBatch(self::SERVICE, $params);
        $this->assertCount(5, $ids);
        $this->assertTrue(array_is_list($ids));
        foreach ($ids as $id) {
            $this->assertMatchesRegularExpression('/^[0-9a-f]{32}$/', $id);
        }
        $this->assertCount(5, array_unique($ids));
        $expected = ['eno', 'string:raw', 'string:', 'ruof', '42'];
        foreach ($ids as $i => $id) {
            $this->assertSame($expected[$i], self::$client->wait($id, 10000), "job $i");
            $this->assertSame(self::SERVICE, self::$client->status($id)['service']);
        }

        // Keys are not kept: the ids come back as a list in iteration order.
        $keyed = self::$client->submitBatch(self::SERVICE, ['b' => ['str' => 'xy'], 7 => ['str' => 'abc']]);
        $this->assertSame([0, 1], array_keys($keyed));
        $this->assertSame('yx', self::$client->wait($keyed[0], 10000));
        $this->assertSame('cba', self::$client->wait($keyed[1], 10000));
        $this->assertSame([], self::$client->submitBatch(self::SERVICE, []));
    }

    public function testSubmitBatchOfTheMaximumSize(): void
    {
        $params = [];
        for ($i = 0; $i < \Zmws\Client::MAX_SUBMIT_BATCH; $i++) {
            $params[] = "p$i";
        }
        $ids = self::$client->submitBatch(self::SERVICE, $params);
        $this->assertCount(\Zmws\Client::MAX_SUBMIT_BATCH, $ids);
        $this->assertCount(\Zmws\Client::MAX_SUBMIT_BATCH, array_unique($ids));
        $this->assertSame('string:p9999', self::$client->wait($ids[9999], 60000));
        $this->assertSame('string:p1234', self::$client->wait($ids[1234], 60000));
        try {
            self::$client->submitBatch(self::SERVICE, array_fill(0, \Zmws\Client::MAX_SUBMIT_BATCH + 1, 'x'));
            $this->fail('no exception');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString('at most 10000', $e->getMessage());
        }
    }

    public function testSubmitBatchErrors(): void
    {
        $this->assertSame([], self::$client->submitBatch('NO-SUCH-PHP-SERVICE', []), 'nothing is sent');
        try {
            self::$client->submitBatch('NO-SUCH-PHP-SERVICE', ['a', ['str' => 'b']]);
            $this->fail('no exception');
        } catch (NoSuchServiceException $e) {
            $this->assertStringContainsString('NO-SUCH-PHP-SERVICE', $e->getMessage());
        }
        try {
            self::$client->submitBatch('', ['a']);
            $this->fail('no exception');
        } catch (InvalidArgumentException $e) {
            $this->assertSame(\Zmws\Native::INVALID_ARGUMENT, $e->getCode());
        }
        try {
            self::$client->submitBatch(self::SERVICE, ['ok', NAN]);
            $this->fail('no exception');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString('JSON', $e->getMessage());
        }
        $closed = new \Zmws\Client(self::$broker->clientEndpoint());
        $closed->close();
        $this->expectException(\Zmws\ClosedException::class);
        $closed->submitBatch(self::SERVICE, ['x']);
    }

    public function testNonObjectPayloadsArriveAsStrings(): void
    {
        $this->assertSame('string:plain text', self::$client->call(self::SERVICE, 'plain text', 10000));
        $this->assertSame('string:[1,2,3]', self::$client->call(self::SERVICE, [1, 2, 3], 10000));
        $this->assertSame('string:', self::$client->call(self::SERVICE, null, 10000));
        $this->assertSame('string:17', self::$client->call(self::SERVICE, 17, 10000));
    }

    public function testReturnValues(): void
    {
        $this->assertSame('', self::$client->call(self::SERVICE, ['op' => 'true'], 10000));
        $this->assertSame('{"op":"echo","n":[1,2],"s":"é"}', self::$client->call(self::SERVICE, ['op' => 'echo', 'n' => [1, 2], 's' => 'é'], 10000));
        $this->assertSame('null', self::$client->call(self::SERVICE, ['op' => 'null'], 10000));
        $this->assertSame('42', self::$client->call(self::SERVICE, ['op' => 'number'], 10000));
        $this->assertSame('done', self::$client->call(self::SERVICE, ['op' => 'partial'], 10000));
    }

    public function testReturningFalseFailsTheJob(): void
    {
        try {
            self::$client->call(self::SERVICE, ['op' => 'fail'], 10000);
            $this->fail('no exception');
        } catch (JobFailedException $e) {
            $this->assertStringContainsString('work() returned FALSE', $e->getMessage());
            $this->assertSame(\Zmws\Native::JOB_FAILED, $e->getCode());
        }
        $id = self::$client->submit(self::SERVICE, ['op' => 'fail']);
        self::eventually(fn () => self::$client->status($id)['state'] === 'failed', 10000, 'the job to fail');
        $this->assertSame(1, self::$client->status($id)['attempts'], 'a FALSE failure is not retried');
        $this->expectException(JobFailedException::class);
        self::$client->result($id);
    }

    public function testExceptionFailsTheJobWithItsMessage(): void
    {
        $this->expectException(JobFailedException::class);
        $this->expectExceptionMessage('kaboom 42');
        self::$client->call(self::SERVICE, ['op' => 'throw', 'message' => 'kaboom 42'], 10000);
    }

    public function testRetryJobExceptionRetries(): void
    {
        $id = self::$client->submit(self::SERVICE, ['op' => 'retry']);
        $this->assertSame('attempt 2', self::$client->wait($id, 10000));
        $this->assertSame(2, self::$client->status($id)['attempts']);
    }

    public function testFailureAfterRetriesSaysJobFailedOnce(): void
    {
        try {
            self::$client->call(self::SERVICE, ['op' => 'retry-always'], 10000);
            $this->fail('no exception');
        } catch (JobFailedException $e) {
            // The broker's default: 3 attempts.
            $this->assertSame('job failed after 3 attempt(s): worker failed it: try again (attempt 3)', $e->getMessage());
        }
        try {
            self::$client->call(self::SERVICE, ['op' => 'throw', 'message' => 'once'], 10000);
            $this->fail('no exception');
        } catch (JobFailedException $e) {
            $this->assertSame('job failed: once', $e->getMessage(), 'a plain failure keeps its prefix');
        }
    }

    public function testStringsWithNulOrInvalidUtf8AreRefusedNamingTheArgument(): void
    {
        $cases = [
            '$service' => [
                fn () => self::$client->submit(self::SERVICE . "\0MULTI", 'x'),
                fn () => self::$client->call(self::SERVICE . "\0MULTI", 'x', 1000),
                fn () => self::$client->submitUnique(self::SERVICE . "\0", 'x', 'k'),
                fn () => self::$client->submitBatch(self::SERVICE . "\0", ['x']),
                fn () => self::$client->batch(self::SERVICE . "\0", ['x']),
                fn () => self::$client->serviceAvailable(self::SERVICE . "\xff"),
            ],
            '$key' => [fn () => self::$client->submitUnique(self::SERVICE, 'x', "k\0ey")],
            '$jobId' => [
                fn () => self::$client->status(str_repeat('0', 32) . "\0"),
                fn () => self::$client->result(str_repeat('0', 32) . "\0"),
                fn () => self::$client->cancel("\xff"),
            ],
            '$kind' => [fn () => self::$client->jobs("\xff"), fn () => self::$client->jobs("queued\0x")],
            '$endpoints' => [fn () => new \Zmws\Client(self::$broker->clientEndpoint() . "\0x")],
        ];
        foreach ($cases as $arg => $calls) {
            foreach ($calls as $i => $call) {
                try {
                    $call();
                    $this->fail("$arg #$i: no exception");
                } catch (InvalidArgumentException $e) {
                    $this->assertStringStartsWith("$arg ", $e->getMessage(), "$arg #$i");
                    $this->assertMatchesRegularExpression('/NUL bytes|not valid UTF-8/', $e->getMessage());
                    $this->assertStringNotContainsString('which', $e->getMessage());
                }
            }
        }
    }

    public function testBatchKeepsInputOrder(): void
    {
        // Later items are quicker, so they finish first on the two workers.
        $params = [];
        for ($i = 0; $i < 10; $i++) {
            $params[] = ['op' => 'sleep', 'ms' => (10 - $i) * 15, 'tag' => "item$i"];
        }
        $results = self::$client->batch(self::SERVICE, $params, 20000);
        $this->assertSame(array_keys($params), array_keys($results));
        foreach ($results as $i => $json) {
            $this->assertSame("item$i", json_decode($json)->tag);
        }
        $pids = array_unique(array_map(static fn (string $j): int => json_decode($j)->pid, $results));
        $this->assertCount(2, $pids, 'both workers took part');

        $keyed = self::$client->batch(self::SERVICE, ['b' => ['str' => 'xy'], 'a' => 'raw', 7 => ['str' => 'abc']]);
        $this->assertSame(['b' => 'yx', 'a' => 'string:raw', 7 => 'cba'], $keyed);
        $this->assertSame([], self::$client->batch(self::SERVICE, []));
    }

    public function testBatchWithFailuresThrowsWithPartialResults(): void
    {
        try {
            self::$client->batch(self::SERVICE, [['str' => 'ok'], ['op' => 'fail'], ['op' => 'throw', 'message' => 'bad item']]);
            $this->fail('no exception');
        } catch (BatchException $e) {
            $this->assertSame([0 => 'ko'], $e->getResults());
            $this->assertSame([1, 2], array_keys($e->getErrors()));
            $this->assertInstanceOf(JobFailedException::class, $e->getErrors()[2]);
            $this->assertStringContainsString('bad item', $e->getErrors()[2]->getMessage());
        }
    }

    public function testJobLongerThanTheLivenessWindowRunsExactlyOnce(): void
    {
        // 1.5 s of PHP work against a 300 ms liveness window (100 ms x 3):
        // the native I/O thread must keep heartbeating meanwhile.
        $window = self::HEARTBEAT_MS * self::LIVENESS;
        $id = self::$client->submit(self::SERVICE, ['op' => 'sleep', 'ms' => 5 * $window, 'tag' => 'long']);
        $result = json_decode(self::$client->wait($id, 15000));
        $this->assertSame('long', $result->tag);
        $this->assertGreaterThanOrEqual(5 * $window, $result->slept_ms);
        $status = self::$client->status($id);
        $this->assertSame('complete', $status['state']);
        $this->assertSame(1, $status['attempts']);
        usleep(2 * $window * 1000); // a duplicate run would show up in the log by now
        $runs = preg_grep("/^job $id /", file(self::$log, FILE_IGNORE_NEW_LINES) ?: []);
        $this->assertCount(1, $runs, 'work() ran once: ' . implode(' | ', $runs));
        self::waitForWorkers(self::SERVICE, 2, 2000); // nobody was purged
    }

    public function testCallTimeout(): void
    {
        $start = microtime(true);
        try {
            self::$client->call(self::SERVICE, ['op' => 'sleep', 'ms' => 1000], 200);
            $this->fail('no exception');
        } catch (TimeoutException $e) {
            $this->assertLessThan(0.9, microtime(true) - $start);
            $this->assertSame('ZMWS_TIMEOUT', $e->getCodeName());
        }
        usleep(1000000); // let the worker finish that job
    }

    public function testUnknownServiceAndJob(): void
    {
        try {
            self::$client->submit('NO-SUCH-PHP-SERVICE', 'x');
            $this->fail('no exception');
        } catch (NoSuchServiceException $e) {
            $this->assertStringContainsString('NO-SUCH-PHP-SERVICE', $e->getMessage());
        }
        $this->expectException(NotFoundException::class);
        self::$client->status(str_repeat('0', 32));
    }

    public function testListings(): void
    {
        $workers = array_values(array_filter(self::$client->workers(), fn (array $w) => $w['service'] === self::SERVICE));
        $this->assertCount(2, $workers);
        $id = self::$client->submit(self::SERVICE, ['str' => 'listed']);
        self::$client->wait($id, 10000);
        self::eventually(fn () => in_array($id, array_column(self::$client->jobs('history'), 'job_id'), true), 5000, 'history');
        $this->assertIsArray(self::$client->jobs());
        $this->assertContains(self::SERVICE, array_column(self::$client->services(), 'service'));
        $this->assertTrue(self::$client->serviceAvailable(self::SERVICE));
        $this->assertFalse(self::$client->serviceAvailable('NO-SUCH-PHP-SERVICE'));
    }

    public function testCancelAQueuedJob(): void
    {
        // A service whose only worker has gone: jobs wait in the queue.
        $w = self::startWorker('PHP-QUEUE');
        self::waitForWorkers('PHP-QUEUE', 1);
        $this->assertSame(0, $w->stop());
        self::eventually(fn () => !self::$client->serviceAvailable('PHP-QUEUE'), 5000, 'the worker to leave');
        $id = self::$client->submit('PHP-QUEUE', ['str' => 'never']);
        $this->assertContains($id, array_column(self::$client->jobs('queued'), 'job_id'));
        $this->assertNull(self::$client->result($id), 'pending');
        self::$client->cancel($id);
        $this->assertSame('cancelled', self::$client->status($id)['state']);
        self::$client->cancel($id); // twice is fine
        $this->expectException(JobFailedException::class);
        self::$client->result($id);
    }

    public function testCancelAFinishedJobIsRefused(): void
    {
        $id = self::$client->submit(self::SERVICE, ['str' => 'x']);
        self::$client->wait($id, 10000);
        $this->expectException(InvalidArgumentException::class);
        self::$client->cancel($id);
    }

    public function testWorkersPrintedNoPhpDiagnostics(): void
    {
        foreach (self::$workers as $w) {
            $this->assertSame([], array_values($w->phpDiagnostics()), $w->output());
        }
        // Exceptions from work() are reported on stderr, with the job id.
        $this->assertStringContainsString('failed: RuntimeException: kaboom 42', implode('', array_map(fn ($w) => $w->output(), self::$workers)));
    }
}
