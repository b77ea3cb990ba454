<?php

declare(strict_types=1);

namespace Zmws;

/**
 * The broker refused the job: its queue or a limit is full (ZMWS_QUEUE_FULL).
 */
class QueueFullException extends Exception
{
}
