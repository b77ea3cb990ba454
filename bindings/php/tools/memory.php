<?php

/*
 * Measures a PHP worker's memory over many jobs (default 100,000): a broker
 * embedded in this process, tools/memory_worker.php as a child process, and
 * a client sending the jobs in batches. Prints the worker's memory_get_usage()
 * and VmRSS after 1, 1,000, 10,000 and 100,000 jobs.
 *
 *   php bindings/php/tools/memory.php [--jobs=100000] [--batch=1000]
 */

declare(strict_types=1);

require_once dirname(__DIR__) . '/autoload.php';

$args = get_cli_args();
$total = (int) cli_config_get($args, ['jobs'], '100000');
$batchSize = (int) cli_config_get($args, ['batch'], '1000');

$broker = (new Zmws\Broker([
    'client_endpoint' => 'tcp://127.0.0.1:*',
    'worker_endpoint' => 'tcp://127.0.0.1:*',
    'news_endpoint' => null,
    'result_ttl_ms' => 60000,
]))->start();
$client = new Zmws\Client($broker->clientEndpoint());

$out = tempnam(sys_get_temp_dir(), 'zmws-memory-');
$env = getenv();
$env['ZMWS_WORKER_ENDPOINT'] = $broker->workerEndpoint();
unset($env['ZMWS_HEARTBEAT_MS']);
$proc = proc_open([PHP_BINARY, __DIR__ . '/memory_worker.php'], [0 => ['file', '/dev/null', 'r'], 1 => ['file', $out, 'w'], 2 => ['file', $out, 'a']], $pipes, null, $env);
if (!is_resource($proc)) {
    fwrite(STDERR, "cannot start the worker\n");
    exit(1);
}
$pid = proc_get_status($proc)['pid'];
$exit = 0;
try {
    if (!$client->waitForService('PHP-MEMORY', 10000)) {
        throw new RuntimeException('the worker did not connect: ' . file_get_contents($out));
    }
    $start = microtime(true);
    $done = 0;
    while ($done < $total) {
        $n = min($batchSize, $total - $done);
        $params = [];
        for ($i = 0; $i < $n; $i++) {
            $params[] = ['str' => 'job ' . ($done + $i) . ' of the memory run'];
        }
        $results = $client->batch('PHP-MEMORY', $params, 120000);
        if ($results[0] !== strrev($params[0]['str'])) {
            throw new RuntimeException('wrong result ' . $results[0]);
        }
        $done += $n;
    }
    $elapsed = microtime(true) - $start;
    usleep(300000); // the last report line
    printf("%d jobs in %.1f s (%.0f jobs/s), PHP %s, libzmws %s\n", $total, $elapsed, $total / $elapsed, PHP_VERSION, Zmws\Native::get()->version());
    printf("%10s %18s %18s %12s\n", 'jobs', 'memory_get_usage', 'real (emalloc)', 'VmRSS');
    foreach (file($out, FILE_IGNORE_NEW_LINES) ?: [] as $line) {
        $r = json_decode($line, true);
        if (!is_array($r)) {
            echo "worker: $line\n";
            continue;
        }
        printf("%10s %16s B %16s B %9s kB\n", number_format($r['jobs']), number_format($r['memory_get_usage']), number_format($r['memory_get_usage_real']), number_format((int) $r['vmrss_kb']));
    }
} catch (Throwable $e) {
    fwrite(STDERR, get_class($e) . ': ' . $e->getMessage() . "\n");
    $exit = 1;
} finally {
    proc_terminate($proc, 15);
    for ($i = 0; $i < 500 && proc_get_status($proc)['running']; $i++) {
        usleep(10000);
    }
    if (proc_get_status($proc)['running']) {
        proc_terminate($proc, 9);
    }
    proc_close($proc);
    @unlink($out);
    $broker->stop();
}
exit($exit);
