<?php

declare(strict_types=1);

namespace Zmws;

use FFI;
use FFI\CData;

/**
 * The base of a PHP worker, shaped like the original PHP ZeroMQ Work Server's
 * Worker_Base (also available under that name and as Zmws_Worker_Base), so
 * existing workers keep working unchanged:
 *
 *     class W_Sleep extends Worker_Base {
 *         public $serviceName = 'SLEEP';
 *         public function work($jobid, $param = '') {
 *             usleep(1800000);
 *             return TRUE;
 *         }
 *     }
 *     $worker = new W_Sleep();
 *     while ($worker->loop()) {
 *     }
 *
 * work($jobid, $param) runs one job. Returning TRUE completes it (empty
 * result), FALSE fails it, any other value is its result: a string as is,
 * anything else (arrays, objects, numbers, NULL) JSON-encoded. An exception
 * fails the job with its message; a Zmws\RetryJobException fails it as
 * retryable (the broker runs it again while attempts are left). $param is a
 * stdClass when the payload is a JSON object ({"str": "abc"} gives
 * $param->str), else the payload string.
 *
 * idle() is called after a quiet spell (no job for 3 heartbeat intervals, and
 * again after every further 3); loop() waits a moment for one job, runs it
 * and returns TRUE while the worker runs, FALSE once it has stopped. run()
 * loops until stop(). With the pcntl extension, SIGTERM and SIGINT call
 * stop(): the current job finishes undisturbed (the signals are blocked while
 * work() runs), then loop() returns FALSE. Without pcntl those signals end
 * the process at once and the broker gives its job to another worker.
 *
 * The connection lives in the native library, whose background thread keeps
 * heartbeating while work() runs: a job may take longer than the broker's
 * liveness window without being taken for dead.
 *
 * Configuration, later sources winning: the properties below, then the
 * command-line flags --service-name, --backend-port, --backend-server (or
 * --backend-servers), --log-level, --heartbeat-ms (any of --flag=X, --flag X,
 * -flag X), then the environment variable ZMWS_WORKER_ENDPOINT, which
 * replaces the endpoint built from backendServers and backendPort.
 * ZMWS_HEARTBEAT_MS (set by `zmws start`) gives the heartbeat when neither
 * the property nor the flag does, ZMWS_SERVICE the service name when the
 * class has none. They are read when the worker connects (its first loop()),
 * so code may still change properties after `new`.
 */
abstract class Worker
{
    /** The service this worker offers (the seed's $serviceName). */
    public $serviceName = '';

    /** Port of the broker's worker endpoint on every server of $backendServers. */
    public $backendPort = '5556';

    /**
     * Broker hosts as a comma-separated list (or an array) tried in order, the
     * next one taking over when a broker goes silent. An entry may carry its
     * own port ("10.0.0.2:6000") or be a full endpoint ("tcp://…", "ipc://…").
     */
    public $backendServers = '127.0.0.1';

    /**
     * NULL (default): only this class's own warnings, on stderr. Otherwise
     * "error", "warn", "info", "debug" or "trace" (or their initials, or a
     * syslog LOG_* number), which also turns on the native library's log at
     * that level; any other text is given to the library as a RUST_LOG filter.
     */
    public $log_level = null;

    /**
     * Heartbeat interval in milliseconds; must equal the broker's. NULL: the
     * flag --heartbeat-ms, else ZMWS_HEARTBEAT_MS, else 1000.
     */
    public $heartbeat_ms = null;

    /** Missed broker heartbeats before reconnecting (NULL: 3). */
    public $liveness = null;

    /** Whether SIGTERM/SIGINT stop the worker gracefully (needs pcntl). */
    public $handleSignals = true;

    /** How long one loop() waits for a job, in milliseconds (also bounds how fast a stop is seen). */
    protected $pollMs = 200;

    private ?Native $zmwsNative = null;
    private ?CData $zmwsHandle = null;
    private ?CData $zmwsJobOut = null;
    private ?CData $zmwsCurrentJob = null;
    private ?string $zmwsCurrentJobId = null;
    private int $zmwsCurrentAttempt = 0;
    private ?array $zmwsArgv = null;
    /** Whether --backend-port was given (it then wins over a seed-style $port). */
    private bool $zmwsPortFlag = false;
    private bool $zmwsStopping = false;
    private bool $zmwsStopped = false;
    /** jobsDone() of the native handle, kept by close() when it frees the handle. */
    private int $zmwsJobsDone = 0;
    private string $zmwsEndpoints = '';
    private int $zmwsLogLevel = 1; // 0 error, 1 warn, 2 info, 3 debug, 4 trace
    /** @var array<int, mixed> previous signal handlers, restored by close() */
    private array $zmwsOldHandlers = [];

    /**
     * @param list<string>|null $argv the command-line arguments to read the flags
     *                                from (default: the script's, as get_cli_args())
     */
    public function __construct(?array $argv = null)
    {
        $this->zmwsArgv = $argv;
    }

    public function __destruct()
    {
        $this->close();
    }

    /**
     * Runs one job. Return TRUE (done), FALSE (failed) or the result; throw to
     * fail with the exception's message.
     *
     * @param string          $jobid the job id (32 hex characters)
     * @param \stdClass|string $param the payload: a JSON object decoded, else the raw string
     */
    abstract public function work($jobid, $param);

    /** Called after a quiet spell (3 heartbeats without a job): housekeeping. */
    public function idle()
    {
    }

    /**
     * One step: connects on the first call, waits up to $pollMs for a job or
     * a quiet spell, runs work() or idle(). TRUE while running, FALSE once the
     * worker has stopped (stop(), SIGTERM, SIGINT) — after the current job.
     *
     * @throws Exception when the worker cannot connect or the library fails
     */
    public function loop()
    {
        if ($this->zmwsStopped) {
            return false;
        }
        if ($this->zmwsHandle === null) {
            $this->connect();
        }
        if (!$this->zmwsStopping) {
            $native = $this->zmwsNative;
            $rc = $native->ffi->zmws_worker_next_event($this->zmwsHandle, max(0, (int) $this->pollMs), FFI::addr($this->zmwsJobOut));
            switch ($rc) {
                case Native::OK:
                    $this->zmwsRunJob($this->zmwsJobOut);
                    break;
                case Native::TIMEOUT:
                    break;
                case Native::IDLE:
                    $this->zmwsGuarded(function (): void {
                        $this->idle();
                    }, 'idle()');
                    break;
                case Native::CLOSED:
                    if (!$this->zmwsStopping) {
                        // Not a stop we asked for: the handle is unusable
                        // here (e.g. inherited by a pcntl_fork() child).
                        throw $native->error($rc, 'waiting for a job');
                    }
                    break;
                default:
                    throw $native->error($rc, 'waiting for a job');
            }
            if (function_exists('pcntl_signal_dispatch')) {
                pcntl_signal_dispatch();
            }
        }
        if ($this->zmwsStopping) {
            $this->zmwsLog(2, 'stopping');
            $this->close();
            return false;
        }
        return true;
    }

    /** Runs jobs until stop() (or SIGTERM/SIGINT). */
    public function run()
    {
        while ($this->loop()) {
        }
    }

    /**
     * Asks the worker to stop after the current job: loop() then returns
     * FALSE. Callable from work(), idle() or a signal handler. Final: create a
     * new worker to work again.
     */
    public function stop()
    {
        $this->zmwsStopping = true;
        if ($this->zmwsHandle !== null) {
            $this->zmwsNative->ffi->zmws_worker_stop($this->zmwsHandle);
        }
    }

    /** Whether stop() was asked (or the worker has stopped). */
    public function isStopping(): bool
    {
        return $this->zmwsStopping || $this->zmwsStopped;
    }

    /**
     * Connects to the broker now (loop() does it on its first call): reads
     * the flags and environment, then registers the service. The native
     * connection retries on its own while the broker is unreachable.
     *
     * @throws InvalidArgumentException for a missing service name or a bad endpoint
     */
    public function connect(): void
    {
        if ($this->zmwsHandle !== null) {
            return;
        }
        if ($this->zmwsStopped) {
            throw new ClosedException('the worker has stopped; create a new one', Native::CLOSED);
        }
        $this->zmwsConfigure();
        $service = (string) $this->serviceName;
        if ($service === '') {
            throw new InvalidArgumentException(
                static::class . ': no service name (set $serviceName, --service-name or ZMWS_SERVICE)',
                Native::INVALID_ARGUMENT
            );
        }
        Native::cString($service, 'the service name');
        Native::cString($this->zmwsEndpoints, 'the broker endpoints');
        // FFI would wrap negative numbers into the unsigned C parameters.
        $heartbeatMs = (int) ($this->heartbeat_ms ?? 0);
        if ($heartbeatMs < 0 || $heartbeatMs > 1000000000000) {
            throw new InvalidArgumentException("heartbeat_ms must be between 1 and 1000000000000 (NULL: the default), not $heartbeatMs", Native::INVALID_ARGUMENT);
        }
        $liveness = (int) ($this->liveness ?? 0);
        if ($liveness < 0 || $liveness > 0xFFFFFFFF) {
            throw new InvalidArgumentException("liveness must be between 1 and 4294967295 (NULL: the default), not $liveness", Native::INVALID_ARGUMENT);
        }
        $native = $this->zmwsNative ??= Native::get();
        $ffi = $native->ffi;
        $out = $ffi->new('zmws_worker *');
        $native->check($ffi->zmws_worker_new_with_heartbeat(
            $this->zmwsEndpoints,
            $service,
            1,
            $heartbeatMs,
            $liveness,
            FFI::addr($out)
        ), "worker $service");
        $this->zmwsHandle = $out;
        $this->zmwsJobOut = $ffi->new('zmws_job *');
        $this->zmwsInstallSignals();
        $this->zmwsLog(2, "offering $service on {$this->zmwsEndpoints}" . ($this->heartbeat_ms ? " (heartbeat {$this->heartbeat_ms} ms)" : ''));
        if ($this->zmwsStopping) {
            $ffi->zmws_worker_stop($out);
        }
    }

    /**
     * Disconnects (replies already given are flushed; the broker requeues a
     * job not answered yet) and restores the signal handlers. loop() returns
     * FALSE afterwards.
     */
    public function close(): void
    {
        if ($this->zmwsHandle !== null) {
            // The count lives in the handle: keep it for jobsDone() after the loop.
            $this->zmwsJobsDone = $this->zmwsReadJobsDone() ?? $this->zmwsJobsDone;
            $this->zmwsNative->ffi->zmws_worker_free($this->zmwsHandle);
            $this->zmwsHandle = null;
            $this->zmwsJobOut = null;
            $this->zmwsStopped = true;
        }
        $this->zmwsRestoreSignals();
    }

    /**
     * Sends progress to a client waiting on the current job (Client::call);
     * only from inside work(). Strings as is, anything else JSON-encoded.
     */
    public function partial($data): void
    {
        if ($this->zmwsCurrentJob === null) {
            throw new InvalidArgumentException('partial() is only possible inside work()', Native::INVALID_ARGUMENT);
        }
        $bytes = Native::encodeParam($data);
        $native = $this->zmwsNative;
        $native->check($native->ffi->zmws_job_partial($this->zmwsCurrentJob, $native->bytes($bytes), strlen($bytes)));
    }

    /** The id of the job work() is running, or NULL. */
    public function currentJobId(): ?string
    {
        return $this->zmwsCurrentJobId;
    }

    /** The attempt number of the current job (1 for the first run; 0 outside work()). */
    public function currentAttempt(): int
    {
        return $this->zmwsCurrentAttempt;
    }

    /**
     * How many jobs this worker has answered (completed or failed): 0 before
     * it connects, the final count once it has stopped (after loop() returned
     * FALSE, close() or the end of run()).
     */
    public function jobsDone(): int
    {
        if ($this->zmwsHandle === null) {
            return $this->zmwsJobsDone;
        }
        $out = $this->zmwsNative->ffi->new('uint64_t');
        $this->zmwsNative->check($this->zmwsNative->ffi->zmws_worker_jobs_done($this->zmwsHandle, FFI::addr($out)));
        return $this->zmwsJobsDone = (int) $out->cdata;
    }

    /**
     * The broker endpoints this worker uses: ZMWS_WORKER_ENDPOINT, else one
     * tcp://HOST:PORT per entry of $backendServers (comma-separated, in
     * failover order).
     */
    public function endpoints(): string
    {
        $env = getenv('ZMWS_WORKER_ENDPOINT');
        if (is_string($env) && trim($env) !== '') {
            return trim($env);
        }
        $servers = is_array($this->backendServers) ? $this->backendServers : explode(',', (string) $this->backendServers);
        $port = trim((string) $this->backendPort);
        // The seed's sample workers declared `public $port`; honour it when
        // backendPort was left at its default and no --backend-port was given.
        if (!$this->zmwsPortFlag && $port === '5556' && property_exists($this, 'port') && (string) $this->port !== '') {
            $port = trim((string) $this->port);
        }
        $list = [];
        foreach ($servers as $server) {
            $server = trim((string) $server);
            if ($server === '') {
                continue;
            }
            if (str_contains($server, '://')) {
                $list[] = $server;
            } elseif (preg_match('/^(\[[^\]]+\]|[^:\[\]]+):\d+$/', $server)) {
                $list[] = "tcp://$server";
            } elseif (str_contains($server, ':') && $server[0] !== '[') {
                $list[] = "tcp://[$server]:$port"; // a bare IPv6 address
            } else {
                $list[] = "tcp://$server:$port";
            }
        }
        if ($list === []) {
            throw new InvalidArgumentException('no broker: $backendServers is empty', Native::INVALID_ARGUMENT);
        }
        return implode(',', $list);
    }

    // ------------------------------------------------------------ internals

    private function zmwsConfigure(): void
    {
        $args = $this->zmwsArgv ?? get_cli_args();
        $flag = static function (array $names) use ($args): ?string {
            $v = cli_config_get($args, $names, null);
            return is_string($v) ? $v : null;
        };
        if (($v = $flag(['service-name'])) !== null) {
            $this->serviceName = $v;
        }
        if (($v = $flag(['backend-port'])) !== null) {
            $this->backendPort = $v;
            $this->zmwsPortFlag = true;
        }
        if (($v = $flag(['backend-server', 'backend-servers'])) !== null) {
            $this->backendServers = $v;
        }
        if (($v = $flag(['log-level'])) !== null) {
            $this->log_level = $v;
        }
        if (($v = $flag(['heartbeat-ms'])) !== null) {
            $this->heartbeat_ms = (int) $v;
        }
        if ($this->heartbeat_ms === null || $this->heartbeat_ms === '') {
            $env = getenv('ZMWS_HEARTBEAT_MS');
            $this->heartbeat_ms = is_string($env) && ctype_digit($env) ? (int) $env : null;
        }
        if ((string) $this->serviceName === '') {
            $env = getenv('ZMWS_SERVICE');
            if (is_string($env) && $env !== '') {
                $this->serviceName = $env;
            }
        }
        $this->zmwsEndpoints = $this->endpoints();
        $this->zmwsSetupLog();
    }

    /** The native handle's job count; NULL if the library reports an error. */
    private function zmwsReadJobsDone(): ?int
    {
        $ffi = $this->zmwsNative->ffi;
        $out = $ffi->new('uint64_t');
        return $ffi->zmws_worker_jobs_done($this->zmwsHandle, FFI::addr($out)) === Native::OK ? (int) $out->cdata : null;
    }

    private function zmwsSetupLog(): void
    {
        $level = $this->log_level;
        if ($level === null || $level === '' || $level === false) {
            return;
        }
        $levels = ['error' => 0, 'warn' => 1, 'info' => 2, 'debug' => 3, 'trace' => 4];
        $names = array_flip($levels);
        $filter = null;
        if (is_int($level) || (is_string($level) && ctype_digit($level))) {
            // syslog numbers: LOG_ERR 3, LOG_WARNING 4, LOG_NOTICE 5, LOG_INFO 6, LOG_DEBUG 7
            $n = (int) $level;
            $this->zmwsLogLevel = $n <= 3 ? 0 : ($n === 4 ? 1 : ($n <= 6 ? 2 : 3));
            $filter = $names[$this->zmwsLogLevel];
        } else {
            $text = strtolower(trim((string) $level));
            $aliases = ['e' => 'error', 'err' => 'error', 'w' => 'warn', 'warning' => 'warn', 'i' => 'info',
                'n' => 'info', 'notice' => 'info', 'd' => 'debug', 't' => 'trace'];
            $text = $aliases[$text] ?? $text;
            if (isset($levels[$text])) {
                $this->zmwsLogLevel = $levels[$text];
                $filter = $text;
            } else {
                $filter = (string) $level; // a RUST_LOG filter such as "zmws=debug"
                $this->zmwsLogLevel = str_contains($filter, 'debug') || str_contains($filter, 'trace') ? 3 : 2;
            }
        }
        $native = $this->zmwsNative ??= Native::get();
        // Once per process; a second worker in the same process keeps the first filter.
        $native->ffi->zmws_log_init($filter);
    }

    private function zmwsLog(int $level, string $message): void
    {
        if ($level <= $this->zmwsLogLevel) {
            $tag = ['ERROR', 'WARN', 'INFO', 'DEBUG', 'TRACE'][$level];
            fwrite(STDERR, sprintf("%s %s %s[%d] %s: %s\n", date('Y-m-d\TH:i:s'), $tag, static::class, getmypid(), (string) $this->serviceName, $message));
        }
    }

    private function zmwsRunJob(CData $job): void
    {
        $native = $this->zmwsNative;
        $ffi = $native->ffi;
        try {
            $idOut = $ffi->new('const char *');
            $native->check($ffi->zmws_job_id($job, FFI::addr($idOut)));
            $id = FFI::string($idOut);
            $attemptOut = $ffi->new('uint32_t');
            $native->check($ffi->zmws_job_attempt($job, FFI::addr($attemptOut)));
            $dataOut = $ffi->new('const uint8_t *');
            $lenOut = $ffi->new('size_t');
            $native->check($ffi->zmws_job_payload($job, FFI::addr($dataOut), FFI::addr($lenOut)));
            $len = (int) $lenOut->cdata;
            $payload = $len === 0 ? '' : FFI::string($dataOut, $len);
            unset($dataOut, $idOut);

            $this->zmwsCurrentJob = $job;
            $this->zmwsCurrentJobId = $id;
            $this->zmwsCurrentAttempt = (int) $attemptOut->cdata;
            $outcome = null;
            $blocked = $this->zmwsBlockSignals();
            try {
                $outcome = ['ok', $this->work($id, self::zmwsDecodeParam($payload))];
            } catch (RetryJobException $e) {
                $outcome = ['retry', $e->getMessage() !== '' ? $e->getMessage() : get_class($e)];
            } catch (\Throwable $e) {
                $outcome = ['fail', $e->getMessage() !== '' ? $e->getMessage() : get_class($e)];
                $this->zmwsLog(1, "job $id failed: " . get_class($e) . ': ' . $e->getMessage()
                    . ' at ' . $e->getFile() . ':' . $e->getLine());
            } finally {
                $this->zmwsCurrentJob = null;
                $this->zmwsCurrentJobId = null;
                $this->zmwsCurrentAttempt = 0;
                $this->zmwsUnblockSignals($blocked);
            }

            [$kind, $value] = $outcome;
            if ($kind === 'ok') {
                if ($value === true) {
                    $rc = $ffi->zmws_job_complete($job, null, 0);
                } elseif ($value === false) {
                    $rc = $ffi->zmws_job_fail($job, 'work() returned FALSE', false);
                } else {
                    try {
                        $bytes = is_string($value) ? $value
                            : json_encode($value, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
                        $rc = $ffi->zmws_job_complete($job, $native->bytes($bytes), strlen($bytes));
                    } catch (\JsonException $e) {
                        $rc = $ffi->zmws_job_fail($job, 'cannot JSON-encode the result of work(): ' . $e->getMessage(), false);
                    }
                }
            } else {
                $rc = $ffi->zmws_job_fail($job, self::zmwsReason($value), $kind === 'retry');
            }
            if ($rc !== Native::OK) {
                $this->zmwsLog(1, "job $id: cannot send the answer: " . $native->error($rc)->getMessage());
            }
        } finally {
            $ffi->zmws_job_free($job);
        }
    }

    /** A JSON object payload as a stdClass, anything else as the string itself. */
    private static function zmwsDecodeParam(string $payload)
    {
        $trimmed = ltrim($payload);
        if ($trimmed !== '' && $trimmed[0] === '{') {
            $value = json_decode($payload, false, 512, JSON_BIGINT_AS_STRING);
            if ($value instanceof \stdClass) {
                return $value;
            }
        }
        return $payload;
    }

    /** A failure reason the library accepts: UTF-8 without NUL bytes. */
    private static function zmwsReason(string $reason): string
    {
        $reason = str_replace("\0", '', $reason);
        if (!preg_match('//u', $reason)) {
            $reason = htmlspecialchars_decode(htmlspecialchars($reason, ENT_SUBSTITUTE | ENT_NOQUOTES, 'UTF-8'), ENT_NOQUOTES);
        }
        return $reason === '' ? 'job failed' : $reason;
    }

    private function zmwsGuarded(callable $fn, string $what): void
    {
        $blocked = $this->zmwsBlockSignals();
        try {
            $fn();
        } catch (\Throwable $e) {
            $this->zmwsLog(1, "$what threw " . get_class($e) . ': ' . $e->getMessage());
        } finally {
            $this->zmwsUnblockSignals($blocked);
        }
    }

    private function zmwsInstallSignals(): void
    {
        if (!$this->handleSignals || !function_exists('pcntl_async_signals') || $this->zmwsOldHandlers !== []) {
            return;
        }
        pcntl_async_signals(true);
        // A weak reference, so that the handler does not keep a forgotten
        // worker alive (its destructor disconnects it and restores these).
        $self = \WeakReference::create($this);
        $handler = static function (int $signo) use ($self): void {
            $worker = $self->get();
            if ($worker instanceof Worker) {
                $worker->zmwsLog(2, "signal $signo: stopping after the current job");
                $worker->stop();
            }
        };
        foreach ([SIGTERM, SIGINT] as $sig) {
            $this->zmwsOldHandlers[$sig] = pcntl_signal_get_handler($sig);
            pcntl_signal($sig, $handler);
        }
    }

    private function zmwsRestoreSignals(): void
    {
        foreach ($this->zmwsOldHandlers as $sig => $old) {
            pcntl_signal($sig, $old ?: SIG_DFL);
        }
        $this->zmwsOldHandlers = [];
    }

    /**
     * Blocks SIGTERM/SIGINT on this thread while PHP code runs a job, so that
     * a stop request neither interrupts its system calls (usleep, sockets)
     * nor cuts it short; a native thread of the library (its keeper, or libzmq's I/O thread) takes the signal meanwhile and
     * the handler runs once the job is done.
     *
     * @return array<int>|null the previous mask, NULL when nothing was blocked
     */
    private function zmwsBlockSignals(): ?array
    {
        if ($this->zmwsOldHandlers === [] || !function_exists('pcntl_sigprocmask')) {
            return null;
        }
        $old = [];
        pcntl_sigprocmask(SIG_BLOCK, [SIGTERM, SIGINT], $old);
        return $old;
    }

    /** @param array<int>|null $old */
    private function zmwsUnblockSignals(?array $old): void
    {
        if ($old !== null) {
            pcntl_sigprocmask(SIG_SETMASK, $old);
            pcntl_signal_dispatch();
        }
    }
}
