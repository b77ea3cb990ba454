"""Jobs end to end: a Python broker, Python workers on threads, a client."""

from __future__ import annotations

import json
import re
import time

import pytest

import zmws

from conftest import HEARTBEAT_MS, stuck_worker, wait_until


class Reverse(zmws.Worker):
    """STR-REV with its own __init__, as a subclass may have."""

    service = "STR-REV"

    def __init__(self, endpoint: str, suffix: str = "") -> None:
        super().__init__(endpoint, heartbeat_ms=HEARTBEAT_MS)
        self.suffix = suffix
        self.seen: list = []

    def work(self, job_id, param):
        self.seen.append((job_id, param))
        return param["str"][::-1] + self.suffix


def test_round_trip_with_subclass_worker_in_thread(broker, client, serve):
    w = serve(Reverse(broker.worker_endpoint, suffix="!"))
    assert w.service == "STR-REV"
    assert client.call("STR-REV", {"str": "hello"}, timeout=10) == b"olleh!"
    job_id, param = w.seen[0]
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    assert param == {"str": "hello"}
    assert w.jobs_done == 1


def test_service_argument_and_work_callable(broker, client, serve):
    serve(zmws.Worker(broker.worker_endpoint, service="UPPER", heartbeat_ms=HEARTBEAT_MS,
                      work=lambda job_id, param: param.upper()))
    assert client.call("UPPER", b"abc", timeout=10) == b"ABC"


def test_async_submit_status_result(broker, client, serve):
    serve(Reverse(broker.worker_endpoint))
    job_id = client.submit("STR-REV", {"str": "async"})
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    assert wait_until(lambda: client.status(job_id)["state"] == "complete")
    status = client.status(job_id)
    assert status["job_id"] == job_id
    assert status["service"] == "STR-REV"
    assert status["attempts"] == 1
    assert status["result_bytes"] == 5
    assert client.result(job_id) == b"cnysa"
    assert any(j["job_id"] == job_id for j in client.jobs("history"))


def test_pending_cancel_and_listings(broker, client):
    with stuck_worker(broker, "SLOW") as w:
        first = client.submit("SLOW", b"one")
        second = client.submit("SLOW", b"two")
        # The worker holds one job (capacity 1); the other waits in the queue.
        assert wait_until(lambda: client.status(first)["state"] == "active")
        assert client.status(second)["state"] == "queued"
        with pytest.raises(zmws.Pending):
            client.result(first)
        assert [j["job_id"] for j in client.jobs("active")] == [first]
        assert [j["job_id"] for j in client.jobs("queued")] == [second]
        workers = client.workers()
        mine = [x for x in workers if x["service"] == "SLOW"]
        assert len(mine) == 1 and mine[0]["active_jobs"] == [first]
        client.cancel(second)
        assert client.status(second)["state"] == "cancelled"
        assert client.jobs("queued") == []
        assert w.connected
    with pytest.raises(zmws.NotFound):
        client.status("0" * 32)
    with pytest.raises(zmws.InvalidArgument):
        client.jobs("everything")


def test_failure_raises_job_failed_with_the_message(broker, client, serve):
    class Picky(zmws.Worker):
        service = "PICKY"

        def work(self, job_id, param):
            raise ValueError(f"cannot handle {param!r}")

    serve(Picky(broker.worker_endpoint, heartbeat_ms=HEARTBEAT_MS))
    with pytest.raises(zmws.JobFailed) as info:
        client.call("PICKY", b"xyz", timeout=10)
    assert info.value.reason == "cannot handle b'xyz'"
    assert str(info.value) == "cannot handle b'xyz'"
    assert isinstance(info.value, zmws.ZmwsError)
    assert info.value.code == 4

    job_id = client.submit("PICKY", {"a": 1})
    assert wait_until(lambda: client.status(job_id)["state"] == "failed")
    assert client.status(job_id)["failure"] == "cannot handle {'a': 1}"
    with pytest.raises(zmws.JobFailed, match="cannot handle"):
        client.result(job_id)


def test_retryable_failure_runs_again(broker, client, serve):
    class Flaky(zmws.Worker):
        service = "FLAKY"

        def work(self, job_id, param):
            if self.attempt < 2:
                raise zmws.Retry("try again")
            return f"attempt {self.attempt}"

    serve(Flaky(broker.worker_endpoint, heartbeat_ms=HEARTBEAT_MS))
    assert client.call("FLAKY", b"", timeout=10) == b"attempt 2"


def test_timeout_raises_timeout(broker, client):
    with stuck_worker(broker, "STUCK"):
        started = time.monotonic()
        with pytest.raises(zmws.Timeout):
            client.call("STUCK", b"never answered", timeout=0.3)
        assert 0.25 < time.monotonic() - started < 3


def test_unknown_service_raises_no_such_service(client):
    with pytest.raises(zmws.NoSuchService):
        client.call("NOBODY", b"", timeout=5)
    with pytest.raises(zmws.NoSuchService):
        client.submit("NOBODY", b"")


def test_submit_batch_returns_ids_in_input_order(broker, client, serve):
    serve(zmws.Worker(broker.worker_endpoint, service="ECHO-REV", heartbeat_ms=HEARTBEAT_MS,
                      work=lambda job_id, param: param if isinstance(param, dict) else param[::-1]))
    payloads = [b"one", b"two", b"", b"four", bytearray(b"five")]
    ids = client.submit_batch("ECHO-REV", payloads)
    assert isinstance(ids, list) and len(ids) == len(payloads)
    assert all(isinstance(i, str) and re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    for job_id, payload in zip(ids, payloads):
        assert wait_until(lambda: client.status(job_id)["state"] == "complete", timeout=10)
        assert client.result(job_id) == bytes(payload)[::-1]
        assert client.status(job_id)["service"] == "ECHO-REV"
    # Any iterable of payloads, converted like submit's (str as UTF-8, dicts as JSON).
    ids = client.submit_batch("ECHO-REV", (p for p in ["abc", {"a": 1}]))
    assert len(ids) == 2
    assert wait_until(lambda: client.status(ids[1])["state"] == "complete", timeout=10)
    assert client.result(ids[0]) == b"cba"
    assert json.loads(client.result(ids[1])) == {"a": 1}


def test_submit_batch_of_the_maximum_size(broker, client, serve):
    serve(zmws.Worker(broker.worker_endpoint, service="COUNT", heartbeat_ms=HEARTBEAT_MS,
                      work=lambda job_id, param: param))
    ids = client.submit_batch("COUNT", [str(i).encode() for i in range(10_000)])
    assert len(ids) == len(set(ids)) == 10_000
    assert wait_until(lambda: client.status(ids[-1])["state"] == "complete", timeout=60)
    assert client.result(ids[1234]) == b"1234"
    with pytest.raises(zmws.InvalidArgument, match="at most 10000"):
        client.submit_batch("COUNT", [b"x"] * 10_001)


def test_submit_batch_errors(broker, client):
    assert client.submit_batch("NOBODY", []) == []  # nothing sent, so no error
    with pytest.raises(zmws.NoSuchService, match="NOBODY"):
        client.submit_batch("NOBODY", [b"a", b"b"])
    with pytest.raises(zmws.InvalidArgument):
        client.submit_batch("", [b"a"])
    with pytest.raises(TypeError):
        client.submit_batch("ANY", b"abc")  # one bytes object is not a list of payloads
    with pytest.raises(TypeError):
        client.submit_batch("ANY", "abc")
    with pytest.raises(TypeError):
        client.submit_batch("ANY", [b"ok", object()])
    with pytest.raises(TypeError):
        client.submit_batch("ANY", 42)
    client.close()
    with pytest.raises(zmws.Closed):
        client.submit_batch("ANY", [b"a"])
    with pytest.raises(zmws.Closed):
        client.submit_batch("ANY", [])


def test_submit_batch_is_all_or_nothing():
    with zmws.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None, heartbeat_ms=HEARTBEAT_MS,
                     max_queued=3, max_payload=8) as b:
        with zmws.Client(b.client_endpoint) as c:
            with stuck_worker(b, "LIMITED"):
                pass  # the service is now known; its worker is gone
            assert wait_until(lambda: not c.service_available("LIMITED"))
            with pytest.raises(zmws.QueueFull):
                c.submit_batch("LIMITED", [b"a", b"b", b"c", b"d"])
            assert c.jobs("queued") == []
            with pytest.raises(zmws.TooLarge):
                c.submit_batch("LIMITED", [b"a", b"123456789"])
            assert c.jobs("queued") == []
            ids = c.submit_batch("LIMITED", [b"a", b"b", b"c"])
            assert [j["job_id"] for j in c.jobs("queued")] == ids


def test_map_of_1000_items_in_order(broker, client, serve):
    for _ in range(2):
        serve(zmws.Worker(broker.worker_endpoint, service="SQUARE", heartbeat_ms=HEARTBEAT_MS,
                          work=lambda job_id, param: int(param) ** 2))
    results = client.map("SQUARE", (str(i) for i in range(1000)), timeout=60)
    assert results == [str(i * i).encode() for i in range(1000)]


def test_map_failures(broker, client, serve):
    def work(job_id, param):
        if param["n"] % 3 == 0:
            raise RuntimeError(f"no multiples of 3: {param['n']}")
        return param["n"]

    serve(zmws.Worker(broker.worker_endpoint, service="NO3", heartbeat_ms=HEARTBEAT_MS, work=work))
    items = [{"n": n} for n in (1, 2, 3, 4, 6)]
    with pytest.raises(zmws.JobFailed) as info:
        client.map("NO3", items, timeout=30)
    assert info.value.index == 2 and "3" in info.value.reason
    out = client.map("NO3", items, timeout=30, return_exceptions=True)
    assert out[:2] == [b"1", b"2"] and out[3] == b"4"
    assert isinstance(out[2], zmws.JobFailed) and out[2].index == 2
    assert isinstance(out[4], zmws.JobFailed) and out[4].reason == "no multiples of 3: 6"
    assert client.map("NO3", [], timeout=5) == []


def test_partial_replies_reach_on_partial(broker, client, serve):
    class Progress(zmws.Worker):
        service = "PROGRESS"

        def work(self, job_id, param):
            for pct in (25, 50, 75):
                self.partial(f"{pct}%")
            self.partial({"done": True})
            return b"finished"

    serve(Progress(broker.worker_endpoint, heartbeat_ms=HEARTBEAT_MS))
    seen = []
    assert client.call("PROGRESS", b"", timeout=10, on_partial=seen.append) == b"finished"
    assert seen == [b"25%", b"50%", b"75%", b'{"done":true}']
    # Without a callback partials are simply dropped.
    assert client.call("PROGRESS", b"", timeout=10) == b"finished"


def test_exception_in_on_partial_propagates(broker, client, serve):
    class Chatty(zmws.Worker):
        service = "CHATTY"

        def work(self, job_id, param):
            self.partial(b"hello")
            time.sleep(0.2)
            return b"done"

    serve(Chatty(broker.worker_endpoint, heartbeat_ms=HEARTBEAT_MS))

    def explode(data):
        raise KeyError(data)

    with pytest.raises(KeyError):
        client.call("CHATTY", b"", timeout=10, on_partial=explode)
    # The client is still usable afterwards.
    assert client.call("CHATTY", b"", timeout=10) == b"done"


def test_payload_and_result_conversions(broker, client, serve):
    def describe(job_id, param):
        # Echo what work() received; the payload tells which result type to return.
        if isinstance(param, dict):
            kind = param.get("return")
            values = {"none": None, "true": True, "int": 42, "float": 1.5, "list": [1, "a"],
                      "dict": {"k": "v"}, "str": "héllo", "bytes": b"\x00\xff",
                      "bytearray": bytearray(b"ba")}
            if kind in values:
                return values[kind]
            return {"type": "dict", "value": param}
        return {"type": type(param).__name__, "value": param.decode("utf-8", "replace")}

    serve(zmws.Worker(broker.worker_endpoint, service="DESCRIBE", heartbeat_ms=HEARTBEAT_MS, work=describe))

    def call(payload):
        return client.call("DESCRIBE", payload, timeout=10)

    assert json.loads(call({"a": 1})) == {"type": "dict", "value": {"a": 1}}
    assert json.loads(call(b"raw\x01")) == {"type": "bytes", "value": "raw\x01"}
    assert json.loads(call("text é")) == {"type": "bytes", "value": "text é"}
    assert json.loads(call([1, 2])) == {"type": "bytes", "value": "[1,2]"}
    assert json.loads(call(b' {"spaced": true}')) == {"type": "dict", "value": {"spaced": True}}
    assert json.loads(call(b"{not json")) == {"type": "bytes", "value": "{not json"}
    assert json.loads(call(memoryview(b"mv"))) == {"type": "bytes", "value": "mv"}
    assert json.loads(call(None)) == {"type": "bytes", "value": ""}
    assert call({"return": "none"}) == b""
    assert call({"return": "true"}) == b"true"
    assert call({"return": "int"}) == b"42"
    assert call({"return": "float"}) == b"1.5"
    assert call({"return": "list"}) == b'[1,"a"]'
    assert call({"return": "dict"}) == b'{"k":"v"}'
    assert call({"return": "str"}) == "héllo".encode()
    assert call({"return": "bytes"}) == b"\x00\xff"
    assert call({"return": "bytearray"}) == b"ba"


def test_unsendable_result_fails_the_job(broker, client, serve):
    serve(zmws.Worker(broker.worker_endpoint, service="ODD", heartbeat_ms=HEARTBEAT_MS,
                      work=lambda job_id, param: object()))
    with pytest.raises(zmws.JobFailed, match="cannot send"):
        client.call("ODD", b"", timeout=10)


def test_idle_hook_runs(broker, serve):
    class Sleepy(zmws.Worker):
        service = "SLEEPY"

        def __init__(self, endpoint):
            super().__init__(endpoint, heartbeat_ms=HEARTBEAT_MS, idle_after=1)
            self.idles = 0

        def idle(self):
            self.idles += 1

    w = serve(Sleepy(broker.worker_endpoint))
    assert wait_until(lambda: w.idles >= 2, timeout=5)


def test_unsupported_payload_type_is_a_type_error(client):
    with pytest.raises(TypeError):
        client.submit("ANY", object())
