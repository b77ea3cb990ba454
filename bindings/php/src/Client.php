<?php

declare(strict_types=1);

namespace Zmws;

use FFI;
use FFI\CData;

/**
 * A connection to a zmws broker for submitting jobs and asking about them.
 *
 *     (new Zmws\Client())->submit('TASK', ['arg' => 1]);   // instead of exec('./task > /dev/null 2>&1 &')
 *     $rev = (new Zmws\Client())->call('STR-REV', ['str' => 'Hello'], 5000);
 *
 * Parameters: a string is sent as is, NULL as an empty payload, anything else
 * (arrays, objects, numbers) JSON-encoded — a worker receives a JSON object
 * as a stdClass. Results are the bytes the worker answered, as a string.
 * Every failure is a Zmws\Exception subclass carrying the library's message.
 *
 * One client owns one native handle (freed with the object). Calls on it are
 * serialised by the library; it is not meant to be shared across processes
 * (create it after fork()).
 */
class Client
{
    /** The default broker client endpoint (as the broker's default). */
    public const DEFAULT_ENDPOINT = 'tcp://127.0.0.1:5555';

    /** Most jobs one submitBatch() may carry (ZMWS_MAX_SUBMIT_BATCH in zmws.h). */
    public const MAX_SUBMIT_BATCH = 10000;

    /** Bytes per job id in the native submit_batch buffer: 32 hex characters and a NUL (ZMWS_JOB_ID_SIZE). */
    private const JOB_ID_SIZE = 33;

    private Native $native;
    private ?CData $handle;
    private string $endpoints;

    /**
     * @param string|null $endpoints    one endpoint or a comma-separated list for failover
     *                                  (default: env ZMWS_BROKER, else tcp://127.0.0.1:5555)
     * @param int|null    $requestTimeoutMs how long administrative requests wait for a broker
     *                                  before trying the next one (library default 5000)
     */
    public function __construct(?string $endpoints = null, ?int $requestTimeoutMs = null)
    {
        if ($endpoints === null) {
            $env = getenv('ZMWS_BROKER');
            $endpoints = is_string($env) && $env !== '' ? $env : self::DEFAULT_ENDPOINT;
        }
        $this->endpoints = Native::cString($endpoints, '$endpoints');
        $this->native = Native::get();
        $out = $this->native->ffi->new('zmws_client *');
        $this->native->check($this->native->ffi->zmws_client_new($endpoints, FFI::addr($out)), 'connecting a client');
        $this->handle = $out;
        if ($requestTimeoutMs !== null) {
            $this->setRequestTimeout($requestTimeoutMs);
        }
    }

    public function __destruct()
    {
        $this->close();
    }

    /** Releases the native client now (the object is unusable afterwards). */
    public function close(): void
    {
        if ($this->handle !== null) {
            $this->native->ffi->zmws_client_free($this->handle);
            $this->handle = null;
        }
    }

    /** Sets how long administrative requests wait for a broker, in milliseconds. */
    public function setRequestTimeout(int $timeoutMs): void
    {
        $this->native->check($this->native->ffi->zmws_client_set_request_timeout($this->h(), self::ms($timeoutMs)));
    }

    /** The endpoints given to the constructor. */
    public function endpoints(): string
    {
        return $this->endpoints;
    }

    /** The broker endpoint in use now. */
    public function endpoint(): string
    {
        $out = $this->native->ffi->new('char *');
        $this->native->check($this->native->ffi->zmws_client_endpoint($this->h(), FFI::addr($out)));
        return $this->native->takeString($out);
    }

    /**
     * Submits a job without waiting for it (fire and forget) and returns its
     * id (32 hex characters).
     *
     * @throws NoSuchServiceException when no worker ever offered $service
     * @throws QueueFullException|TooLargeException|TimeoutException
     */
    public function submit(string $service, mixed $param = null): string
    {
        $payload = Native::encodeParam($param);
        $buf = $this->native->bytes($payload);
        $out = $this->native->ffi->new('char *');
        $this->native->check($this->native->ffi->zmws_client_submit($this->h(), Native::cString($service, '$service'), $buf, strlen($payload), FFI::addr($out)));
        return $this->native->takeString($out);
    }

    /**
     * Like submit() with an idempotency key (1 to 255 bytes): while a job
     * submitted with the same key is queued, running or within its result
     * TTL, its id is returned instead of a new job being created.
     */
    public function submitUnique(string $service, mixed $param, string $key): string
    {
        $payload = Native::encodeParam($param);
        $buf = $this->native->bytes($payload);
        $out = $this->native->ffi->new('char *');
        $this->native->check($this->native->ffi->zmws_client_submit_unique(
            $this->h(),
            Native::cString($service, '$service'),
            $buf,
            strlen($payload),
            Native::cString($key, '$key'),
            FFI::addr($out)
        ));
        return $this->native->takeString($out);
    }

    /**
     * Submits one job per element of $params in a single request, without
     * waiting for them (fire and forget), and returns their ids (32 hex
     * characters each) as a list in the order of $params (its keys are not
     * kept). The broker accepts all of them or none. At most
     * self::MAX_SUBMIT_BATCH jobs; an empty array returns [] without
     * contacting the broker.
     *
     * @param array<array-key, mixed> $params
     * @return list<string>
     * @throws NoSuchServiceException when no worker ever offered $service
     * @throws QueueFullException|TooLargeException|TimeoutException
     * @throws InvalidArgumentException for more than self::MAX_SUBMIT_BATCH jobs (checked by the library)
     */
    public function submitBatch(string $service, array $params): array
    {
        Native::cString($service, '$service');
        $count = count($params);
        if ($count === 0) {
            return [];
        }
        $native = $this->native;
        $ffi = $native->ffi;
        $ptrs = $ffi->new("const uint8_t *[$count]");
        $lens = $ffi->new("size_t[$count]");
        $bufs = []; // keeps the payload copies alive during the call
        $i = 0;
        foreach ($params as $param) {
            $payload = Native::encodeParam($param);
            $n = strlen($payload);
            $lens[$i] = $n;
            if ($n > 0) {
                $bufs[$i] = $native->bytes($payload);
                $ptrs[$i] = $ffi->cast('const uint8_t *', $bufs[$i]);
            }
            $i++;
        }
        $size = $count * self::JOB_ID_SIZE;
        $out = $ffi->new("char[$size]");
        $native->check($ffi->zmws_client_submit_batch($this->h(), $service, $ptrs, $lens, $count, $out, $size));
        unset($bufs);
        $text = FFI::string($out, $size);
        $ids = [];
        for ($i = 0; $i < $count; $i++) {
            $ids[] = substr($text, $i * self::JOB_ID_SIZE, self::JOB_ID_SIZE - 1);
        }
        return $ids;
    }

    /**
     * Runs a job and waits up to $timeoutMs for its result.
     *
     * @throws JobFailedException  with the worker's reason when the job failed
     * @throws TimeoutException    when no result came in time (the job may still run)
     * @throws NoSuchServiceException|QueueFullException|TooLargeException
     */
    public function call(string $service, mixed $param = null, int $timeoutMs = 30000): string
    {
        Native::cString($service, '$service');
        $payload = Native::encodeParam($param);
        $buf = $this->native->bytes($payload);
        $ffi = $this->native->ffi;
        $out = $ffi->new('uint8_t *');
        $len = $ffi->new('size_t');
        $this->native->check($ffi->zmws_client_call(
            $this->h(),
            $service,
            $buf,
            strlen($payload),
            self::ms($timeoutMs),
            null,
            null,
            FFI::addr($out),
            FFI::addr($len)
        ));
        return $this->native->takeBuffer($out, (int) $len->cdata);
    }

    /**
     * The status of a job: job_id, service, state ("queued", "active",
     * "complete", "failed", "cancelled"), attempts, max_attempts, worker,
     * created_ms, started_ms, finished_ms, failure, payload_bytes, result_bytes.
     *
     * @return array<string, mixed>
     * @throws NotFoundException for an unknown or expired id
     */
    public function status(string $jobId): array
    {
        $out = $this->native->ffi->new('char *');
        $this->native->check($this->native->ffi->zmws_client_status($this->h(), Native::cString($jobId, '$jobId'), FFI::addr($out)));
        return (array) Native::decodeJson($this->native->takeString($out));
    }

    /**
     * The result of a finished job, or NULL while it is queued or running.
     *
     * @throws JobFailedException with the reason when it failed or was cancelled
     * @throws NotFoundException  for an unknown or expired id
     */
    public function result(string $jobId): ?string
    {
        $ffi = $this->native->ffi;
        $out = $ffi->new('uint8_t *');
        $len = $ffi->new('size_t');
        $rc = $ffi->zmws_client_result($this->h(), Native::cString($jobId, '$jobId'), FFI::addr($out), FFI::addr($len));
        if ($rc === Native::PENDING) {
            return null;
        }
        $this->native->check($rc);
        return $this->native->takeBuffer($out, (int) $len->cdata);
    }

    /**
     * Waits up to $timeoutMs for a submitted job's result, polling every
     * $pollMs.
     *
     * @throws TimeoutException when it has not finished in time
     * @throws JobFailedException|NotFoundException
     */
    public function wait(string $jobId, int $timeoutMs = 30000, int $pollMs = 20): string
    {
        $deadline = microtime(true) + $timeoutMs / 1000;
        while (true) {
            $result = $this->result($jobId);
            if ($result !== null) {
                return $result;
            }
            if (microtime(true) >= $deadline) {
                throw new TimeoutException("job $jobId did not finish within $timeoutMs ms", Native::TIMEOUT);
            }
            usleep(max(1, $pollMs) * 1000);
        }
    }

    /**
     * Cancels a queued or running job (cancelling it twice is fine).
     *
     * @throws InvalidArgumentException when it has already finished
     * @throws NotFoundException         for an unknown id
     */
    public function cancel(string $jobId): void
    {
        $this->native->check($this->native->ffi->zmws_client_cancel($this->h(), Native::cString($jobId, '$jobId')));
    }

    /**
     * Runs one job per element of $params on $service, many at once, and
     * returns their results in the same order with the same keys (map-reduce).
     *
     * @param array<array-key, mixed> $params
     * @return array<array-key, string>
     * @throws BatchException when some jobs failed or timed out (it holds the
     *                        results of the others and one exception per failure)
     */
    public function batch(string $service, array $params, int $timeoutMs = 60000): array
    {
        Native::cString($service, '$service');
        $keys = array_keys($params);
        $count = count($keys);
        if ($count === 0) {
            return [];
        }
        $native = $this->native;
        $ffi = $native->ffi;
        $ptrs = $ffi->new("const uint8_t *[$count]");
        $lens = $ffi->new("size_t[$count]");
        $bufs = []; // keeps the payload copies alive during the call
        $i = 0;
        foreach ($params as $param) {
            $payload = Native::encodeParam($param);
            $n = strlen($payload);
            $lens[$i] = $n;
            if ($n > 0) {
                $bufs[$i] = $native->bytes($payload);
                $ptrs[$i] = $ffi->cast('const uint8_t *', $bufs[$i]);
            }
            $i++;
        }
        $out = $ffi->new('zmws_batch *');
        $native->check($ffi->zmws_client_batch($this->h(), $service, $ptrs, $lens, $count, self::ms($timeoutMs), FFI::addr($out)));
        $batch = $out;
        unset($bufs);
        $results = [];
        $errors = [];
        try {
            $data = $ffi->new('const uint8_t *');
            $len = $ffi->new('size_t');
            foreach ($keys as $i => $key) {
                $rc = $ffi->zmws_batch_result($batch, $i, FFI::addr($data), FFI::addr($len));
                if ($rc === Native::OK) {
                    $n = (int) $len->cdata;
                    $results[$key] = $n === 0 ? '' : FFI::string($data, $n);
                } else {
                    $errors[$key] = $native->error($rc, "job $key");
                }
            }
        } finally {
            $ffi->zmws_batch_free($batch);
        }
        if ($errors !== []) {
            $first = reset($errors);
            throw new BatchException(
                count($errors) . " of $count jobs failed; first: " . $first->getMessage(),
                $results,
                $errors
            );
        }
        return $results;
    }

    /**
     * The live workers: worker, service, state, capacity, active_jobs,
     * jobs_done, protocol, connected_ms, last_seen_ms.
     *
     * @return list<array<string, mixed>>
     */
    public function workers(): array
    {
        $out = $this->native->ffi->new('char *');
        $this->native->check($this->native->ffi->zmws_client_workers($this->h(), FFI::addr($out)));
        return (array) Native::decodeJson($this->native->takeString($out));
    }

    /**
     * A job listing (zmws.jobs), at most 1,000 jobs: "queued" (the default;
     * the seed's SERVER-JOBS), "active" (SERVER-ACTIVE, jobs being worked on)
     * or "history" (SERVER-HIST: the most recently finished jobs, newest
     * first; the broker keeps history_len of them, 100 by default).
     *
     * @return list<array<string, mixed>>
     */
    public function jobs(string $kind = 'queued'): array
    {
        $out = $this->native->ffi->new('char *');
        $this->native->check($this->native->ffi->zmws_client_jobs($this->h(), Native::cString($kind, '$kind'), FFI::addr($out)));
        return (array) Native::decodeJson($this->native->takeString($out));
    }

    /**
     * Every service ever offered, with its queue depth and counters.
     *
     * @return list<array<string, mixed>>
     */
    public function services(): array
    {
        $out = $this->native->ffi->new('char *');
        $this->native->check($this->native->ffi->zmws_client_services($this->h(), FFI::addr($out)));
        return (array) Native::decodeJson($this->native->takeString($out));
    }

    /** Whether at least one live worker offers $service now. */
    public function serviceAvailable(string $service): bool
    {
        $out = $this->native->ffi->new('bool');
        $this->native->check($this->native->ffi->zmws_client_service_available($this->h(), Native::cString($service, '$service'), FFI::addr($out)));
        return (bool) $out->cdata;
    }

    /**
     * Waits up to $timeoutMs until a live worker offers $service.
     *
     * @return bool whether one did
     */
    public function waitForService(string $service, int $timeoutMs = 10000): bool
    {
        $deadline = microtime(true) + $timeoutMs / 1000;
        while (!$this->serviceAvailable($service)) {
            if (microtime(true) >= $deadline) {
                return false;
            }
            usleep(20000);
        }
        return true;
    }

    private function h(): CData
    {
        if ($this->handle === null) {
            throw new ClosedException('the client is closed', Native::CLOSED);
        }
        return $this->handle;
    }

    private static function ms(int $ms): int
    {
        if ($ms < 0) {
            throw new InvalidArgumentException("a timeout cannot be negative ($ms ms)", Native::INVALID_ARGUMENT);
        }
        return $ms;
    }
}
