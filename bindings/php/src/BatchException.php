<?php

declare(strict_types=1);

namespace Zmws;

/**
 * Some jobs of a Client::batch() did not succeed.
 *
 * getResults() holds the results of the jobs that did, getErrors() an
 * exception per job that did not, both keyed like the batch's input.
 */
class BatchException extends JobFailedException
{
    /** @var array<array-key, string> */
    private array $results;

    /** @var array<array-key, Exception> */
    private array $errors;

    /**
     * @param array<array-key, string>    $results
     * @param array<array-key, Exception> $errors
     */
    public function __construct(string $message, array $results, array $errors)
    {
        parent::__construct($message, Native::JOB_FAILED);
        $this->results = $results;
        $this->errors = $errors;
    }

    /** @return array<array-key, string> results of the jobs that succeeded, in input order */
    public function getResults(): array
    {
        return $this->results;
    }

    /** @return array<array-key, Exception> one exception per failed job, in input order */
    public function getErrors(): array
    {
        return $this->errors;
    }
}
