<?php

declare(strict_types=1);

namespace Zmws;

/**
 * A peer sent something that does not follow the protocol (ZMWS_PROTOCOL).
 */
class ProtocolException extends Exception
{
}
