<?php

declare(strict_types=1);

namespace Zmws\Tests;

/**
 * A PHP worker script run as a child process (proc_open without a shell, so
 * the pid is the PHP process itself). Only processes started here are ever
 * signalled, by their own pid.
 */
final class WorkerProcess
{
    /** @var resource */
    private $proc;
    public int $pid;
    public string $output;
    private ?int $exitCode = null;

    /**
     * @param list<string>          $args  arguments after the script
     * @param array<string, string> $env   added to (or, with NULL values, removed from) the environment
     */
    public function __construct(string $script, array $args = [], array $env = [])
    {
        $this->output = tempnam(sys_get_temp_dir(), 'zmws-php-worker-') ?: throw new \RuntimeException('tempnam failed');
        $environment = getenv();
        foreach ($env as $k => $v) {
            if ($v === null) {
                unset($environment[$k]);
            } else {
                $environment[$k] = $v;
            }
        }
        $cmd = array_merge([PHP_BINARY, '-d', 'error_reporting=-1', '-d', 'display_errors=stderr', $script], $args);
        $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', $this->output, 'a'], 2 => ['file', $this->output, 'a']], $pipes, null, $environment);
        if (!is_resource($proc)) {
            throw new \RuntimeException('cannot start ' . implode(' ', $cmd));
        }
        $this->proc = $proc;
        $this->pid = (int) proc_get_status($proc)['pid'];
    }

    public function isRunning(): bool
    {
        if ($this->exitCode !== null) {
            return false;
        }
        $status = proc_get_status($this->proc);
        if (!$status['running']) {
            $this->exitCode = $status['exitcode'];
            return false;
        }
        return true;
    }

    /** Waits up to $timeoutMs for the process to end; its exit code, or NULL if it still runs. */
    public function wait(int $timeoutMs): ?int
    {
        $deadline = microtime(true) + $timeoutMs / 1000;
        while ($this->isRunning()) {
            if (microtime(true) >= $deadline) {
                return null;
            }
            usleep(10000);
        }
        return $this->exitCode;
    }

    public function signal(int $signo): void
    {
        if ($this->isRunning()) {
            proc_terminate($this->proc, $signo);
        }
    }

    /** SIGTERM, then SIGKILL after $graceMs; returns the exit code (NULL if killed). */
    public function stop(int $graceMs = 5000): ?int
    {
        $this->signal(15);
        $code = $this->wait($graceMs);
        if ($code === null) {
            $this->signal(9);
            $this->wait(5000);
            return null;
        }
        return $code;
    }

    /** PHP errors, warnings, notices or deprecations the process printed. */
    public function phpDiagnostics(): array
    {
        return preg_grep('/\b(Fatal error|Warning|Notice|Deprecated)\b:/', explode("\n", $this->output())) ?: [];
    }

    public function output(): string
    {
        return (string) @file_get_contents($this->output);
    }

    public function __destruct()
    {
        if ($this->isRunning()) {
            $this->signal(9);
            $this->wait(5000);
        }
        proc_close($this->proc);
        @unlink($this->output);
    }
}
