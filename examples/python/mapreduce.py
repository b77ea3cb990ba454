#!/usr/bin/env python3
"""Map-reduce with zmws: fetch the title of many pages in parallel, gather
the titles in input order, then reduce them to word counts.

The "fetch" is simulated (this example must run without network access): a
page is looked up in a local table of generated HTML after a random delay
standing in for network latency. Replace `fetch()` with a real HTTP request
and nothing else changes.

    python3 examples/python/mapreduce.py                 # broker + 8 workers + client in one process
    python3 examples/python/mapreduce.py --urls 500 --workers 16

    # or spread over processes/machines, with a broker started elsewhere:
    python3 examples/python/mapreduce.py worker --broker tcp://127.0.0.1:5556 &
    python3 examples/python/mapreduce.py client --broker tcp://127.0.0.1:5555
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import threading
import time
from typing import Dict, List

import zmws

SERVICE = "FETCH-TITLE"
WORDS = ("zero", "message", "queue", "broker", "worker", "job", "rust", "python",
         "socket", "pattern", "reliable", "pipeline", "majordomo", "heartbeat")


def fake_web(n: int, seed: int = 7) -> Dict[str, str]:
    """n generated pages, URL -> HTML; every 25th URL is missing (a 404)."""
    rng = random.Random(seed)
    pages = {}
    for i in range(n):
        if i % 25 == 24:
            continue
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))).title()
        pages[url(i)] = f"<html><head><title>{title}</title></head><body>page {i}</body></html>"
    return pages


def url(i: int) -> str:
    return f"https://example.test/page/{i}"


class TitleWorker(zmws.Worker):
    """Maps one URL to its page title."""

    service = SERVICE

    def __init__(self, endpoint: str, web: Dict[str, str], latency: float, **kwargs) -> None:
        super().__init__(endpoint, **kwargs)
        self.web = web
        self.latency = latency

    def fetch(self, address: str) -> str:
        time.sleep(random.uniform(0.5, 1.5) * self.latency)  # the "network"
        try:
            return self.web[address]
        except KeyError:
            raise LookupError(f"404 Not Found: {address}") from None

    def work(self, job_id: str, param):
        address = param.decode() if isinstance(param, bytes) else param["url"]
        html = self.fetch(address)
        match = re.search(r"<title>(.*?)</title>", html, re.S | re.I)
        return {"url": address, "title": match.group(1).strip() if match else ""}


def reduce_titles(results: List[object]) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for r in results:
        if isinstance(r, bytes):
            counts.update(json.loads(r)["title"].lower().split())
    return counts


def run_client(endpoint: str, n: int, timeout: float) -> int:
    urls = [url(i) for i in range(n)]
    with zmws.Client(endpoint) as client:
        started = time.monotonic()
        # map: one job per URL, many in flight, results in input order;
        # failed fetches come back in place as JobFailed exceptions.
        results = client.map(SERVICE, urls, timeout=timeout, return_exceptions=True)
        elapsed = time.monotonic() - started
    failed = [r for r in results if isinstance(r, zmws.JobFailed)]
    print(f"mapped {len(urls)} URLs in {elapsed:.2f} s: {len(urls) - len(failed)} titles, {len(failed)} failures")
    for u, r in list(zip(urls, results))[:5]:
        print(f"  {u} -> {json.loads(r)['title'] if isinstance(r, bytes) else 'FAILED: ' + r.reason}")
    if failed:
        print(f"  first failure: item {failed[0].index}: {failed[0].reason}")
    print("reduce: most common title words:")
    for word, count in reduce_titles(results).most_common(5):
        print(f"  {word:10} {count}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("all", "worker", "client"), default="all")
    parser.add_argument("--broker", help="broker endpoint: the worker endpoint for 'worker', "
                                         "the client endpoint for 'client'")
    parser.add_argument("--urls", type=int, default=200, help="how many pages to fetch")
    parser.add_argument("--workers", type=int, default=8, help="worker threads")
    parser.add_argument("--latency", type=float, default=0.05, help="simulated fetch time, seconds")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound for the whole map, seconds")
    args = parser.parse_args()
    web = fake_web(args.urls)

    if args.mode == "client":
        return run_client(args.broker or "tcp://127.0.0.1:5555", args.urls, args.timeout)

    if args.mode == "worker":
        workers = [TitleWorker(args.broker or "tcp://127.0.0.1:5556", web, args.latency)
                   for _ in range(args.workers)]
        threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
        for t in threads:
            t.start()
        print(f"{len(workers)} {SERVICE} workers running; Ctrl-C stops them")
        try:
            while any(t.is_alive() for t in threads):
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        for w in workers:
            w.stop()
        for t in threads:
            t.join(timeout=5)
        return 0

    # all in one process: a broker on free ports, worker threads, the client.
    with zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None) as broker:
        workers = [TitleWorker(broker.worker_endpoint, web, args.latency) for _ in range(args.workers)]
        threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
        for t in threads:
            t.start()
        try:
            with zmws.Client(broker.client_endpoint) as probe:
                deadline = time.monotonic() + 10
                while not probe.service_available(SERVICE) and time.monotonic() < deadline:
                    time.sleep(0.02)
            return run_client(broker.client_endpoint, args.urls, args.timeout)
        finally:
            for w in workers:
                w.stop()
            for t in threads:
                t.join(timeout=5)


if __name__ == "__main__":
    raise SystemExit(main())
