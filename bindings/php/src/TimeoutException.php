<?php

declare(strict_types=1);

namespace Zmws;

/**
 * A wait ran past its deadline (ZMWS_TIMEOUT): no result in time, or no broker answered. The job may still run.
 */
class TimeoutException extends Exception
{
}
