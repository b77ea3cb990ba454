<?php

declare(strict_types=1);

namespace Zmws;

/**
 * The payload is larger than the broker accepts (ZMWS_TOO_LARGE).
 */
class TooLargeException extends Exception
{
}
