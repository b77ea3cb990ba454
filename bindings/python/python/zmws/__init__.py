"""zmws — the ZeroMQ Work Server from Python.

A broker queues jobs per service, workers offer a service and pull jobs,
clients submit jobs and wait for results. The native core (Rust) does the
networking; this package is a thin layer over it.

    import zmws

    class Reverse(zmws.Worker):
        service = "STR-REV"

        def work(self, job_id, param):
            return param["str"][::-1]

    with zmws.Broker() as broker:                  # tcp://127.0.0.1:5555 / :5556
        worker = Reverse(broker.worker_endpoint)
        threading.Thread(target=worker.run, daemon=True).start()
        with zmws.Client(broker.client_endpoint) as client:
            client.call("STR-REV", {"str": "hello"})   # b'olleh'
        worker.stop()

See docs/PYTHON.md for the whole surface.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import threading
import time
import weakref
from typing import Any, Callable, Iterator, Optional, Sequence, Union

from . import _native
from ._native import (
    Client,
    Closed,
    InternalError,
    InvalidArgument,
    IoError,
    JobFailed,
    NoSuchService,
    NotFound,
    Pending,
    ProtocolError,
    QueueFull,
    Timeout,
    TooLarge,
    ZmwsError,
)

__version__: str = _native.__version__
CORE_VERSION: str = _native.CORE_VERSION

__all__ = [
    "Broker",
    "Client",
    "Worker",
    "Retry",
    "ZmwsError",
    "Timeout",
    "NoSuchService",
    "InvalidArgument",
    "JobFailed",
    "QueueFull",
    "Closed",
    "NotFound",
    "Pending",
    "TooLarge",
    "ProtocolError",
    "InternalError",
    "IoError",
    "__version__",
]


def _reason(self: BaseException) -> str:
    """The failure the broker recorded: the worker's text (its exception
    text), or ``job failed after N attempt(s): …`` when attempts ran out,
    or ``cancelled by a client``."""
    return str(self.args[0]) if self.args else ""


JobFailed.reason = property(_reason)


class Retry(Exception):
    """Raise from ``work()`` to fail the job *retryably*: the broker runs it
    again on another attempt while attempts are left (``max_attempts``).
    Any exception with a true ``retryable`` attribute does the same."""

    retryable = True


Endpoint = Union[str, Sequence[str]]


@contextlib.contextmanager
def _stop_on_sigterm(stop: Callable[[], None]) -> Iterator[None]:
    """On the main thread, and unless the program has its own SIGTERM
    handler, makes SIGTERM call `stop` for the duration of the block."""
    previous: Any = None
    installed = False
    if threading.current_thread() is threading.main_thread():
        try:
            previous = signal.getsignal(signal.SIGTERM)
            if previous in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, lambda signum, frame: stop())
                installed = True
        except (ValueError, OSError):  # not the main interpreter, …
            installed = False
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)


class Broker(_native.Broker):  # type: ignore[misc]
    __doc__ = _native.Broker.__doc__

    def run(self, timeout: Optional[float] = None) -> None:
        """Starts the broker if needed and blocks until ``stop()`` (from
        another thread), SIGTERM (on the main thread, unless the program has
        its own handler) or Ctrl-C, which raises ``KeyboardInterrupt`` after
        the broker stopped. ``timeout`` (seconds) bounds the wait."""
        with _stop_on_sigterm(self.stop):
            super().run(timeout)

_live_workers: "weakref.WeakSet[Worker]" = weakref.WeakSet()


@atexit.register
def _at_exit() -> None:
    # Workers still running on daemon threads when the program ends: stop
    # them and give their loops a moment to return, then have native waits
    # that end later park their thread instead of re-entering a finalizing
    # interpreter (which aborts the process on CPython < 3.14).
    for worker in list(_live_workers):
        worker.stop()
    deadline = time.monotonic() + 2.0
    while _native._active_loops() and time.monotonic() < deadline:
        time.sleep(0.01)
    _native._prepare_exit()


class Worker(_native.Worker):  # type: ignore[misc]
    """A worker offering one service. Subclass it and override ``work``.

    The service comes from the ``service`` argument or, when that is None,
    from the subclass's ``service`` class attribute. A subclass may define
    its own ``__init__`` as long as it calls ``super().__init__(...)``.

    ``work(job_id, param)`` receives the payload: a dict for a JSON object
    payload, bytes otherwise. Its return value completes the job (bytes and
    str as they are, None as an empty result, anything else — dict, list,
    numbers, True/False — JSON-encoded); an exception fails the job with the
    exception text (retryably for ``zmws.Retry``).

    ``run()`` serves jobs until ``stop()`` (from any thread), SIGTERM (when
    run on the main thread) or Ctrl-C, which raises ``KeyboardInterrupt``
    out of ``run()``. Heartbeats go on while ``work`` runs.
    """

    service: Optional[str] = None

    def __init__(
        self,
        endpoint: Endpoint = "tcp://127.0.0.1:5556",
        service: Optional[str] = None,
        capacity: int = 1,
        *,
        heartbeat_ms: int = 1000,
        liveness: int = 3,
        idle_after: int = 3,
        reconnect_ms: int = 250,
        work: Optional[Callable[[str, Any], Any]] = None,
    ) -> None:
        if service is None:
            service = getattr(self, "service", None)
        if not isinstance(service, str) or not service:
            raise InvalidArgument(
                "no service: pass service=... or set the class attribute `service`"
            )
        if work is not None:
            if not callable(work):
                raise TypeError("work must be callable as work(job_id, param)")
            self.work = work  # type: ignore[method-assign,assignment]
        self.service = service
        _live_workers.add(self)
        self._connect(
            endpoint, service, capacity, heartbeat_ms, liveness, idle_after, reconnect_ms
        )

    def work(self, job_id: str, param: Any) -> Any:
        """Runs one job. Override it; the default fails every job."""
        raise NotImplementedError(f"{type(self).__name__}.work() is not implemented")

    def idle(self) -> None:
        """Called when no job came for ``idle_after`` heartbeats. Override it
        for housekeeping; an exception raised here ends ``run()``."""

    def run(self) -> None:
        """Serves jobs until ``stop()``, SIGTERM or Ctrl-C (KeyboardInterrupt).

        On the main thread a SIGTERM handler that calls ``stop()`` is
        installed for the duration of the call, unless the program has its
        own handler. The worker is disconnected when ``run()`` returns.
        """
        with _stop_on_sigterm(self.stop):
            super().run()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else ("connected" if self.connected else "new")
        return f"<{type(self).__name__} service={self.service!r} {state}>"

