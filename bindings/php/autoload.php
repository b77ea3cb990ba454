<?php

/*
 * Loads the zmws PHP binding without composer:
 *
 *     require __DIR__ . '/path/to/zmws/bindings/php/autoload.php';
 *
 * Registers an autoloader for the Zmws\ classes (src/), and defines the seed's
 * helpers get_cli_args(), cli_config_get() and the aliases Worker_Base and
 * Zmws_Worker_Base of Zmws\Worker (functions.php). With composer, the package
 * zmws/zmws does the same through vendor/autoload.php.
 */

declare(strict_types=1);

if (!defined('ZMWS_PHP_AUTOLOAD')) {
    define('ZMWS_PHP_AUTOLOAD', __FILE__);
    spl_autoload_register(static function (string $class): void {
        if (strncmp($class, 'Zmws\\', 5) !== 0) {
            return;
        }
        $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, 5)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    });
    require_once __DIR__ . '/functions.php';
}
