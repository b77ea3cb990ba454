<?php

// A client: submits a job without waiting (what used to be
// exec('./task > /dev/null 2>&1 &')), follows it, then runs one synchronously.
//
//   php examples/php/client.php [SERVICE] [TEXT] [--broker=tcp://127.0.0.1:5555]
//
// With the sample workers running:
//   php examples/php/client.php SLEEP
//   php examples/php/client.php STR-REV 'Hello, world'

require_once dirname(__DIR__, 2) . '/bindings/php/autoload.php';

$args = get_cli_args();
$words = array_values(array_filter($args, fn ($a) => $a === '' || $a[0] !== '-'));
$service = $words[0] ?? 'STR-REV';
$text = $words[1] ?? 'Hello, world';
$broker = cli_config_get($args, array('broker'), null);

try {
    $client = new Zmws\Client(is_string($broker) ? $broker : null);

    // Fire and forget: the job id comes back at once, a worker runs the job later.
    $id = $client->submit($service, array('str' => $text));
    echo "submitted $service job $id\n";

    // Anyone holding the id may ask about it later.
    $result = $client->wait($id, 10000);
    $status = $client->status($id);
    printf("state %s after %d attempt(s), result %s\n", $status['state'], $status['attempts'], var_export($result, true));

    // Synchronous: wait up to 5 s for the result.
    echo "call: ", var_export($client->call($service, array('str' => $text), 5000), true), "\n";
} catch (Zmws\NoSuchServiceException $e) {
    fwrite(STDERR, "no worker offers $service yet: start one, e.g. php examples/php/reverse.php\n");
    exit(1);
} catch (Zmws\Exception $e) {
    fwrite(STDERR, get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(1);
}
