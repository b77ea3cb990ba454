<?php

declare(strict_types=1);

namespace Zmws;

/**
 * The native library could not be used: the FFI extension is missing or restricted, or the declarations do not parse.
 */
class LibraryException extends Exception
{
}
