<?php

// The worker measured by memory.php: a seed-style STR-REV worker that prints
// one JSON line of memory figures after job 1, 1,000, 10,000, 100,000, …

require_once dirname(__DIR__) . '/autoload.php';

class W_MemRev extends Worker_Base
{
    public $serviceName = 'PHP-MEMORY';
    private int $jobs = 0;
    /** @var list<int> */
    public array $marks = [1, 1000, 10000, 100000];

    public function work($jobid, $param = '')
    {
        $result = strrev($param->str);
        $this->jobs++;
        if (in_array($this->jobs, $this->marks, true) || $this->jobs % 100000 === 0) {
            $this->report();
        }
        return $result;
    }

    private function report(): void
    {
        gc_collect_cycles();
        $status = (string) @file_get_contents('/proc/self/status');
        $kb = static fn (string $k): ?int => preg_match("/^$k:\\s+(\\d+) kB/m", $status, $m) ? (int) $m[1] : null;
        echo json_encode([
            'jobs' => $this->jobs,
            'memory_get_usage' => memory_get_usage(),
            'memory_get_usage_real' => memory_get_usage(true),
            'memory_get_peak_usage' => memory_get_peak_usage(),
            'vmrss_kb' => $kb('VmRSS'),
            'vmhwm_kb' => $kb('VmHWM'),
            'time' => microtime(true),
        ]), "\n";
    }
}

$worker = new W_MemRev();
while ($worker->loop()) {
}
