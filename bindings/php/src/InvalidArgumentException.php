<?php

declare(strict_types=1);

namespace Zmws;

/**
 * An argument was empty, not UTF-8, out of range or given in the wrong state (ZMWS_INVALID_ARGUMENT).
 */
class InvalidArgumentException extends Exception
{
}
