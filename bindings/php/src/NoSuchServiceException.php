<?php

declare(strict_types=1);

namespace Zmws;

/**
 * No worker has ever offered the requested service (ZMWS_NO_SUCH_SERVICE).
 */
class NoSuchServiceException extends Exception
{
}
