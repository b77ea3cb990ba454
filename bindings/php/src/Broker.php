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
    /** The C API's limit for intervals in milliseconds (10^12, about 31 years). */
    private const MAX_MS = 1000000000000;

    /** The C API's limit for byte and job counts (2^40). */
    private const MAX_COUNT = 1 << 40;

    /** option => [C setter, kind, min, max] (min and max for 'int' only, as the C setters check them) */
    private const OPTIONS = [
        'client_endpoint' => ['zmws_broker_set_client_endpoint', 'string'],
        'worker_endpoint' => ['zmws_broker_set_worker_endpoint', 'string'],
        'news_endpoint' => ['zmws_broker_set_news_endpoint', 'string?'],
        'heartbeat_ms' => ['zmws_broker_set_heartbeat_ms', 'int', 1, self::MAX_MS],
        'liveness' => ['zmws_broker_set_liveness', 'int', 1, 0xFFFFFFFF],
        'job_timeout_ms' => ['zmws_broker_set_job_timeout_ms', 'int', 1, self::MAX_MS],
        'max_attempts' => ['zmws_broker_set_max_attempts', 'int', 1, 0xFFFFFFFF],
        'max_payload' => ['zmws_broker_set_max_payload', 'int', 1, self::MAX_COUNT],
        'max_queued' => ['zmws_broker_set_max_queued', 'int', 1, self::MAX_COUNT],
        'result_ttl_ms' => ['zmws_broker_set_result_ttl_ms', 'int', 1, self::MAX_MS],
        'history_len' => ['zmws_broker_set_history_len', 'int', 0, PHP_INT_MAX],
        'data_dir' => ['zmws_broker_set_data_dir', 'string?'],
        'hwm' => ['zmws_broker_set_hwm', 'int', 1, 0x7FFFFFFF],
        'spin_us' => ['zmws_broker_set_spin_us', 'int', 0, 10000],
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
        if ($kind === 'int') {
            [, , $min, $max] = self::OPTIONS[$name];
            // Checked here: FFI would wrap a negative or too large number
            // into the C parameter's unsigned type silently.
            $shown = is_string($value) ? Native::show($value) : var_export($value, true);
            if (is_string($value) && preg_match('/^-?[0-9]+$/', $value)) {
                $value = abs((float) $value) < PHP_INT_MAX ? (int) $value : null; // null: beyond PHP's int
            }
            if (!is_int($value) || $value < $min || $value > $max) {
                throw new InvalidArgumentException(
                    "broker option '$name' must be an integer between $min and $max, not $shown",
                    Native::INVALID_ARGUMENT
                );
            }
        } elseif ($kind === 'string') {
            if ($value === null) {
                throw new InvalidArgumentException("broker option '$name' needs an endpoint", Native::INVALID_ARGUMENT);
            }
            $value = Native::cString((string) $value, "broker option '$name'");
        } elseif ($value !== null) {
            $value = Native::cString((string) $value, "broker option '$name'");
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
