<?php

declare(strict_types=1);

namespace Zmws;

/**
 * Base of every error the zmws binding throws.
 *
 * getCode() is the library's result code (Native::TIMEOUT, …; 0 for errors
 * raised by the binding itself) and getMessage() the library's message
 * (zmws_last_error()).
 */
class Exception extends \RuntimeException
{
    /** The symbolic name of the result code, e.g. "ZMWS_TIMEOUT". */
    public function getCodeName(): string
    {
        return Native::CODE_NAMES[$this->getCode()] ?? 'ZMWS_UNKNOWN';
    }
}
