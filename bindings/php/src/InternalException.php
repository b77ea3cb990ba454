<?php

declare(strict_types=1);

namespace Zmws;

/**
 * A bug in the library: a panic was caught or an invariant broke (ZMWS_INTERNAL).
 */
class InternalException extends Exception
{
}
