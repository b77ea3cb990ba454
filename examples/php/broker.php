<?php

// A broker embedded in PHP, on the default ports: clients on 5555, workers
// on 5556 (job events off). Runs until Ctrl-C / SIGTERM. The `zmws broker`
// program does the same with a durable job store and the HTTP gateway.
//
//   php examples/php/broker.php [--client-endpoint=tcp://127.0.0.1:5555] [--worker-endpoint=tcp://127.0.0.1:5556]

require_once dirname(__DIR__, 2) . '/bindings/php/autoload.php';

$args = get_cli_args();
$broker = new Zmws\Broker(array(
    'client_endpoint' => (string) cli_config_get($args, array('client-endpoint'), 'tcp://127.0.0.1:5555'),
    'worker_endpoint' => (string) cli_config_get($args, array('worker-endpoint'), 'tcp://127.0.0.1:5556'),
    'news_endpoint' => null,
));
$broker->start();
echo "broker: clients on {$broker->clientEndpoint()}, workers on {$broker->workerEndpoint()}\n";

$running = true;
if (function_exists('pcntl_async_signals')) {
    pcntl_async_signals(true);
    pcntl_signal(SIGINT, function () use (&$running) { $running = false; });
    pcntl_signal(SIGTERM, function () use (&$running) { $running = false; });
}
while ($running && $broker->isRunning()) {
    usleep(200000);
}
$broker->stop();
echo "broker stopped\n";
