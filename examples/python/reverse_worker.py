#!/usr/bin/env python3
"""STR-REV worker: reverses param["str"] of a JSON-object payload.

    zmws broker &                                   # or: python3 -c 'import zmws; zmws.Broker().run()'
    python3 examples/python/reverse_worker.py &
    python3 examples/python/client.py "hello world"

Stops on Ctrl-C or SIGTERM; jobs it holds but has not answered go back to
the broker's queue.
"""

from __future__ import annotations

import argparse
import logging
import os

import zmws


class ReverseWorker(zmws.Worker):
    service = "STR-REV"

    def work(self, job_id: str, param):
        # A JSON object payload arrives as a dict, anything else as bytes.
        if not isinstance(param, dict) or not isinstance(param.get("str"), str):
            raise ValueError('STR-REV expects a JSON object {"str": "..."}')
        text = param["str"]
        logging.info("job %s (attempt %s): reversing %d characters", job_id, self.attempt, len(text))
        return text[::-1]

    def idle(self) -> None:
        logging.debug("idle: no job for a while")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default=os.environ.get("ZMWS_WORKER_ENDPOINT", "tcp://127.0.0.1:5556"),
                        help="broker worker endpoint(s), comma-separated for failover "
                             "(default: $ZMWS_WORKER_ENDPOINT, which `zmws start` sets)")
    parser.add_argument("--heartbeat-ms", type=int, default=int(os.environ.get("ZMWS_HEARTBEAT_MS", "1000")),
                        help="must match the broker's (default: $ZMWS_HEARTBEAT_MS or 1000)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")

    worker = ReverseWorker(args.broker, heartbeat_ms=args.heartbeat_ms)
    logging.info("STR-REV worker connected to %s", args.broker)
    try:
        worker.run()  # returns on SIGTERM or stop()
    except KeyboardInterrupt:
        pass
    logging.info("STR-REV worker stopped after %d jobs", worker.jobs_done)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
