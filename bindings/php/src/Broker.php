<?php

declare(strict_types=1);

namespace Zmws;

use FFI;
use FFI\CData;

/**
 * A broker embedded in this PHP process: it runs on a native background
 * thread between start() and stop() (or the object's end), so the PHP code
 * keeps running meanwhile.
 *
 *     $broker = new Zmws\Broker([
 *         'client_endpoint' => 'tcp://127.0.0.1:*',   // any free port
 *         'worker_endpoint' => 'tcp://127.0.0.1:*',
 *         'news_endpoint'   => null,                  // no job events
 *     ]);
 *     $broker->start();
 *     $client = new Zmws\Client($broker->clientEndpoint());
 *
 * Options (all optional; the library's defaults are those of `zmws broker`:
 * clients on tcp://127.0.0.1:5555, workers on :5556, events on :5557,
 * heartbeat 1000 ms x 3, job timeout 60 s, 3 attempts):
 * client_endpoint, worker_endpoint, news_endpoint (NULL or "" turns events
 * off), heartbeat_ms, liveness, job_timeout_ms, max_attempts, max_payload,
 * max_queued, result_ttl_ms, history_len, hwm, data_dir (a directory for the
 * durable job store: async jobs are committed there before their id is
 * returned and restored when a broker starts on it again; NULL, the default,
 * keeps jobs in memory only), spin_us (µs the broker keeps polling after
 * each message before it sleeps, at most 10000: lower latency for CPU time;
 * 0, the default, never spins).
 *
 * For the HTTP gateway run the `zmws broker` program instead.
 */
class Broker
{
    /** option => [C setter, kind] */
    private const OPTIONS = [
        'client_endpoint' => ['zmws_broker_set_client_endpoint', 'string'],
        'worker_endpoint' => ['zmws_broker_set_worker_endpoint', 'string'],
        'news_endpoint' => ['zmws_broker_set_news_endpoint', 'string?'],
        'heartbeat_ms' => ['zmws_broker_set_heartbeat_ms', 'int'],
        'liveness' => ['zmws_broker_set_liveness', 'int'],
        'job_timeout_ms' => ['zmws_broker_set_job_timeout_ms', 'int'],
        'max_attempts' => ['zmws_broker_set_max_attempts', 'int'],
        'max_payload' => ['zmws_broker_set_max_payload', 'int'],
        'max_queued' => ['zmws_broker_set_max_queued', 'int'],
        'result_ttl_ms' => ['zmws_broker_set_result_ttl_ms', 'int'],
        'history_len' => ['zmws_broker_set_history_len', 'int'],
        'data_dir' => ['zmws_broker_set_data_dir', 'string?'],
        'hwm' => ['zmws_broker_set_hwm', 'int'],
        'spin_us' => ['zmws_broker_set_spin_us', 'u32'],
    ];

    private Native $native;
    private ?CData $handle;

    /**
     * @param array<string, string|int|null> $options see the class comment
     * @throws InvalidArgumentException for an unknown option or a bad value
     */
    public function __construct(array $options = [])
    {
        $this->native = Native::get();
        $out = $this->native->ffi->new('zmws_broker *');
        $this->native->check($this->native->ffi->zmws_broker_new(FFI::addr($out)), 'creating a broker');
        $this->handle = $out;
        foreach ($options as $name => $value) {
            $this->set((string) $name, $value);
        }
    }

    public function __destruct()
    {
        $this->free();
    }

    /**
     * Changes one option (only while stopped).
     *
     * @throws InvalidArgumentException
     */
    public function set(string $name, string|int|null $value): self
    {
        if (!isset(self::OPTIONS[$name])) {
            throw new InvalidArgumentException(
                "unknown broker option '$name' (known: " . implode(', ', array_keys(self::OPTIONS)) . ')',
                Native::INVALID_ARGUMENT
            );
        }
        [$fn, $kind] = self::OPTIONS[$name];
        if ($kind === 'int' || $kind === 'u32') {
            if (!is_int($value) && !(is_string($value) && ctype_digit($value))) {
                throw new InvalidArgumentException("broker option '$name' needs a non-negative integer", Native::INVALID_ARGUMENT);
            }
            $value = (int) $value;
            if ($kind === 'u32' && ($value < 0 || $value > 0xFFFFFFFF)) {
                // FFI would wrap it silently into a uint32_t
                throw new InvalidArgumentException("broker option '$name' is out of range", Native::INVALID_ARGUMENT);
            }
        } elseif ($kind === 'string') {
            if ($value === null) {
                throw new InvalidArgumentException("broker option '$name' needs an endpoint", Native::INVALID_ARGUMENT);
            }
            $value = (string) $value;
        } elseif ($value !== null) {
            $value = (string) $value;
        }
        $this->native->check($this->native->ffi->$fn($this->h(), $value), "broker option '$name'");
        return $this;
    }

    /**
     * Binds the sockets and runs the broker on a background thread.
     *
     * @throws IoException when an endpoint cannot be bound (e.g. the port is in use)
     */
    public function start(): self
    {
        $this->native->check($this->native->ffi->zmws_broker_start($this->h()), 'starting the broker');
        return $this;
    }

    /** Stops the broker gracefully (flushes pending replies, joins its thread). */
    public function stop(): void
    {
        if ($this->handle !== null) {
            $this->native->check($this->native->ffi->zmws_broker_stop($this->handle), 'stopping the broker');
        }
    }

    /** Stops the broker if it runs and releases it (the object is unusable afterwards). */
    public function free(): void
    {
        if ($this->handle !== null) {
            $this->native->ffi->zmws_broker_free($this->handle);
            $this->handle = null;
        }
    }

    public function isRunning(): bool
    {
        if ($this->handle === null) {
            return false;
        }
        $out = $this->native->ffi->new('bool');
        $this->native->check($this->native->ffi->zmws_broker_is_running($this->handle, FFI::addr($out)));
        return (bool) $out->cdata;
    }

    /** The bound client endpoint with its port resolved, e.g. "tcp://127.0.0.1:40123". */
    public function clientEndpoint(): string
    {
        return $this->endpoint('zmws_broker_client_endpoint');
    }

    /** The bound worker endpoint with its port resolved. */
    public function workerEndpoint(): string
    {
        return $this->endpoint('zmws_broker_worker_endpoint');
    }

    /** The bound job-event (PUB) endpoint, or NULL when events are off. */
    public function newsEndpoint(): ?string
    {
        try {
            return $this->endpoint('zmws_broker_news_endpoint');
        } catch (NotFoundException $e) {
            return null;
        }
    }

    private function endpoint(string $fn): string
    {
        $out = $this->native->ffi->new('char *');
        $this->native->check($this->native->ffi->$fn($this->h(), FFI::addr($out)));
        return $this->native->takeString($out);
    }

    private function h(): CData
    {
        if ($this->handle === null) {
            throw new ClosedException('the broker has been freed', Native::CLOSED);
        }
        return $this->handle;
    }
}
