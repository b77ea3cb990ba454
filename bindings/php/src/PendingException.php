<?php

declare(strict_types=1);

namespace Zmws;

/**
 * The job has not finished yet (ZMWS_PENDING).
 */
class PendingException extends Exception
{
}
