"""The GIL is released while waiting; stop(), Ctrl-C and SIGTERM end waits promptly."""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import zmws

from conftest import HEARTBEAT_MS, stuck_worker, wait_until


class Ticker:
    """A Python thread counting while the test waits elsewhere."""

    def __init__(self) -> None:
        self.count = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.running:
            self.count += 1
            time.sleep(0.001)

    def __enter__(self) -> "Ticker":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join(timeout=5)


def test_other_thread_runs_while_call_waits(broker, client, serve):
    serve(zmws.Worker(broker.worker_endpoint, service="NAP", heartbeat_ms=HEARTBEAT_MS,
                      work=lambda job_id, param: time.sleep(0.6) or b"rested"))
    with Ticker() as ticker:
        before = ticker.count
        assert client.call("NAP", b"", timeout=10) == b"rested"
        during = ticker.count - before
    # ~600 ticks if the thread ran freely; 0 if the call held the GIL.
    assert during > 50, f"ticker advanced only {during} times during the call"


def test_other_thread_runs_while_call_times_out(broker, client):
    with stuck_worker(broker, "STUCK"), Ticker() as ticker:
        with pytest.raises(zmws.Timeout):
            client.call("STUCK", b"", timeout=0.5)
        assert ticker.count > 50


def test_idle_worker_thread_does_not_stall_other_threads(broker, serve):
    serve(zmws.Worker(broker.worker_endpoint, service="QUIET", heartbeat_ms=HEARTBEAT_MS,
                      work=lambda job_id, param: b""))
    # 100 short sleeps take ~0.1 s; a worker holding the GIL in its 100 ms
    # waits would stretch each of them towards 100 ms.
    started = time.monotonic()
    for _ in range(100):
        time.sleep(0.001)
    assert time.monotonic() - started < 2.0


def test_stop_from_another_thread_ends_run(broker):
    w = zmws.Worker(broker.worker_endpoint, service="STOPME", heartbeat_ms=HEARTBEAT_MS)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    w.stop()
    t.join(timeout=5)
    assert not t.is_alive()
    assert time.monotonic() - started < 1.0
    assert w.stopped and not w.connected
    w.run()  # a stopped worker returns at once
    assert w.loop() is False


def test_stop_inside_work_and_loop_steps(broker, client):
    class Once(zmws.Worker):
        service = "ONCE"

        def work(self, job_id, param):
            self.stop()
            return b"last"

    w = Once(broker.worker_endpoint, heartbeat_ms=HEARTBEAT_MS)
    assert w.loop(0.05) is True  # nothing to do yet
    job_id = client.submit("ONCE", b"")
    steps = 0
    while w.loop(0.1):
        steps += 1
        assert steps < 100, "loop() never saw the job"
    assert client.result(job_id) == b"last"
    assert not w.connected
    assert w.jobs_done == 1


def test_worker_requeues_unfinished_jobs_when_closed(broker, client, serve):
    with stuck_worker(broker, "HANDOVER"):
        job_id = client.submit("HANDOVER", b"x")
        assert wait_until(lambda: client.status(job_id)["state"] == "active")
    # The stuck worker disconnected: a working one finishes the job.
    serve(zmws.Worker(broker.worker_endpoint, service="HANDOVER", heartbeat_ms=HEARTBEAT_MS,
                      work=lambda job_id, param: b"done by the second"))
    assert wait_until(lambda: client.status(job_id)["state"] == "complete", timeout=10)
    assert client.result(job_id) == b"done by the second"


# --- signals, in subprocesses we start and always reap -------------------

PRELUDE = """
import signal, sys, time
# A parent started in the background may leave SIGINT ignored, and Python
# then keeps it ignored: restore the usual KeyboardInterrupt handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
import zmws
"""


def spawn(script: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )


def read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """Reads the child's output until a line contains `marker` (bounded)."""
    seen = ""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while marker not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no {marker!r} from the child within {timeout} s; output: {seen!r}")
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"child exited before {marker!r}; output: {seen!r}")
            seen += line
    finally:
        sel.close()
    return seen


def signal_and_wait(proc: subprocess.Popen, signum: int, limit: float) -> tuple:
    started = time.monotonic()
    proc.send_signal(signum)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("child did not exit within 10 s of the signal")
    elapsed = time.monotonic() - started
    assert elapsed < limit, f"child took {elapsed:.2f} s to exit"
    return proc.returncode, out


@pytest.fixture
def reap():
    procs = []
    yield procs.append
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


def test_keyboard_interrupt_ends_run(broker, reap):
    proc = spawn(f"""
        w = zmws.Worker({broker.worker_endpoint!r}, service="SIGINT", heartbeat_ms={HEARTBEAT_MS})
        print("ready", flush=True)
        try:
            w.run()
        except KeyboardInterrupt:
            print("interrupted", w.stopped, w.connected, flush=True)
            sys.exit(3)
        print("returned", flush=True)
    """)
    reap(proc)
    read_until(proc, "ready", 30)
    time.sleep(0.3)  # let run() reach its wait
    code, out = signal_and_wait(proc, signal.SIGINT, 3.0)
    assert code == 3, out
    assert "interrupted True False" in out


def test_keyboard_interrupt_inside_work_ends_run_and_requeues(broker, client, reap):
    proc = spawn(f"""
        class Slow(zmws.Worker):
            service = "SIGINT-WORK"
            def work(self, job_id, param):
                print("working", flush=True)
                time.sleep(60)
        w = Slow({broker.worker_endpoint!r}, heartbeat_ms={HEARTBEAT_MS})
        try:
            w.run()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
    """)
    reap(proc)
    assert wait_until(lambda: client.service_available("SIGINT-WORK"), timeout=30)
    job_id = client.submit("SIGINT-WORK", b"")
    read_until(proc, "working", 10)
    code, out = signal_and_wait(proc, signal.SIGINT, 3.0)
    assert code == 3 and "interrupted" in out
    # The unanswered job went back to the queue, not to "failed".
    assert wait_until(lambda: client.status(job_id)["state"] == "queued")


def test_sigterm_stops_run(broker, reap):
    proc = spawn(f"""
        w = zmws.Worker({broker.worker_endpoint!r}, service="SIGTERM", heartbeat_ms={HEARTBEAT_MS})
        print("ready", flush=True)
        w.run()
        print("returned", w.stopped, flush=True)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    """)
    reap(proc)
    read_until(proc, "ready", 30)
    time.sleep(0.3)
    code, out = signal_and_wait(proc, signal.SIGTERM, 3.0)
    assert code == 0, out
    assert "returned True" in out


def test_keyboard_interrupt_interrupts_a_blocking_call(broker, reap):
    with stuck_worker(broker, "FOREVER"):
        proc = spawn(f"""
            c = zmws.Client({broker.client_endpoint!r})
            print("ready", flush=True)
            try:
                c.call("FOREVER", b"", timeout=60)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                # The client keeps working after an interrupted call.
                print("status", c.jobs("active")[0]["state"], flush=True)
                sys.exit(3)
        """)
        reap(proc)
        read_until(proc, "ready", 30)
        time.sleep(0.5)  # let the call reach its wait
        code, out = signal_and_wait(proc, signal.SIGINT, 3.0)
        assert code == 3, out
        assert "interrupted" in out and "status active" in out


def test_broker_run_ends_on_keyboard_interrupt(reap):
    proc = spawn("""
        b = zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None)
        b.start()
        print("ready", b.client_endpoint, flush=True)
        try:
            b.run()
        except KeyboardInterrupt:
            print("interrupted", b.running, flush=True)
    """)
    reap(proc)
    read_until(proc, "ready", 30)
    time.sleep(0.3)
    code, out = signal_and_wait(proc, signal.SIGINT, 3.0)
    assert code == 0, out
    assert "interrupted False" in out


def test_sigterm_ends_broker_run(reap):
    proc = spawn("""
        b = zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None)
        b.start()
        print("ready", flush=True)
        b.run()
        print("returned", b.running, flush=True)
    """)
    reap(proc)
    read_until(proc, "ready", 30)
    time.sleep(0.3)
    code, out = signal_and_wait(proc, signal.SIGTERM, 3.0)
    assert code == 0, out
    assert "returned False" in out


def test_worker_in_thread_keeps_heartbeating_while_work_runs(broker, client, serve):
    # work() outlasts several broker liveness periods (3 x 250 ms); the I/O
    # thread's heartbeats keep the worker alive, so the job is not requeued.
    serve(zmws.Worker(broker.worker_endpoint, service="LONG", heartbeat_ms=HEARTBEAT_MS,
                      work=lambda job_id, param: time.sleep(1.5) or b"long done"))
    job_id = client.submit("LONG", b"")
    assert client.call("LONG", b"", timeout=15) == b"long done"
    assert wait_until(lambda: client.status(job_id)["state"] == "complete")
    assert client.status(job_id)["attempts"] == 1


def test_exit_with_daemon_threads_still_in_native_waits(broker, reap):
    # Daemon threads blocked in run(), call() and map() when the program
    # ends must not crash the interpreter's exit (CPython < 3.14 would
    # pthread_exit them inside native code).
    with stuck_worker(broker, "EXIT-STUCK"):
        proc = spawn(f"""
            import threading
            def serve():
                zmws.Worker({broker.worker_endpoint!r}, service="EXIT-ECHO",
                            heartbeat_ms={HEARTBEAT_MS}, work=lambda j, p: p).run()
            def wait_forever():
                zmws.Client({broker.client_endpoint!r}).call("EXIT-STUCK", b"", timeout=60)
            def map_many():
                c = zmws.Client({broker.client_endpoint!r})
                while True:
                    try:
                        c.map("EXIT-ECHO", [b"x"] * 500, timeout=60)
                    except zmws.NoSuchService:
                        time.sleep(0.01)
            for target in (serve, wait_forever, map_many):
                threading.Thread(target=target, daemon=True).start()
            time.sleep(0.5)
            print("leaving", flush=True)
        """)
        reap(proc)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("the child did not exit")
        assert proc.returncode == 0, out
        assert "leaving" in out and "FATAL" not in out
