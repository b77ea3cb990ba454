<?php

declare(strict_types=1);

namespace Zmws;

/**
 * No worker has ever offered the requested service, or (after a failback)
 * its workers moved to another broker of the list (ZMWS_NO_SUCH_SERVICE).
 */
class NoSuchServiceException extends Exception
{
}
