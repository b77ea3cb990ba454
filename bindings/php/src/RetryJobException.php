<?php

declare(strict_types=1);

namespace Zmws;

/**
 * Thrown from Worker::work() to fail the current job as retryable: the broker
 * gives it to a worker again while it has attempts left. Any other exception
 * (or returning FALSE) fails the job for good.
 */
class RetryJobException extends \RuntimeException
{
}
