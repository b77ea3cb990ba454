<?php

declare(strict_types=1);

require dirname(__DIR__) . '/autoload.php';
require __DIR__ . '/WorkerProcess.php';
require __DIR__ . '/ZmwsTestCase.php';
