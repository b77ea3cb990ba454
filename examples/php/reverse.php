<?php

// STR-REV: reverses the "str" field of its job, as the seed's string reverse
// worker did ({"str": "Hello, world"} gives "dlrow ,olleH"). UTF-8 text is
// reversed by characters ("héllo" gives "olléh", as the Python STR-REV worker
// answers), anything else byte by byte as strrev() does.
//
//   php examples/php/reverse.php [--verbose] [--backend-server=HOST] [--backend-port=5556]
//
// Try it: php examples/php/client.php STR-REV 'Hello, world'
//     or: curl 'http://127.0.0.1:5580/SYNC-STR-REV?str=Hello,+world' (with `zmws broker`'s HTTP gateway)

require_once dirname(__DIR__, 2) . '/bindings/php/autoload.php';

class W_StrRev extends Worker_Base
{
    public $serviceName = 'STR-REV';
    public $verbose = false;

    public function work($jobid, $param = '')
    {
        if (!is_object($param) || !isset($param->str)) {
            return FALSE; // not a {"str": …} job
        }
        if ($this->verbose) {
            echo "$jobid: {$param->str}\n";
        }
        return self::reverse($param->str);
    }

    /**
     * $s reversed by characters when it is valid UTF-8 (without needing the
     * mbstring extension), else byte by byte like the seed's strrev().
     */
    public static function reverse($s)
    {
        $s = (string) $s;
        if (!preg_match('/[\x80-\xff]/', $s)) {
            return strrev($s); // ASCII: bytes are characters (and big payloads stay cheap)
        }
        $chars = preg_split('//u', $s, -1, PREG_SPLIT_NO_EMPTY);
        if ($chars === false) {
            return strrev($s); // not valid UTF-8
        }
        return implode('', array_reverse($chars));
    }
}

$worker = new W_StrRev();
$args = get_cli_args();
// --verbose, -v, --verbose=1 …
$worker->verbose = (bool) cli_config_get($args, array('v', 'verbose'), false);

while ($worker->loop()) {
}
