<?php

declare(strict_types=1);

namespace Zmws\Tests;

use PHPUnit\Framework\TestCase;
use Zmws\Worker;

/** get_cli_args(), cli_config_get() and how a worker builds its endpoints. */
final class CliHelpersTest extends TestCase
{
    /** @return array<string, array{list<string>, mixed}> */
    public static function seedForms(): array
    {
        return [
            '--db=X' => [['--db=X'], 'X'],
            '-db X' => [['-db', 'X'], 'X'],
            '--dbname=X' => [['--dbname=X'], 'X'],
            '--dbname X' => [['--dbname', 'X'], 'X'],
            '-dbname=X' => [['-dbname=X'], 'X'],
            '--db X' => [['--db', 'X'], 'X'],
            'among others' => [['--verbose', '--port=1', '-db', 'main', 'file.txt'], 'main'],
            'value with =' => [['--db=a=b'], 'a=b'],
            'empty value' => [['--db='], ''],
            'absent' => [['--database=X', '-d', 'Y'], ''],
            'bare flag at the end' => [['--db'], true],
            'bare flag before another' => [['--db', '--other'], true],
            'negative number value' => [['--db', '-5'], '-5'],
            'last one wins' => [['--db=a', '--dbname', 'b'], 'b'],
            'nothing after --' => [['--', '--db=X'], ''],
        ];
    }

    /** @dataProvider seedForms */
    public function testCliConfigGet(array $args, mixed $expected): void
    {
        $this->assertSame($expected, cli_config_get($args, ['db', 'dbname'], ''));
    }

    public function testDefaultsAndNameForms(): void
    {
        $this->assertNull(cli_config_get([], ['db'], null));
        $this->assertSame('dflt', cli_config_get(['x'], 'db', 'dflt'));
        $this->assertSame('X', cli_config_get(['--db=X'], ['--db'], ''), 'names may carry dashes');
        $this->assertSame('X', cli_config_get(['db' => 'X'], ['db', 'dbname'], ''), 'parsed name => value arrays work too');
    }

    public function testGetCliArgsDropsTheScriptName(): void
    {
        $this->assertSame(['--db=X', 'a'], get_cli_args(['worker.php', '--db=X', 'a']));
        $this->assertSame([], get_cli_args(['worker.php']));
        $this->assertIsArray(get_cli_args());
    }

    public function testSeedClassNames(): void
    {
        $this->assertTrue(class_exists('Worker_Base'));
        $this->assertTrue(class_exists('Zmws_Worker_Base'));
        $this->assertSame(Worker::class, (new \ReflectionClass('Worker_Base'))->getName());
        $this->assertTrue(function_exists('get_cli_args') && function_exists('cli_config_get'));
    }

    private function worker(array $argv = [], array $props = []): Worker
    {
        $w = new class (array_merge(['w.php'], $argv)) extends \Worker_Base {
            public $serviceName = 'X';

            public function work($jobid, $param = '')
            {
                return true;
            }
        };
        foreach ($props as $k => $v) {
            $w->$k = $v;
        }
        return $w;
    }

    public function testEndpointsFromProperties(): void
    {
        $saved = getenv('ZMWS_WORKER_ENDPOINT');
        putenv('ZMWS_WORKER_ENDPOINT');
        try {
            $this->assertSame('tcp://127.0.0.1:5556', $this->worker()->endpoints());
            $this->assertSame('tcp://10.0.0.1:6000,tcp://10.0.0.2:6000', $this->worker([], ['backendServers' => '10.0.0.1, 10.0.0.2', 'backendPort' => 6000])->endpoints());
            $this->assertSame('tcp://a:5556,tcp://b:7000,ipc:///tmp/x,tcp://[::1]:5556', $this->worker([], ['backendServers' => ['a', 'b:7000', 'ipc:///tmp/x', '::1']])->endpoints());
            putenv('ZMWS_WORKER_ENDPOINT=tcp://192.0.2.7:9999');
            $this->assertSame('tcp://192.0.2.7:9999', $this->worker([], ['backendServers' => 'a'])->endpoints());
        } finally {
            putenv($saved === false ? 'ZMWS_WORKER_ENDPOINT' : "ZMWS_WORKER_ENDPOINT=$saved");
        }
    }

    public function testSeedPortPropertyIsHonoured(): void
    {
        $w = new class (['w.php']) extends \Worker_Base {
            public $port = '6001';
            public $serviceName = 'SLEEP';
            public $heartbeat_at = 0;

            public function work($jobid, $param = '')
            {
                return true;
            }
        };
        $saved = getenv('ZMWS_WORKER_ENDPOINT');
        putenv('ZMWS_WORKER_ENDPOINT');
        try {
            $this->assertSame('tcp://127.0.0.1:6001', $w->endpoints());
        } finally {
            putenv($saved === false ? 'ZMWS_WORKER_ENDPOINT' : "ZMWS_WORKER_ENDPOINT=$saved");
        }
    }

    /** The flags and environment as connect() applies them, without connecting. */
    private static function configure(Worker $w): void
    {
        (new \ReflectionMethod(Worker::class, 'zmwsConfigure'))->invoke($w);
    }

    public function testAnExplicitBackendPortFlagWinsOverTheSeedPortProperty(): void
    {
        $make = static fn (array $argv) => new class (array_merge(['w.php'], $argv)) extends \Worker_Base {
            public $port = '6001';
            public $serviceName = 'SLEEP';

            public function work($jobid, $param = '')
            {
                return true;
            }
        };
        $saved = getenv('ZMWS_WORKER_ENDPOINT');
        putenv('ZMWS_WORKER_ENDPOINT');
        try {
            $w = $make(['--backend-port=5556']);
            self::configure($w);
            $this->assertSame('tcp://127.0.0.1:5556', $w->endpoints(), 'the flag equals the default, yet it was given');
            $w = $make(['--backend-port', '7000']);
            self::configure($w);
            $this->assertSame('tcp://127.0.0.1:7000', $w->endpoints());
            $w = $make([]);
            self::configure($w);
            $this->assertSame('tcp://127.0.0.1:6001', $w->endpoints(), 'without the flag $port still counts');
        } finally {
            putenv($saved === false ? 'ZMWS_WORKER_ENDPOINT' : "ZMWS_WORKER_ENDPOINT=$saved");
        }
    }

    public function testBadWorkerSettingsAreRefusedBeforeConnecting(): void
    {
        foreach ([['heartbeat_ms', -5], ['liveness', -1], ['serviceName', "A\0B"]] as [$prop, $value]) {
            $w = $this->worker(['--backend-server=127.0.0.1:1'], [$prop => $value]);
            try {
                $w->connect();
                $this->fail("$prop must be refused");
            } catch (\Zmws\InvalidArgumentException $e) {
                $this->assertStringContainsString($prop === 'serviceName' ? 'service name must not contain NUL' : "$prop must be between", $e->getMessage());
            } finally {
                $w->close();
            }
        }
    }
}
