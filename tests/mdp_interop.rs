//! Stock Majordomo peers written in this file from the RFC text — RFC 7
//! (MDP/0.1), RFC 18 (MDP/0.2), RFC 8 (MMI), RFC 9 (Titanic) — on plain
//! libzmq REQ/DEALER sockets, talking to the broker. None of zmws's own
//! client or worker code is on these paths (zmws::Client is used only to
//! wait for registrations).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const HB: Duration = Duration::from_millis(250);

fn json(frame: &[u8]) -> Value {
    serde_json::from_slice(frame).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(frame)))
}

fn ready_worker(b: &TestBroker, version: Mdp, service: &str) -> RawWorker {
    let mut w = RawWorker::connect(&b.worker_ep, version, HB);
    w.ready(service);
    let mut c = b.client();
    let ws = eventually(&format!("raw worker for '{service}' registered"), LONG, || {
        let ws = c.workers().ok()?;
        ws.into_iter().find(|x| x.worker == hex(&w.identity))
    });
    assert_eq!(ws.service, service);
    assert_eq!(ws.protocol, if version == Mdp::V1 { "0.1" } else { "0.2" });
    assert_eq!(ws.capacity, 1, "a stock worker holds one job at a time");
    w
}

#[test]
fn v01_client_to_v02_worker() {
    let b = start_broker(config());
    let mut w = ready_worker(&b, Mdp::V2, "upper-a");
    for client in [RawClient::v1_req(&b.client_ep), RawClient::v1_dealer(&b.client_ep)] {
        client.send("upper-a", &["hello", "world"]);
        let (addr, body) = w.expect_request();
        assert!(is_job_id(&addr), "the envelope is a 32-hex job id: {}", text(&addr));
        assert_eq!(body, [b"hello".to_vec(), b"world".to_vec()], "multi-frame body passes through unchanged");
        let upper: Vec<Vec<u8>> = body.iter().map(|f| f.to_ascii_uppercase()).collect();
        w.reply(&addr, &upper.iter().map(|f| f.as_slice()).collect::<Vec<_>>());
        let r = client.recv(LONG).expect("REPLY");
        assert!(r.is_final);
        assert_eq!(r.service, b"upper-a");
        assert_eq!(r.body, [b"HELLO".to_vec(), b"WORLD".to_vec()]);
    }
}

#[test]
fn v02_client_to_v01_worker() {
    let b = start_broker(config());
    let mut w = ready_worker(&b, Mdp::V1, "rev-b");
    let client = RawClient::v2(&b.client_ep);
    for round in 0..3 {
        let payload = format!("abc{round}");
        client.send("rev-b", &[payload.as_str()]);
        let (addr, body) = w.expect_request();
        assert!(is_job_id(&addr));
        assert_eq!(body, [payload.as_bytes().to_vec()]);
        let rev: Vec<u8> = body[0].iter().rev().copied().collect();
        w.reply(&addr, &[&rev]);
        let r = client.recv(LONG).expect("FINAL");
        assert!(r.is_final, "a 0.1 worker's REPLY reaches a 0.2 client as FINAL");
        assert_eq!(r.service, b"rev-b");
        assert_eq!(r.body, [rev]);
    }
    // An empty body travels as one empty frame (RFC: frames 3+ / 5+ are the body).
    client.send("rev-b", &[] as &[&[u8]]);
    let (addr, body) = w.expect_request();
    assert_eq!(body, [Vec::<u8>::new()]);
    w.reply(&addr, &[b""]);
    assert_eq!(client.recv(LONG).unwrap().body, [Vec::<u8>::new()]);
}

#[test]
fn v02_partials_reach_v02_client_before_final_and_v01_client_gets_only_final() {
    let b = start_broker(config());
    let mut w = ready_worker(&b, Mdp::V2, "stream");
    let client = RawClient::v2(&b.client_ep);
    client.send("stream", &["go"]);
    let (addr, _) = w.expect_request();
    // Lock-step: each PARTIAL is seen by the client before the worker sends more.
    for i in 0..3 {
        let p = format!("part {i}");
        w.partial(&addr, &[p.as_str()]);
        let r = client.recv(LONG).expect("PARTIAL forwarded while the job runs");
        assert!(!r.is_final, "got FINAL where PARTIAL {i} was expected");
        assert_eq!(r.service, b"stream");
        assert_eq!(r.body, [p.into_bytes()]);
    }
    w.reply(&addr, &["done", "2nd frame"]);
    let r = client.recv(LONG).expect("FINAL");
    assert!(r.is_final);
    assert_eq!(r.body, [b"done".to_vec(), b"2nd frame".to_vec()]);
    // RFC 18: nothing follows FINAL.
    assert!(client.recv(Duration::from_millis(100)).is_none());

    // MDP/0.1 has no PARTIAL: such a client gets just the final reply.
    let old = RawClient::v1_req(&b.client_ep);
    old.send("stream", &["go"]);
    let (addr, _) = w.expect_request();
    w.partial(&addr, &["ignored for 0.1"]);
    w.reply(&addr, &["final only"]);
    let r = old.recv(LONG).expect("REPLY");
    assert_eq!(r.body, [b"final only".to_vec()]);
}

#[test]
fn job_id_in_worker_envelope_is_queryable_via_zmws_status() {
    let b = start_broker(config());
    let mut w = ready_worker(&b, Mdp::V2, "env");
    let client = RawClient::v1_req(&b.client_ep);
    let admin = RawClient::v2(&b.client_ep);
    client.send("env", &["payload!"]);
    let (addr, _) = w.expect_request();
    assert!(is_job_id(&addr), "{}", text(&addr));
    let st = admin.request("zmws.status", &[&addr]);
    assert_eq!(st.len(), 1, "status is one JSON frame: {st:?}");
    let v = json(&st[0]);
    assert_eq!(v["job_id"].as_str().unwrap().as_bytes(), addr.to_ascii_lowercase().as_slice());
    assert_eq!(v["state"], "active");
    assert_eq!(v["service"], "env");
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["payload_bytes"], 8);
    assert_eq!(v["worker"], hex(&w.identity), "status names the worker holding the job");
    // The job is in the active listing too.
    let active = json(&admin.request_str("zmws.jobs", &["active"])[0]);
    assert!(active.as_array().unwrap().iter().any(|j| j["job_id"].as_str().unwrap().as_bytes() == addr.as_slice()));

    w.reply(&addr, &["ok"]);
    assert_eq!(client.recv(LONG).unwrap().body, [b"ok".to_vec()]);
    let v = json(&admin.request("zmws.status", &[&addr])[0]);
    assert_eq!(v["state"], "complete");
    assert_eq!(v["result_bytes"], 2);
    assert_eq!(admin.request("zmws.result", &[&addr]), [b"200".to_vec(), b"ok".to_vec()]);
}

#[test]
fn worker_disconnect_mid_job_requeues_it_to_another_worker() {
    let b = start_broker(config());
    let mut w1 = ready_worker(&b, Mdp::V1, "hand-off");
    let client = RawClient::v2(&b.client_ep);
    client.send("hand-off", &["x"]);
    let (addr1, _) = w1.expect_request();
    let mut w2 = ready_worker(&b, Mdp::V2, "hand-off");
    w1.disconnect();
    let (addr2, body) = w2.expect_request();
    assert_eq!(addr2, addr1, "the same job, requeued");
    assert_eq!(body, [b"x".to_vec()]);
    // RFC 7: after DISCONNECT the broker sends that worker nothing more.
    w2.reply(&addr2, &["from w2"]);
    assert_eq!(client.recv(LONG).unwrap().body, [b"from w2".to_vec()]);
    assert!(w1.recv(Duration::from_millis(300)).is_none(), "nothing is sent to a disconnected worker");
    let st = json(&client.request("zmws.status", &[&addr1])[0]);
    assert_eq!(st["attempts"], 2);
    assert_eq!(st["worker"], hex(&w2.identity));
}

#[test]
fn a_busy_stock_worker_is_kept_while_silent_and_found_when_its_connection_drops() {
    // zguide's mdwrkapi sends nothing while it works. The broker does not
    // take that silence for death (a long job must be able to finish), but a
    // worker whose connection is gone is purged at the next heartbeat the
    // broker cannot deliver, long before the silence window (3 × 2.5 s).
    let b = start_broker(fast_config()); // heartbeat 100 ms
    let mut w1 = ready_worker(&b, Mdp::V1, "long-job");
    let client = RawClient::v2(&b.client_ep);
    client.send("long-job", &["x"]);
    let (addr1, _) = w1.expect_request();
    // Silent for 10 heartbeats while "working": still registered, and its
    // late reply is the job's result.
    std::thread::sleep(Duration::from_millis(1000));
    w1.reply(&addr1, &["from w1"]);
    assert_eq!(client.recv(LONG).unwrap().body, [b"from w1".to_vec()]);

    client.send("long-job", &["y"]);
    let (addr2, _) = w1.expect_request();
    let mut w2 = ready_worker(&b, Mdp::V2, "long-job");
    w1.sock.set_linger(0).unwrap();
    let dropped = Instant::now();
    drop(w1); // the process "dies": its connection closes, nothing is said
    let (addr, body) = w2.expect_request();
    assert_eq!((addr.clone(), body), (addr2, vec![b"y".to_vec()]), "the same job runs on w2");
    assert!(
        dropped.elapsed() < Duration::from_secs(5),
        "found by the undeliverable heartbeat, not the 7.5 s silence window: {:?}",
        dropped.elapsed()
    );
    w2.reply(&addr, &["from w2"]);
    assert_eq!(client.recv(LONG).unwrap().body, [b"from w2".to_vec()]);
}

#[test]
fn mmi_service_answers_200_404_and_other_mmi_501() {
    let b = start_broker(config());
    let mut w = ready_worker(&b, Mdp::V2, "mmi-live");
    for client in [RawClient::v1_req(&b.client_ep), RawClient::v2(&b.client_ep)] {
        assert_eq!(client.request_str("mmi.service", &["mmi-live"]), [b"200".to_vec()]);
        assert_eq!(client.request_str("mmi.service", &["never-offered"]), [b"404".to_vec()]);
        assert_eq!(client.request_str("mmi.service", &[]), [b"404".to_vec()]);
        for other in ["mmi.foo", "mmi.services", "mmi."] {
            let body = client.request_str(other, &["x"]);
            assert_eq!(body[0], b"501", "{other}: {body:?}");
        }
    }
    // A known service with no live worker is "not found" for MMI.
    w.disconnect();
    let client = RawClient::v2(&b.client_ep);
    eventually("mmi.service says 404 once the only worker left", LONG, || {
        (client.request_str("mmi.service", &["mmi-live"]) == [b"404".to_vec()]).then_some(())
    });
}

#[test]
fn workers_offering_reserved_services_get_disconnect() {
    let b = start_broker(config());
    // RFC 8: mmi.* must be refused; zmws reserves its own namespaces too.
    for version in [Mdp::V1, Mdp::V2] {
        for service in ["mmi.foo", "zmws.foo", "titanic.request", "SERVER-X", "SYNC-foo", "SYNC:foo"] {
            let mut w = RawWorker::connect(&b.worker_ep, version, HB);
            w.ready(service);
            assert!(w.wait_disconnect(LONG), "{version:?} worker READY for '{service}' gets DISCONNECT");
        }
    }
    let mut c = b.client();
    assert!(c.workers().unwrap().is_empty(), "none of them was registered");

    // RFC 7/18: a valid but unexpected command gets DISCONNECT …
    for version in [Mdp::V1, Mdp::V2] {
        let mut w = RawWorker::connect(&b.worker_ep, version, HB);
        w.heartbeat(); // before READY
        assert!(w.wait_disconnect(LONG), "{version:?} HEARTBEAT before READY gets DISCONNECT");
        // … and so does a second READY (the worker MUST NOT send one).
        let mut w = ready_worker(&b, version, "twice");
        w.ready("twice");
        assert!(w.wait_disconnect(LONG), "{version:?} second READY gets DISCONNECT");
    }
}

#[test]
fn titanic_request_reply_close() {
    let b = start_broker(config());
    let mut w = RawWorker::connect(&b.worker_ep, Mdp::V2, HB);
    w.ready("tsp");
    let mut c = b.client();
    wait_workers(&mut c, "tsp", 1);
    for client in [RawClient::v1_req(&b.client_ep), RawClient::v2(&b.client_ep)] {
        let r = client.request_str("titanic.request", &["tsp", "body-1", "body-2"]);
        assert_eq!(r.len(), 2, "[status, uuid]: {r:?}");
        assert_eq!(r[0], b"200");
        assert!(is_job_id(&r[1]), "UUID is 32 hex: {}", text(&r[1]));
        let id = text(&r[1]);

        // The worker has it but has not answered: pending.
        let (addr, body) = w.expect_request();
        assert_eq!(text(&addr), id);
        assert_eq!(body, [b"body-1".to_vec(), b"body-2".to_vec()]);
        let pending = client.request_str("titanic.reply", &[&id]);
        assert_eq!(pending[0], b"300", "{pending:?}");

        w.reply(&addr, &["result-1", "result-2"]);
        let ok = eventually("titanic.reply 200", LONG, || {
            let r = client.request_str("titanic.reply", &[&id]);
            (r[0] == b"200").then_some(r)
        });
        assert_eq!(ok, [b"200".to_vec(), b"result-1".to_vec(), b"result-2".to_vec()]);
        // Idempotent: asking again gives the same reply.
        assert_eq!(client.request_str("titanic.reply", &[&id]), ok);
        // Upper-case UUIDs are UUIDs too (RFC 9 allows A-Z).
        assert_eq!(client.request_str("titanic.reply", &[&id.to_ascii_uppercase()]), ok);

        assert_eq!(client.request_str("titanic.close", &[&id]), [b"200".to_vec()]);
        assert_eq!(client.request_str("titanic.reply", &[&id])[0], b"400", "closed → unknown");
        assert_eq!(client.request_str("titanic.close", &[&id]), [b"200".to_vec()], "close is idempotent");
    }
    let client = RawClient::v2(&b.client_ep);
    assert_eq!(client.request_str("titanic.reply", &["0123456789abcdef0123456789abcdef"])[0], b"400");
    assert_eq!(client.request_str("titanic.reply", &["not-a-uuid"])[0], b"400");
    assert_eq!(client.request_str("titanic.close", &["0123456789abcdef0123456789abcdef"]), [b"200".to_vec()]);
    // A request for a service never offered cannot be stored: status 500 (RFC 9 codes only).
    assert_eq!(client.request_str("titanic.request", &["never-offered", "x"])[0], b"500");

    // A failed job reads as 500 (zmws FAIL extension from the worker).
    let r = client.request_str("titanic.request", &["tsp", "will fail"]);
    let id = text(&r[1]);
    let (addr, _) = w.expect_request();
    w.send_cmd(0x10, &[&addr, b"", b"0", b"bad luck"]);
    let failed = eventually("titanic.reply 500", LONG, || {
        let r = client.request_str("titanic.reply", &[&id]);
        (r[0] != b"300").then_some(r)
    });
    assert_eq!(failed[0], b"500", "{failed:?}");

    // Closing a still-pending request forgets (cancels) it: the next worker never sees it.
    let r = client.request_str("titanic.request", &["tsp", "first"]);
    let (addr, _) = w.expect_request(); // worker busy with "first"
    let r2 = client.request_str("titanic.request", &["tsp", "second"]);
    assert_eq!(client.request_str("titanic.close", &[&text(&r2[1])]), [b"200".to_vec()]);
    w.reply(&addr, &["r"]);
    assert!(w.next_request(Duration::from_millis(300)).is_none(), "closed request is not run");
    assert_eq!(client.request_str("titanic.reply", &[&text(&r[1])])[0], b"200");
}

#[test]
fn zmws_services_and_aliases_from_raw_clients() {
    let b = start_broker(config());
    let mut w = RawWorker::connect(&b.worker_ep, Mdp::V1, HB);
    w.ready("zs");
    let mut c = b.client();
    wait_workers(&mut c, "zs", 1);
    let v1 = RawClient::v1_req(&b.client_ep);
    let v2 = RawClient::v2(&b.client_ep);

    // zmws.submit → [job_id], at once.
    let r = v1.request_str("zmws.submit", &["zs", "p1"]);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(is_job_id(&r[0]));
    let id1 = text(&r[0]);
    let (addr, body) = w.expect_request();
    assert_eq!(text(&addr), id1);
    assert_eq!(body, [b"p1".to_vec()]);
    let id2 = text(&v2.request_str("zmws.submit", &["SYNC:zs", "p2"])[0]);
    assert!(is_job_id(id2.as_bytes()));

    // zmws.status / zmws.result while running and queued.
    let s1 = json(&v2.request_str("zmws.status", &[&id1])[0]);
    assert_eq!(s1["state"], "active");
    let s2 = json(&v1.request_str("zmws.status", &[&id2])[0]);
    assert_eq!(s2["state"], "queued");
    assert_eq!(s2["service"], "zs", "SYNC: prefix is stripped");
    assert_eq!(v2.request_str("zmws.result", &[&id1])[0], b"300");

    // Listings and their seed aliases.
    let ids_of = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap().to_string()).collect()
    };
    let queued = json(&v2.request_str("zmws.jobs", &["queued"])[0]);
    assert_eq!(ids_of(&queued), std::slice::from_ref(&id2));
    assert_eq!(
        ids_of(&json(&v2.request_str("zmws.jobs", &[""])[0])),
        std::slice::from_ref(&id2),
        "empty kind = queued"
    );
    assert_eq!(json(&v1.request_str("SERVER-JOBS", &[""])[0]), queued);
    let active = json(&v2.request_str("zmws.jobs", &["active"])[0]);
    assert_eq!(ids_of(&active), std::slice::from_ref(&id1));
    assert_eq!(json(&v1.request_str("SERVER-ACTIVE", &[""])[0]), active);
    let strip = |v: Value| -> Vec<(Value, Value, Value)> {
        v.as_array().unwrap().iter().map(|w| (w["worker"].clone(), w["service"].clone(), w["state"].clone())).collect()
    };
    let workers = json(&v2.request_str("zmws.workers", &[""])[0]);
    assert_eq!(strip(workers.clone()), strip(json(&v1.request_str("SERVER-WORKERS", &[""])[0])));
    assert_eq!(strip(workers), [(Value::from(hex(&w.identity)), Value::from("zs"), Value::from("busy"))]);

    // zmws.cancel a queued job.
    assert_eq!(v2.request_str("zmws.cancel", &[&id2]), [b"200".to_vec()]);
    assert_eq!(json(&v2.request_str("zmws.status", &[&id2])[0])["state"], "cancelled");
    assert_eq!(v2.request_str("zmws.result", &[&id2])[0], b"500");

    // Finish id1; history has both, newest first.
    w.reply(&addr, &["r1"]);
    let r = eventually("result of id1", LONG, || {
        let r = v2.request_str("zmws.result", &[&id1]);
        (r[0] == b"200").then_some(r)
    });
    assert_eq!(r, [b"200".to_vec(), b"r1".to_vec()]);
    let hist = json(&v2.request_str("zmws.jobs", &["history"])[0]);
    assert_eq!(ids_of(&hist), [id1.clone(), id2.clone()]);
    assert_eq!(json(&v1.request_str("SERVER-HIST", &[""])[0]), hist);

    // Error replies: [status, message].
    let unknown = "0123456789abcdef0123456789abcdef";
    for (service, body, code) in [
        ("zmws.status", unknown, "404"),
        ("zmws.result", unknown, "404"),
        ("zmws.cancel", unknown, "404"),
        ("zmws.cancel", id1.as_str(), "409"),
        ("zmws.jobs", "bogus", "400"),
        ("zmws.nothing", "", "501"),
        ("zmws.submit", "", "400"),
        ("zmws.submit", "never-offered", "404"),
    ] {
        let r = v2.request_str(service, &[body]);
        assert_eq!(r.len(), 2, "{service} {body}: {r:?}");
        assert_eq!(text(&r[0]), code, "{service} {body}: {}", text(&r[1]));
        assert!(!r[1].is_empty(), "error replies carry a message");
    }

    // SYNC- / SYNC: mean the same as the bare name, for workers' services
    // and for zmws.* / mmi.* alike; the reply echoes the name as sent.
    for prefix in ["SYNC-", "SYNC:"] {
        let name = format!("{prefix}zs");
        v1.send(&name, &["via prefix"]);
        let (addr, body) = w.expect_request();
        assert_eq!(body, [b"via prefix".to_vec()]);
        w.reply(&addr, &["answered"]);
        let r = v1.recv(LONG).unwrap();
        assert_eq!(r.service, name.as_bytes());
        assert_eq!(r.body, [b"answered".to_vec()]);
        let st = json(&v2.request_str(&format!("{prefix}zmws.status"), &[&id1])[0]);
        assert_eq!(st["job_id"], id1.as_str());
        assert_eq!(v2.request_str(&format!("{prefix}mmi.service"), &["zs"]), [b"200".to_vec()]);
        assert_eq!(json(&v2.request_str(&format!("{prefix}zmws.jobs"), &["history"])[0])[0]["service"], "zs");
    }
}

#[test]
fn v01_worker_with_an_extension_frame_keeps_capacity_one() {
    // docs/PROTOCOL.md: the capacity extension is "only for MDPW02 workers".
    let b = start_broker(config());
    let mut w = RawWorker::connect(&b.worker_ep, Mdp::V1, HB);
    w.send_cmd(0x01, &[b"cap-v1", b"zmws:1 capacity=3"]);
    let mut c = b.client();
    let info = wait_workers(&mut c, "cap-v1", 1).remove(0);
    assert_eq!(info.protocol, "0.1");
    assert_eq!(info.capacity, 1, "an MDP/0.1 worker cannot announce capacity");
}

/// RFC 7/18: after a DISCONNECT the worker reconnects on a new socket. A
/// stock worker may use a fixed routing identity; re-registering under the
/// same identity for another service must not bring it its old service's jobs.
#[test]
fn a_reused_identity_registered_for_another_service_never_gets_old_service_jobs() {
    let b = start_broker(config());
    let mut c = b.client();
    let mut w = RawWorker::connect(&b.worker_ep, Mdp::V2, HB);
    let identity = w.identity.clone();
    w.ready("svc-old");
    wait_workers(&mut c, "svc-old", 1);
    w.disconnect();
    wait_workers(&mut c, "svc-old", 0);
    drop(w);

    // New socket, same identity, another service. (Retried until the
    // broker's ROUTER has let go of the old connection's identity.)
    let mut w2 = None;
    for _ in 0..20 {
        let s = ctx().socket(zmq::DEALER).unwrap();
        s.set_linger(0).unwrap();
        s.set_identity(&identity).unwrap();
        s.connect(&b.worker_ep).unwrap();
        s.send_multipart([&b"MDPW02"[..], &[0x01], b"svc-new"], 0).unwrap();
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(500) {
            if c.workers().unwrap().iter().any(|x| x.worker == hex(&identity) && x.service == "svc-new") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if c.workers().unwrap().iter().any(|x| x.worker == hex(&identity) && x.service == "svc-new") {
            w2 = Some(s);
            break;
        }
    }
    let w2 = w2.expect("re-registered under the same identity for 'svc-new'");

    // A job for the old service (known, no live worker) must wait in its queue.
    let id = c.submit("svc-old", b"for the old service").unwrap().to_string();
    let mut got = None;
    if w2.poll(zmq::POLLIN, 300).unwrap() > 0 {
        let frames = w2.recv_multipart(0).unwrap();
        if frames.get(1).map(|f| f.as_slice()) == Some(&[0x02][..]) {
            got = Some(frames);
        }
    }
    assert!(got.is_none(), "a worker registered for 'svc-new' was sent a 'svc-old' job: {got:?}");
    assert_eq!(c.status(&id).unwrap().state, zmws::JobState::Queued);
}

#[test]
fn binary_and_large_multi_frame_bodies_pass_through_unchanged() {
    let b = start_broker(config());
    let mut w = ready_worker(&b, Mdp::V2, "bin");
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let big: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let body: Vec<&[u8]> = vec![&all_bytes, b"", &big, b"\0\0"];
    for client in [RawClient::v2(&b.client_ep), RawClient::v1_req(&b.client_ep), RawClient::v2_req(&b.client_ep)] {
        client.send("bin", &body);
        let (addr, got) = w.expect_request();
        assert_eq!(got.len(), 4);
        assert!(
            got[0] == all_bytes && got[1].is_empty() && got[2] == big && got[3] == b"\0\0",
            "request body changed in transit"
        );
        let mut back = got.clone();
        back.reverse();
        w.reply(&addr, &back);
        let r = client.recv(LONG).expect("reply");
        assert!(r.is_final);
        assert_eq!(r.body, back, "reply body changed in transit");
    }
}
