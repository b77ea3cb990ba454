<?php

declare(strict_types=1);

namespace Zmws;

/**
 * The handle was stopped or closed, or the broker is not running (ZMWS_CLOSED).
 */
class ClosedException extends Exception
{
}
