<?php

declare(strict_types=1);

namespace Zmws;

/**
 * A ZeroMQ or operating-system error, e.g. a port already in use (ZMWS_IO).
 */
class IoException extends Exception
{
}
