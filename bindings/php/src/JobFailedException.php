<?php

declare(strict_types=1);

namespace Zmws;

/**
 * The job failed, was cancelled or ran out of attempts (ZMWS_JOB_FAILED); the message is the worker's reason.
 */
class JobFailedException extends Exception
{
}
