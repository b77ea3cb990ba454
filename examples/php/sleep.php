<?php

// SLEEP: the original PHP ZeroMQ Work Server's sample worker; only the
// include line changed. Each job sleeps 1.8 s and succeeds.
//
//   php examples/php/sleep.php [--backend-server=HOST[,HOST2]] [--backend-port=5556]
//
// Try it: php examples/php/client.php SLEEP

require_once dirname(__DIR__, 2) . '/bindings/php/autoload.php';

class W_Sleep extends Worker_Base
{
    public $serviceName = 'SLEEP';

    public function work($jobid, $param = '')
    {
        usleep(1800000);
        return TRUE;
    }
}

$worker = new W_Sleep();
// Send out heartbeats at regular intervals (the library does it in the
// background, even while work() sleeps).
while ($worker->loop()) {
}
