"""Construction, configuration and error handling of Broker, Client and Worker."""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest

import zmws

from conftest import HEARTBEAT_MS, unused_port, wait_registered


def test_exception_hierarchy():
    for cls in (zmws.Timeout, zmws.NoSuchService, zmws.InvalidArgument, zmws.JobFailed,
                zmws.QueueFull, zmws.Closed, zmws.NotFound, zmws.Pending, zmws.TooLarge,
                zmws.ProtocolError, zmws.InternalError, zmws.IoError):
        assert issubclass(cls, zmws.ZmwsError)
        assert isinstance(cls.code, int) and cls.code > 0
    assert issubclass(zmws.ZmwsError, Exception)
    assert zmws.JobFailed("why").reason == "why"
    assert zmws.Timeout.__module__ == "zmws"


def test_broker_context_manager_binds_free_ports():
    with zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*",
                     heartbeat_ms=HEARTBEAT_MS, liveness=4, job_timeout_ms=5000,
                     max_attempts=2) as b:
        assert b.running
        for ep in (b.client_endpoint, b.worker_endpoint, b.news_endpoint):
            assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+", ep), ep
        assert len({b.client_endpoint, b.worker_endpoint, b.news_endpoint}) == 3
        assert b.heartbeat_ms == HEARTBEAT_MS
        with zmws.Client(b.client_endpoint) as c:
            assert c.workers() == []
            assert c.jobs("queued") == []
    assert not b.running
    assert b.client_endpoint == "tcp://127.0.0.1:*"
    b.stop()  # idempotent


def test_broker_bind_error():
    with zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None) as first:
        taken = first.client_endpoint
        second = zmws.Broker(taken, "tcp://127.0.0.1:*", None)
        with pytest.raises(zmws.IoError):
            second.start()
        assert not second.running


def test_broker_max_attempts():
    with zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None,
                     heartbeat_ms=HEARTBEAT_MS, max_attempts=2) as b:
        attempts = []

        def work(job_id, param):
            attempts.append(job_id)
            raise zmws.Retry("again")

        w = zmws.Worker(b.worker_endpoint, service="R", heartbeat_ms=HEARTBEAT_MS, work=work)
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        try:
            wait_registered(b, "R")
            with zmws.Client(b.client_endpoint) as c:
                with pytest.raises(zmws.JobFailed):
                    c.call("R", b"", timeout=10)
        finally:
            w.stop()
            t.join(timeout=5)
        assert len(attempts) == 2 and attempts[0] == attempts[1]


def test_broker_spin_us_serves_calls_and_refuses_a_too_long_spin():
    with pytest.raises(zmws.InvalidArgument, match="spin_us must be between 0 and 10000, not 10001"):
        zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None, spin_us=10_001)
    with zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None,
                     heartbeat_ms=HEARTBEAT_MS, spin_us=300) as b:
        w = zmws.Worker(b.worker_endpoint, service="spun", heartbeat_ms=HEARTBEAT_MS,
                        work=lambda job_id, param: param[::-1])
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        try:
            wait_registered(b, "spun")
            with zmws.Client(b.client_endpoint) as c:
                for i in range(20):
                    assert c.call("spun", b"ab%d" % i, timeout=10) == (b"ab%d" % i)[::-1]
        finally:
            w.stop()
            t.join(timeout=5)


@pytest.mark.parametrize("name, value", [
    ("heartbeat_ms", 0), ("heartbeat_ms", -1), ("heartbeat_ms", 10**12 + 1),
    ("liveness", 0), ("liveness", 2**32),
    ("job_timeout_ms", 0), ("job_timeout_ms", 2**64 - 1), ("job_timeout_ms", 2**200),
    ("max_attempts", 0), ("max_attempts", -1),
    ("result_ttl_ms", 0), ("max_payload", 0), ("max_queued", 2**40 + 1),
    ("max_finished", -1), ("history_len", -1), ("max_workers_per_service", 0),
    ("list_limit", -1), ("hwm", 0), ("hwm", 2**31), ("spin_us", -1),
])
def test_broker_checks_number_ranges_like_the_c_api(name, value):
    with pytest.raises(zmws.InvalidArgument,
                       match=rf"^{name} must be between \d+ and \d+, not {value}$"):
        zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None, **{name: value})


def test_broker_accepts_the_limits_and_refuses_non_integers():
    b = zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None, heartbeat_ms=10**12,
                    liveness=2**32 - 1, job_timeout_ms=1, max_attempts=1, history_len=0,
                    max_queued=2**40, hwm=2**31 - 1, spin_us=0, max_finished=None)
    assert b.heartbeat_ms == 10**12
    with pytest.raises(TypeError, match="max_attempts must be an integer"):
        zmws.Broker(max_attempts="3")


@pytest.mark.parametrize("name, value", [
    ("capacity", -1), ("capacity", 0), ("capacity", 2**32), ("heartbeat_ms", 0),
    ("heartbeat_ms", -1), ("liveness", 0), ("idle_after", 0), ("reconnect_ms", -1),
])
def test_worker_checks_number_ranges(broker, name, value):
    with pytest.raises(zmws.InvalidArgument,
                       match=rf"^{name} must be between \d+ and \d+, not {value}$"):
        zmws.Worker(broker.worker_endpoint, service="X", **{name: value})


def test_client_arguments(broker):
    with pytest.raises(zmws.InvalidArgument):
        zmws.Client([])
    with pytest.raises(zmws.InvalidArgument):
        zmws.Client("not-an-endpoint")
    c = zmws.Client(broker.client_endpoint, request_timeout=2.5)
    assert c.endpoints == [broker.client_endpoint]
    assert c.endpoint == broker.client_endpoint
    assert c.request_timeout == 2.5
    c.request_timeout = 1
    assert c.request_timeout == 1.0
    with pytest.raises(zmws.InvalidArgument):
        c.call("X", b"", timeout=-1)
    with pytest.raises(zmws.InvalidArgument):
        c.call("", b"")
    with pytest.raises(zmws.InvalidArgument):
        c.submit("x" * 256, b"")
    with pytest.raises(TypeError):
        c.call("X", b"", on_partial=42)
    assert not c.closed
    c.close()
    assert c.closed
    with pytest.raises(zmws.Closed):
        c.workers()
    c.close()


def test_setting_request_timeout_does_not_wait_for_a_running_call(broker, client, serve):
    started = threading.Event()

    def slow(job_id, param):
        started.set()
        time.sleep(1.5)
        return b"slow"

    serve(zmws.Worker(broker.worker_endpoint, service="SLOW", heartbeat_ms=HEARTBEAT_MS, work=slow))
    results = []
    t = threading.Thread(target=lambda: results.append(client.call("SLOW", b"", timeout=10)))
    t.start()
    try:
        assert started.wait(5)
        t0 = time.monotonic()
        client.request_timeout = 0.75
        assert time.monotonic() - t0 < 0.5
        assert client.request_timeout == 0.75
    finally:
        t.join(timeout=10)
    assert results == [b"slow"]
    # The next request runs with the new value.
    assert client.service_available("SLOW")


def test_map_refuses_a_single_str_or_bytes(client):
    for items in ("abc", b"ab", bytearray(b"ab"), memoryview(b"ab")):
        with pytest.raises(TypeError, match="items must be a sequence of payloads"):
            client.map("ECHO", items)
        with pytest.raises(TypeError, match="payloads must be a sequence of payloads"):
            client.submit_batch("ECHO", items)


def test_nan_and_infinity_are_not_sent_as_json(broker, client, serve):
    for bad in (float("nan"), float("inf"), {"x": float("-inf")}, [1.0, float("nan")]):
        with pytest.raises(zmws.InvalidArgument, match="cannot JSON-encode the payload: Out of range float"):
            client.call("ECHO", bad)
        with pytest.raises(zmws.InvalidArgument, match="cannot JSON-encode"):
            client.submit("ECHO", bad)
        with pytest.raises(zmws.InvalidArgument, match="cannot JSON-encode"):
            client.map("ECHO", [bad])
    serve(zmws.Worker(broker.worker_endpoint, service="NAN", heartbeat_ms=HEARTBEAT_MS,
                      work=lambda job_id, param: {"v": float("nan")}))
    with pytest.raises(zmws.JobFailed, match="cannot send: cannot JSON-encode"):
        client.call("NAN", b"", timeout=10)


def _dead_endpoint() -> str:
    # Nothing listens there (a broker may be started there later).
    return f"tcp://127.0.0.1:{unused_port()}"


def test_client_fails_over_to_the_next_endpoint(broker, serve):
    serve(zmws.Worker(broker.worker_endpoint, service="ECHO", heartbeat_ms=HEARTBEAT_MS,
                      work=lambda job_id, param: param))
    with zmws.Client([_dead_endpoint(), broker.client_endpoint], request_timeout=0.5) as c:
        job_id = c.submit("ECHO", b"via the second broker")
        assert c.endpoint == broker.client_endpoint
        assert len(job_id) == 32
    with zmws.Client(f"{_dead_endpoint()},{broker.client_endpoint}", request_timeout=0.5) as c:
        assert c.service_available("ECHO")
    # call and map fail over too.
    with zmws.Client([_dead_endpoint(), broker.client_endpoint], request_timeout=0.5) as c:
        assert c.call("ECHO", b"call", timeout=10) == b"call"
    with zmws.Client([_dead_endpoint(), broker.client_endpoint], request_timeout=0.5) as c:
        assert c.map("ECHO", [b"a", b"b"], timeout=10) == [b"a", b"b"]
    with zmws.Client([_dead_endpoint(), _dead_endpoint()], request_timeout=0.3) as c:
        with pytest.raises(zmws.Timeout):
            c.call("ECHO", b"", timeout=5)


def test_worker_needs_a_service(broker):
    with pytest.raises(zmws.InvalidArgument, match="service"):
        zmws.Worker(broker.worker_endpoint)

    class Forgetful(zmws.Worker):
        service = "FORGETFUL"

        def __init__(self):  # does not call super().__init__()
            self.ready = True

    w = Forgetful()
    with pytest.raises(zmws.InvalidArgument, match="super"):
        w.run()
    with pytest.raises(zmws.InvalidArgument):
        zmws.Worker(broker.worker_endpoint, service="X", capacity=0)
    with pytest.raises(zmws.InvalidArgument):
        zmws.Worker("bogus://endpoint", service="X")


def test_worker_properties_and_context_manager(broker):
    with zmws.Worker([broker.worker_endpoint], service="PROPS", capacity=2,
                     heartbeat_ms=HEARTBEAT_MS) as w:
        assert w.service == "PROPS"
        assert w.endpoints == [broker.worker_endpoint]
        assert w.connected and not w.stopped
        assert w.job_id is None and w.attempt is None and w.jobs_done == 0
        assert "PROPS" in repr(w)
        with pytest.raises(zmws.InvalidArgument, match="outside work"):
            w.partial(b"progress")
    assert w.stopped and not w.connected


def test_default_work_fails_the_job(broker, client, serve):
    serve(zmws.Worker(broker.worker_endpoint, service="PLAIN", heartbeat_ms=HEARTBEAT_MS))
    with pytest.raises(zmws.JobFailed, match="not implemented"):
        client.call("PLAIN", b"", timeout=10)


def test_exception_in_idle_ends_run(broker):
    class Broken(zmws.Worker):
        service = "BROKEN-IDLE"

        def idle(self):
            raise RuntimeError("idle broke")

    w = Broken(broker.worker_endpoint, heartbeat_ms=HEARTBEAT_MS, idle_after=1)
    with pytest.raises(RuntimeError, match="idle broke"):
        w.run()
    assert w.stopped and not w.connected


def test_one_client_shared_by_threads(broker, client, serve):
    serve(zmws.Worker(broker.worker_endpoint, service="SHARED", capacity=4,
                      heartbeat_ms=HEARTBEAT_MS, work=lambda job_id, param: param))
    results = {}
    errors = []

    def use(n):
        try:
            results[n] = [client.call("SHARED", f"{n}-{i}", timeout=10) for i in range(20)]
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=use, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and all(not t.is_alive() for t in threads)
    assert results == {n: [f"{n}-{i}".encode() for i in range(20)] for n in range(4)}


def test_durable_broker_keeps_jobs_across_restarts(tmp_path):
    kwargs = dict(heartbeat_ms=HEARTBEAT_MS, data_dir=str(tmp_path))
    with zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None, **kwargs) as b:
        with zmws.Worker(b.worker_endpoint, service="LATER", heartbeat_ms=HEARTBEAT_MS):
            wait_registered(b, "LATER")
            with zmws.Client(b.client_endpoint) as c:
                job_id = c.submit("LATER", {"keep": 1}, key="once")
                assert c.submit("LATER", {"keep": 1}, key="once") == job_id
                assert c.submit("LATER", {"keep": 1}) != job_id
    with zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None, **kwargs) as b:
        with zmws.Client(b.client_endpoint) as c:
            assert c.status(job_id)["state"] in ("queued", "active")


def test_one_broker_per_data_dir_and_concurrent_start_stop(tmp_path):
    kwargs = dict(heartbeat_ms=HEARTBEAT_MS, data_dir=str(tmp_path))
    with zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None, **kwargs):
        other = zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None, **kwargs)
        with pytest.raises(zmws.IoError, match="in use by another broker"):
            other.start()
    # One Broker object started and stopped from several threads at once:
    # starts and stops take turns, so none finds the store still held.
    b = zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None, **kwargs)
    errors = []

    def churn():
        try:
            for _ in range(5):
                b.start()
                b.stop()
        except Exception as e:  # noqa: BLE001 - collected for the assert
            errors.append(e)

    threads = [threading.Thread(target=churn) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    b.stop()
    assert not errors and all(not t.is_alive() for t in threads)


def test_programs_started_beside_open_sockets_inherit_none_of_them(broker, client, serve):
    """A child started with close_fds=False (as os.system or a seed worker's
    exec does) while a broker, a client and a worker are open gets none of
    libzmq's sockets, eventfds or epoll instances: the wheel's libzmq is
    compiled with its close-on-exec defines."""

    class Echo(zmws.Worker):
        service = "FDS"

        def work(self, job_id, param):
            return param

    serve(Echo(broker.worker_endpoint, heartbeat_ms=HEARTBEAT_MS))
    assert client.call("FDS", b"ping", timeout=10) == b"ping"
    listing = subprocess.run(
        ["sh", "-c", 'for f in /proc/$$/fd/*; do printf "%s %s\\n" "$f" "$(readlink "$f")"; done'],
        close_fds=False,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        check=True,
        timeout=30,
    ).stdout.decode()
    assert len(listing.splitlines()) >= 2, listing
    inherited = [l for l in listing.splitlines() if "socket:" in l or "anon_inode:" in l]
    assert not inherited, f"the child inherited libzmq descriptors: {inherited}\n{listing}"


FORK_SCRIPT = r'''
import os, sys, threading, time
import zmws

broker = zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None, heartbeat_ms=250)
broker.start()
endpoint = broker.client_endpoint
client = zmws.Client(endpoint)

class Echo(zmws.Worker):
    service = "FORKED"
    def work(self, job_id, param):
        if param == b"slow":
            time.sleep(1.5)
        return param

worker = Echo(broker.worker_endpoint, heartbeat_ms=250)
thread = threading.Thread(target=worker.run, daemon=True)
thread.start()
deadline = time.monotonic() + 20
while not client.service_available("FORKED") and time.monotonic() < deadline:
    time.sleep(0.02)
assert client.call("FORKED", b"before", timeout=10) == b"before"

# Another thread is inside a call on the same client when the fork happens
# (it holds the client's lock): the child must still be refused at once.
busy = threading.Thread(target=lambda: client.call("FORKED", b"slow", timeout=10), daemon=True)
busy.start()
time.sleep(0.3)
pid = os.fork()
if pid == 0:
    # The child: every inherited handle refuses with a message naming fork,
    # and the normal exit (finalizers included) must not hang.
    errors = []
    for what, use in [
        ("Client", lambda: client.submit("FORKED", b"x")),
        ("Worker", lambda: worker.loop(0.01)),
        ("Broker", broker.stop),
    ]:
        try:
            use()
            errors.append(f"{what}: no error in the forked child")
        except zmws.Closed as e:
            if "fork" not in str(e) or what not in str(e):
                errors.append(f"{what}: unclear message: {e}")
    # A handle made in the child works there.
    try:
        fresh = zmws.Client(endpoint)
        if fresh.call("FORKED", b"from the child", timeout=10) != b"from the child":
            errors.append("a new Client in the child got a wrong answer")
        fresh.close()
    except Exception as e:
        errors.append(f"a new Client in the child failed: {e!r}")
    print("child errors:", errors, flush=True)
    sys.exit(3 if errors else 0)

deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print("the forked child hung on exit", flush=True)
    sys.exit(4)
if os.waitstatus_to_exitcode(status) != 0:
    print("child exit status", os.waitstatus_to_exitcode(status), flush=True)
    sys.exit(5)
# The parent's handles are untouched.
busy.join(10)
assert client.call("FORKED", b"after", timeout=10) == b"after"
worker.stop()
thread.join(10)
client.close()
broker.stop()
print("ok", flush=True)
'''


def test_a_forked_child_is_refused_clearly_and_exits_without_hanging():
    """os.fork() with a broker, client and running worker open (as a PHP
    pcntl_fork or a Python pre-fork server does): the child's inherited
    handles raise Closed naming fork(), new handles work in the child, the
    child's normal exit does not hang on the parent's libzmq threads, and
    the parent goes on serving."""
    import sys

    run = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=90,
    )
    out = run.stdout.decode(errors="replace")
    assert run.returncode == 0 and out.strip().endswith("ok"), out


def test_worker_and_client_move_back_to_the_first_broker_when_it_returns(broker, serve):
    # The fixture's broker is the second of the list; the first is down.
    first_client, first_worker = _dead_endpoint(), _dead_endpoint()
    serve(zmws.Worker([first_worker, broker.worker_endpoint], service="FAILBACK",
                      heartbeat_ms=HEARTBEAT_MS, work=lambda job_id, param: param.upper()))
    with zmws.Client([first_client, broker.client_endpoint], request_timeout=0.5) as c:
        assert c.call("FAILBACK", b"on b", timeout=10) == b"ON B"
        assert c.endpoint == broker.client_endpoint
        first = zmws.Broker(first_client, first_worker, None, heartbeat_ms=HEARTBEAT_MS)
        first.start()
        try:
            deadline = time.monotonic() + 30
            # Every call is answered while the worker, then the client, move.
            while c.endpoint != first_client:
                assert time.monotonic() < deadline, "the client did not move back"
                assert c.call("FAILBACK", b"x", timeout=10) == b"X"
                time.sleep(0.02)
            with zmws.Client(first_client) as on_first:
                assert on_first.service_available("FAILBACK")
            with zmws.Client(broker.client_endpoint) as on_second:
                assert not on_second.service_available("FAILBACK")
                with pytest.raises(zmws.NoSuchService, match="moved to another broker"):
                    on_second.submit("FAILBACK", b"stray")
        finally:
            first.stop()
