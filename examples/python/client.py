#!/usr/bin/env python3
"""A client for the STR-REV worker: one sync call, then the async way.

    python3 examples/python/client.py "hello world"
    python3 examples/python/client.py --broker tcp://10.0.0.1:5555,tcp://10.0.0.2:5555 text
"""

from __future__ import annotations

import argparse
import sys
import time

import zmws


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", nargs="?", default="hello world")
    parser.add_argument("--broker", default="tcp://127.0.0.1:5555",
                        help="broker client endpoint(s), comma-separated for failover")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a result")
    args = parser.parse_args()

    with zmws.Client(args.broker) as client:
        # Sync: wait for the result. A dict payload is sent as JSON.
        try:
            result = client.call("STR-REV", {"str": args.text}, timeout=args.timeout)
        except zmws.NoSuchService:
            print("no STR-REV worker has ever connected: start examples/python/reverse_worker.py", file=sys.stderr)
            return 1
        except zmws.Timeout:
            print(f"no result within {args.timeout} s", file=sys.stderr)
            return 1
        except zmws.JobFailed as e:
            print(f"job failed: {e.reason}", file=sys.stderr)
            return 1
        print("call:  ", result.decode())

        # Async: get a job id at once, ask for the result later.
        job_id = client.submit("STR-REV", {"str": args.text.upper()})
        print("submit:", job_id)
        deadline = time.monotonic() + args.timeout
        while True:
            status = client.status(job_id)
            if status["state"] in ("complete", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                print("still", status["state"], "- giving up", file=sys.stderr)
                return 1
            time.sleep(0.05)
        print("status:", status["state"], f"after {status['attempts']} attempt(s) on worker {status['worker']}")
        try:
            print("result:", client.result(job_id).decode())
        except zmws.JobFailed as e:
            print("failed:", e.reason)

        # What the broker knows.
        for w in client.workers():
            print(f"worker {w['worker']}: {w['service']} {w['state']}, {w['jobs_done']} jobs done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
