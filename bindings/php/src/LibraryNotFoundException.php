<?php

declare(strict_types=1);

namespace Zmws;

/**
 * libzmws (or its declaration file zmws_ffi.h) could not be found or loaded.
 */
class LibraryNotFoundException extends LibraryException
{
}
