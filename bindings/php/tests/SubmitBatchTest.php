<?php

declare(strict_types=1);

namespace Zmws\Tests;

use Zmws\Client;
use Zmws\QueueFullException;
use Zmws\TooLargeException;

/**
 * Client::submitBatch() against a broker with small limits (3 queued jobs,
 * 8-byte payloads) and a service whose only worker has left: a batch is
 * queued whole or not at all.
 */
final class SubmitBatchTest extends ZmwsTestCase
{
    private const SERVICE = 'PHP-LIMITED';

    public static function setUpBeforeClass(): void
    {
        self::startBroker(['max_queued' => 3, 'max_payload' => 8]);
        $w = self::startWorker(self::SERVICE);
        self::waitForWorkers(self::SERVICE, 1);
        if ($w->stop() !== 0) {
            throw new \RuntimeException('the worker did not stop cleanly: ' . $w->output());
        }
        self::eventually(fn () => !self::$client->serviceAvailable(self::SERVICE), 5000, 'the worker to leave');
    }

    public function testABatchIsQueuedWholeOrNotAtAll(): void
    {
        try {
            self::$client->submitBatch(self::SERVICE, ['a', 'b', 'c', 'd']);
            $this->fail('no exception');
        } catch (QueueFullException $e) {
            $this->assertSame('ZMWS_QUEUE_FULL', $e->getCodeName());
        }
        $this->assertSame([], self::$client->jobs('queued'));

        try {
            self::$client->submitBatch(self::SERVICE, ['a', '123456789']);
            $this->fail('no exception');
        } catch (TooLargeException $e) {
            $this->assertSame('ZMWS_TOO_LARGE', $e->getCodeName());
        }
        $this->assertSame([], self::$client->jobs('queued'));

        $ids = self::$client->submitBatch(self::SERVICE, ['a', 'b', 'c']);
        $this->assertSame($ids, array_column(self::$client->jobs('queued'), 'job_id'));
        $this->expectException(QueueFullException::class);
        self::$client->submitBatch(self::SERVICE, ['d']);
    }

    public function testConstantsMirrorTheHeader(): void
    {
        $header = (string) file_get_contents(dirname(__DIR__, 3) . '/include/zmws.h');
        $this->assertSame(1, preg_match('/#define ZMWS_MAX_SUBMIT_BATCH (\d+)/', $header, $m));
        $this->assertSame((int) $m[1], Client::MAX_SUBMIT_BATCH);
        $this->assertSame(1, preg_match('/#define ZMWS_JOB_ID_SIZE (\d+)/', $header, $m));
        $this->assertSame((int) $m[1], (new \ReflectionClassConstant(Client::class, 'JOB_ID_SIZE'))->getValue());
    }
}
