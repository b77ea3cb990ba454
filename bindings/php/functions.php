<?php

/*
 * Global helpers of the original PHP ZeroMQ Work Server, kept so that its
 * workers run unchanged: get_cli_args(), cli_config_get() and the class names
 * Worker_Base and Zmws_Worker_Base (aliases of Zmws\Worker, created when
 * first used). Loaded by autoload.php and by composer ("files").
 */

declare(strict_types=1);

if (!function_exists('get_cli_args')) {
    /**
     * The command-line arguments of the script, without the script name.
     *
     * @param list<string>|null $argv arguments to use instead of $_SERVER['argv'] (script name first)
     * @return list<string>
     */
    function get_cli_args(?array $argv = null): array
    {
        if ($argv === null) {
            $argv = $_SERVER['argv'] ?? $GLOBALS['argv'] ?? [];
        }
        return array_values(array_map('strval', array_slice($argv, 1)));
    }
}

if (!function_exists('cli_config_get')) {
    /**
     * The value of a command-line flag known under any of $names, e.g.
     * cli_config_get($args, ['db', 'dbname'], '') finds --db=X, -db X,
     * --dbname=X, --dbname X (and -db=X, --db X). A flag without a value
     * (--verbose at the end, or followed by another flag) gives TRUE; when a
     * flag is repeated the last one wins; nothing after "--" is read. $args
     * is a list such as get_cli_args() returns, or an array of name => value.
     *
     * @param array<int|string, mixed> $args
     * @param string|list<string>      $names flag names, with or without leading dashes
     * @param mixed                    $default returned when no flag matches
     * @return mixed the value (a string), TRUE for a bare flag, else $default
     */
    function cli_config_get(array $args, $names, $default = '')
    {
        $wanted = [];
        foreach ((array) $names as $name) {
            $wanted[ltrim((string) $name, '-')] = true;
        }
        if ($args !== [] && !array_is_list($args)) {
            // Already parsed: name => value.
            $value = $default;
            foreach ($args as $key => $v) {
                if (isset($wanted[ltrim((string) $key, '-')])) {
                    $value = $v;
                }
            }
            return $value;
        }
        $value = $default;
        $count = count($args);
        for ($i = 0; $i < $count; $i++) {
            $arg = (string) $args[$i];
            if ($arg === '--') {
                break;
            }
            if (!preg_match('/^--?([^-=][^=]*)(=(.*))?$/s', $arg, $m) || !isset($wanted[$m[1]])) {
                continue;
            }
            if (isset($m[2]) && $m[2] !== '') {
                $value = $m[3];
            } elseif ($i + 1 < $count && !zmws_cli_is_flag((string) $args[$i + 1])) {
                $value = (string) $args[++$i];
            } else {
                $value = true;
            }
        }
        return $value;
    }

    /** Whether a command-line word is a flag (negative numbers are values). @internal */
    function zmws_cli_is_flag(string $word): bool
    {
        return strlen($word) > 1 && $word[0] === '-' && !is_numeric($word);
    }
}

spl_autoload_register(static function (string $class): void {
    $lower = strtolower(ltrim($class, '\\'));
    if ($lower === 'worker_base' || $lower === 'zmws_worker_base') {
        class_alias(\Zmws\Worker::class, $class);
    }
});
