"""Fixtures: a broker on free loopback ports per test, a client, and a helper
that runs workers on threads and always stops them."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from typing import Callable, Iterator, List

import pytest

import zmws

# Heartbeat for tests (broker and workers must agree). Shorter than the
# default 1000 ms so idle hooks and dead-worker detection are quick, long
# enough for a busy 2-core machine.
HEARTBEAT_MS = 250

_FIRST_PORT = 20_000
_port_counter = itertools.count()


def unused_port() -> int:
    """A loopback TCP port nobody listens on, for a server started later.

    A port from ``bind(0)`` comes from the kernel's ephemeral range and, once
    released, any outgoing connection may take it before the server binds.
    These come from below that range, unique within this process, spread
    over processes by pid, and checked to be bindable now."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32_768
    span = ephemeral_low - _FIRST_PORT
    if span < 1_000:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    base = os.getpid() * 7_919
    for _ in range(span):
        port = _FIRST_PORT + (base + next(_port_counter)) % span
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port between {_FIRST_PORT} and {ephemeral_low}")


@pytest.fixture
def broker() -> Iterator[zmws.Broker]:
    b = zmws.Broker(
        "tcp://127.0.0.1:*",
        "tcp://127.0.0.1:*",
        None,
        heartbeat_ms=HEARTBEAT_MS,
        job_timeout_ms=30_000,
    )
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def client(broker: zmws.Broker) -> Iterator[zmws.Client]:
    with zmws.Client(broker.client_endpoint) as c:
        yield c


class Serving:
    """Runs workers on threads; stops and joins every one at the end."""

    def __init__(self, broker: zmws.Broker) -> None:
        self.broker = broker
        self.workers: List[zmws.Worker] = []
        self.threads: List[threading.Thread] = []
        self.errors: List[BaseException] = []

    def __call__(self, worker: zmws.Worker) -> zmws.Worker:
        def target() -> None:
            try:
                worker.run()
            except BaseException as e:  # reported by the fixture
                self.errors.append(e)

        t = threading.Thread(target=target, name=f"worker-{worker.service}", daemon=True)
        t.start()
        self.workers.append(worker)
        self.threads.append(t)
        assert worker.service
        wait_registered(self.broker, worker.service)
        return worker

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()
        for t in self.threads:
            t.join(timeout=5)
            assert not t.is_alive(), f"{t.name} did not stop within 5 s"
        for w in self.workers:
            w.close()


@pytest.fixture
def serve(broker: zmws.Broker) -> Iterator[Serving]:
    s = Serving(broker)
    try:
        yield s
    finally:
        s.stop_all()
    assert not s.errors, f"worker thread raised: {s.errors!r}"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.02) -> bool:
    """Polls `predicate` until it is true or `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def wait_registered(broker: zmws.Broker, service: str) -> None:
    """Waits until the broker knows a live worker for `service`."""
    with zmws.Client(broker.client_endpoint) as c:
        assert wait_until(lambda: c.service_available(service)), f"no worker for {service}"


@contextlib.contextmanager
def stuck_worker(broker: zmws.Broker, service: str) -> Iterator[zmws.Worker]:
    """A worker that registers (and heartbeats) but never runs its jobs."""
    w = zmws.Worker(broker.worker_endpoint, service=service, heartbeat_ms=HEARTBEAT_MS)
    try:
        wait_registered(broker, service)
        yield w
    finally:
        w.close()
