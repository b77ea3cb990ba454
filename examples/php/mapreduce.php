<?php

// Map-reduce over STR-REV: ten items run on every STR-REV worker at once
// (start a few: php examples/php/reverse.php &), the results come back in
// input order, then are reduced here.
//
//   php examples/php/mapreduce.php [--broker=tcp://127.0.0.1:5555]

require_once dirname(__DIR__, 2) . '/bindings/php/autoload.php';

$broker = cli_config_get(get_cli_args(), array('broker'), null);
$client = new Zmws\Client(is_string($broker) ? $broker : null);

$items = array();
for ($i = 0; $i < 10; $i++) {
    $items[] = array('str' => "item number $i");
}

try {
    $start = microtime(true);
    $reversed = $client->batch('STR-REV', $items, 30000);      // map
} catch (Zmws\BatchException $e) {
    fwrite(STDERR, $e->getMessage() . "\n");
    exit(1);
} catch (Zmws\Exception $e) {
    fwrite(STDERR, get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(1);
}

foreach ($reversed as $i => $r) {
    printf("%2d  %-16s -> %s\n", $i, $items[$i]['str'], $r);
}
$total = array_sum(array_map('strlen', $reversed));                // reduce
printf("%d results in order, %d characters in all, %.0f ms\n", count($reversed), $total, (microtime(true) - $start) * 1000);
