<?php

declare(strict_types=1);

namespace Zmws;

/**
 * The job id is unknown: it never existed or has expired (ZMWS_NOT_FOUND).
 */
class NotFoundException extends Exception
{
}
