//! Jobs through zmws's own Client and Worker over real sockets on loopback:
//! sync and async jobs, refusals, limits, cancel, timeouts and retries, load
//! sharing, batches, JSON views and job events.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use zmws::{BrokerConfig, Error, JobList, JobState, WorkerConfig};

fn echo_upper(job: &zmws::Job) -> Result<Vec<u8>, String> {
    Ok(job.payload.to_ascii_uppercase())
}

#[test]
fn sync_call_and_async_submit_status_result() {
    let b = start_broker(config());
    let _w = b.spawn_worker("upper", echo_upper);
    let mut c = b.client();
    wait_workers(&mut c, "upper", 1);

    // Sync.
    let r = c.call("upper", b"hello", LONG).expect("sync call");
    assert_eq!(r, b"HELLO");
    // The SYNC- / SYNC: prefixes mean the same service.
    assert_eq!(c.call("SYNC-upper", b"a", LONG).unwrap(), b"A");
    assert_eq!(c.call("SYNC:upper", b"b", LONG).unwrap(), b"B");
    // Empty payload.
    assert_eq!(c.call("upper", b"", LONG).unwrap(), b"");

    // Async: submit returns an id at once, status and result follow.
    let id = c.submit("upper", b"async job").expect("submit");
    let id_s = id.to_string();
    assert!(is_job_id(id_s.as_bytes()), "job id {id_s}");
    let st = eventually("async job completes", LONG, || {
        let st = c.status(&id_s).expect("status");
        (st.state == JobState::Complete).then_some(st)
    });
    assert_eq!(st.job_id, id_s);
    assert_eq!(st.service, "upper");
    assert_eq!(st.attempts, 1);
    assert!(st.worker.is_some());
    assert!(st.finished_ms.is_some() && st.started_ms.is_some());
    assert_eq!(st.payload_bytes, 9);
    assert_eq!(st.result_bytes, Some(9));
    assert_eq!(c.result(&id_s).expect("result"), b"ASYNC JOB");
    // Results stay queryable: asking twice gives the same answer.
    assert_eq!(c.result(&id_s).expect("result again"), b"ASYNC JOB");

    // Ids are time-ordered.
    let id2 = c.submit("upper", b"x").unwrap();
    assert!(id2 > id, "later job ids sort after earlier ones");

    // Unknown ids.
    let unknown = "0123456789abcdef0123456789abcdef";
    assert!(matches!(c.status(unknown), Err(Error::NotFound(_))), "{:?}", c.status(unknown));
    assert!(matches!(c.result(unknown), Err(Error::NotFound(_))));
    // Not a job id at all: a bad argument, not an unknown job.
    for malformed in ["nothex", "0123456789abcdef", "0123456789abcdef0123456789abcdeg"] {
        assert!(
            matches!(c.status(malformed), Err(Error::InvalidArgument(_))),
            "{malformed}: {:?}",
            c.status(malformed)
        );
        assert!(matches!(c.result(malformed), Err(Error::InvalidArgument(_))), "{malformed}");
        assert!(matches!(c.cancel(malformed), Err(Error::InvalidArgument(_))), "{malformed}");
    }
    b.stop().expect("broker loop ends cleanly");
}

#[test]
fn pending_result_then_complete_and_partials_stream() {
    let b = start_broker(config());
    // A worker driven by hand from this test: it holds the job until told.
    let w = zmws::Worker::with_config(b.worker_config("held")).unwrap();
    let mut c = b.client();
    wait_workers(&mut c, "held", 1);

    let id = c.submit("held", b"p").unwrap().to_string();
    let job = w.next_job(LONG).unwrap().expect("job delivered");
    assert_eq!(job.id, id, "the worker sees the job id the client got");
    assert_eq!(job.attempt, 1);
    assert_eq!(job.payload, b"p");
    assert!(matches!(c.result(&id), Err(Error::Pending(_))));
    assert_eq!(c.status(&id).unwrap().state, JobState::Active);
    w.complete(&job.id, b"done").unwrap();
    eventually("result available", LONG, || c.result(&id).ok().filter(|r| r == b"done"));
    assert_eq!(w.jobs_done(), 1);

    // call_with_partials: the partials arrive, in order, before the result.
    let worker_side = std::thread::spawn(move || {
        let job = w.next_job(LONG).unwrap().expect("second job");
        for p in ["10%", "50%", "90%"] {
            w.partial(&job.id, p.as_bytes()).unwrap();
        }
        w.complete(&job.id, b"final").unwrap();
        w
    });
    let mut seen = Vec::new();
    let r = c
        .call_with_partials("held", b"q", LONG, &mut |p| seen.push(String::from_utf8_lossy(p).into_owned()))
        .expect("call with partials");
    assert_eq!(r, b"final");
    assert_eq!(seen, ["10%", "50%", "90%"]);
    drop(worker_side.join().unwrap());
}

#[test]
fn never_seen_service_is_refused_at_once() {
    let b = start_broker(config());
    let mut c = b.client();
    let t = Instant::now();
    match c.call("never-offered", b"x", LONG) {
        Err(Error::NoSuchService(m)) => assert!(m.contains("never-offered"), "message names the service: {m}"),
        other => panic!("expected NoSuchService, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5), "refused at once, not after a wait: {:?}", t.elapsed());
    assert!(matches!(c.submit("never-offered", b"x"), Err(Error::NoSuchService(_))));
    assert!(matches!(c.call("SYNC-never-offered", b"x", LONG), Err(Error::NoSuchService(_))));
    let rs = c.batch("never-offered", &[b"1", b"2"], LONG).unwrap();
    assert_eq!(rs.len(), 2);
    assert!(rs.iter().all(|r| matches!(r, Err(Error::NoSuchService(_)))), "{rs:?}");
    assert!(!c.service_available("never-offered").unwrap());

    // The same refusal as a stock MDP client sees it: ["404", message].
    for raw in [RawClient::v2(&b.client_ep), RawClient::v1_req(&b.client_ep), RawClient::v1_dealer(&b.client_ep)] {
        let body = raw.request(b"never-offered", &[b"x"]);
        assert_eq!(body.len(), 2, "error replies are [status, message]: {body:?}");
        assert_eq!(body[0], b"404");
        assert!(text(&body[1]).contains("never-offered"), "{}", text(&body[1]));
    }
}

#[test]
fn timeout_retry_then_failure_and_sync_client_is_told() {
    let b = start_broker(config().job_timeout(Duration::from_millis(300)).max_attempts(2));
    // Two workers that take jobs and never answer (they do heartbeat).
    let w1 = zmws::Worker::with_config(b.worker_config("stuck")).unwrap();
    let w2 = zmws::Worker::with_config(b.worker_config("stuck")).unwrap();
    let mut c = b.client();
    wait_workers(&mut c, "stuck", 2);

    let t = Instant::now();
    let err = c.call("stuck", b"never answered", LONG).expect_err("the job must fail");
    let elapsed = t.elapsed();
    match &err {
        Error::JobFailed(m) => {
            assert!(m.contains("2 attempt"), "reason counts the attempts: {m}");
            assert!(m.contains("timed out"), "reason says why: {m}");
        }
        other => panic!("expected JobFailed, got {other:?}"),
    }
    assert!(elapsed >= Duration::from_millis(550), "two 300 ms attempts cannot fail sooner: {elapsed:?}");

    // Each worker got one attempt of the same job, numbered 1 and 2.
    let j1 = w1.next_job(Duration::from_secs(2)).unwrap().expect("first attempt");
    let j2 = w2.next_job(Duration::from_secs(2)).unwrap().expect("second attempt");
    assert_eq!(j1.id, j2.id);
    let mut attempts = [j1.attempt, j2.attempt];
    attempts.sort();
    assert_eq!(attempts, [1, 2]);
    let st = c.status(&j1.id).unwrap();
    assert_eq!(st.state, JobState::Failed);
    assert_eq!(st.attempts, 2);
    assert_eq!(st.max_attempts, 2);
    assert!(st.failure.as_deref().unwrap_or("").contains("timed out"));
    assert!(matches!(c.result(&j1.id), Err(Error::JobFailed(_))));
    // A late answer to a given-up attempt is ignored.
    w1.complete(&j1.id, b"too late").unwrap();
    w2.complete(&j2.id, b"too late").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(c.status(&j1.id).unwrap().state, JobState::Failed);

    // A stock MDP client doing a sync request gets ["500", reason], not a hang.
    let raw = RawClient::v2(&b.client_ep);
    let t = Instant::now();
    let body = raw.request(b"stuck", &[b"again"]);
    assert_eq!(body.len(), 2, "{body:?}");
    assert_eq!(body[0], b"500");
    assert!(text(&body[1]).contains("timed out"), "{}", text(&body[1]));
    assert!(t.elapsed() >= Duration::from_millis(550));
    // Both workers are free again (they answered), so they got the retries.
    for w in [&w1, &w2] {
        let j = w.next_job(Duration::from_secs(2)).unwrap().expect("attempt of the raw client's job");
        assert_eq!(j.payload, b"again");
    }
}

#[test]
fn worker_fail_ends_job_unless_retryable() {
    let b = start_broker(config().max_attempts(3));
    let w = zmws::Worker::with_config(b.worker_config("flaky")).unwrap();
    let mut c = b.client();
    wait_workers(&mut c, "flaky", 1);

    // Non-retryable FAIL: ends the job at once with the worker's reason.
    let id = c.submit("flaky", b"1").unwrap().to_string();
    let j = w.next_job(LONG).unwrap().unwrap();
    w.fail(&j.id, "bad input", false).unwrap();
    let st = eventually("job failed", LONG, || c.status(&id).ok().filter(|s| s.state == JobState::Failed));
    assert_eq!(st.attempts, 1);
    assert_eq!(st.failure.as_deref(), Some("bad input"));
    match c.result(&id) {
        Err(Error::JobFailed(m)) => assert!(m.contains("bad input"), "{m}"),
        other => panic!("{other:?}"),
    }

    // Retryable FAIL: runs again (attempt 2), then completes.
    let id = c.submit("flaky", b"2").unwrap().to_string();
    let j = w.next_job(LONG).unwrap().unwrap();
    assert_eq!(j.attempt, 1);
    w.fail(&j.id, "try later", true).unwrap();
    let j = w.next_job(LONG).unwrap().expect("retried");
    assert_eq!((j.id.as_str(), j.attempt), (id.as_str(), 2));
    w.complete(&j.id, b"ok").unwrap();
    assert_eq!(eventually("result", LONG, || c.result(&id).ok()), b"ok");

    // A sync caller sees a worker's FAIL as JobFailed.
    let caller = std::thread::spawn({
        let ep = b.client_ep.clone();
        move || zmws::Client::connect(&ep).unwrap().call("flaky", b"3", LONG)
    });
    let j = w.next_job(LONG).unwrap().unwrap();
    w.fail(&j.id, "no way", false).unwrap();
    match caller.join().unwrap() {
        Err(Error::JobFailed(m)) => assert!(m.contains("no way"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn third_worker_joining_a_run_of_1000_slow_jobs_gets_its_share_at_once() {
    const N: usize = 1000;
    let b = start_broker(config());
    let slow = |job: &zmws::Job| {
        std::thread::sleep(Duration::from_millis(5));
        Ok(job.payload.clone())
    };
    let w1 = b.spawn_worker("slow", slow);
    let w2 = b.spawn_worker("slow", slow);
    let mut c = b.client();
    wait_workers(&mut c, "slow", 2);

    let ep = b.client_ep.clone();
    let run = std::thread::spawn(move || {
        let payloads: Vec<String> = (0..N).map(|i| i.to_string()).collect();
        let mut c = zmws::Client::connect(&ep).unwrap();
        c.batch("slow", &payloads, Duration::from_secs(120)).unwrap()
    });

    eventually("the first two workers are well into the run", LONG * 3, || {
        (w1.jobs_done() + w2.jobs_done() >= 150).then_some(())
    });
    let done_at_join = (w1.jobs_done() + w2.jobs_done()) as usize;
    let joined = Instant::now();
    let w3 = b.spawn_worker("slow", slow);
    eventually("the third worker's first job", LONG, || (w3.jobs_done() >= 1).then_some(()));
    let first_job_after = joined.elapsed();
    let done_by_others = (w1.jobs_done() + w2.jobs_done()) as usize;
    assert!(
        done_by_others + 100 < N,
        "the third worker got work while the queue was still long ({done_by_others} of {N} done by the others)"
    );
    assert!(first_job_after < Duration::from_secs(5), "first job {first_job_after:?} after joining");

    // The broker's listing shows it taking jobs.
    let listed = eventually("listing shows the third worker with jobs done", LONG, || {
        let ws = c.workers().ok()?;
        let mut ws: Vec<_> = ws.into_iter().filter(|w| w.service == "slow").collect();
        ws.sort_by_key(|w| w.connected_ms);
        (ws.len() == 3 && ws[2].jobs_done >= 1).then(|| ws.pop().unwrap())
    });
    assert_eq!(listed.capacity, 1);

    let results = run.join().unwrap();
    assert_eq!(results.len(), N);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.as_ref().expect("job ok"), i.to_string().as_bytes(), "result {i}");
    }
    let (d1, d2, d3) = (w1.jobs_done() as usize, w2.jobs_done() as usize, w3.jobs_done() as usize);
    assert_eq!(d1 + d2 + d3, N, "every job ran exactly once");
    let remaining = N - done_at_join;
    assert!(
        d3 * 6 >= remaining,
        "the third worker's share ({d3}) is at least half of a fair third of the {remaining} jobs left when it joined (others {d1}, {d2})"
    );
}

#[test]
fn batch_of_10000_returns_results_in_input_order() {
    const N: usize = 10_000;
    let b = start_broker(config());
    let mut workers = Vec::new();
    for _ in 0..2 {
        let mut cfg = b.worker_config("sq");
        cfg.capacity = 8;
        workers.push(TestWorker::spawn(cfg, |job| {
            let n: u64 = std::str::from_utf8(&job.payload).unwrap().parse().unwrap();
            Ok(format!("{n}:{}", n * n).into_bytes())
        }));
    }
    let mut c = b.client();
    wait_workers(&mut c, "sq", 2);
    let payloads: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let t = Instant::now();
    let results = c.batch("sq", &payloads, Duration::from_secs(120)).expect("batch");
    let took = t.elapsed();
    assert_eq!(results.len(), N);
    for (i, r) in results.iter().enumerate() {
        let want = format!("{i}:{}", (i as u64) * (i as u64));
        assert_eq!(r.as_ref().unwrap_or_else(|e| panic!("job {i}: {e}")), want.as_bytes(), "result {i} out of order");
    }
    let done: u64 = workers.iter().map(|w| w.jobs_done()).sum();
    assert_eq!(done, N as u64, "each job ran once");
    eprintln!("10,000-job batch took {took:?}");
}

#[test]
fn limits_too_large_queue_full_and_cancel_of_queued_job() {
    let mut cfg = config();
    cfg.engine.max_payload = 1024;
    cfg.engine.max_queued = 3;
    let b = start_broker(cfg);
    let mut c = b.client();

    // Make "lim" a known service with no live worker: READY then DISCONNECT.
    let mut raw = RawWorker::connect(&b.worker_ep, Mdp::V2, Duration::from_secs(1));
    raw.ready("lim");
    raw.disconnect();
    eventually("service 'lim' is known", LONG, || {
        let v: Value = serde_json::from_str(&c.services_json().ok()?).ok()?;
        v.as_array()?.iter().any(|s| s["service"] == "lim" && s["workers"] == 0).then_some(())
    });
    assert!(!c.service_available("lim").unwrap(), "no live worker: mmi.service says 404");

    // Payload over the limit: TooLarge (checked before the queue limit).
    let big = vec![b'x'; 2048];
    assert!(matches!(c.submit("lim", &big), Err(Error::TooLarge(_))), "{:?}", c.submit("lim", &big));
    assert!(matches!(c.call("lim", &big, LONG), Err(Error::TooLarge(_))));
    let raw_c = RawClient::v2(&b.client_ep);
    assert_eq!(raw_c.request("lim", &[&big])[0], b"413");

    // A known service without workers queues; the fourth job is refused.
    let exact = vec![b'y'; 1024];
    let ids: Vec<String> = (0..3)
        .map(|i| c.submit("lim", if i == 0 { &exact[..] } else { &b"q"[..] }).expect("queued").to_string())
        .collect();
    assert!(matches!(c.submit("lim", b"4"), Err(Error::QueueFull(_))), "{:?}", c.submit("lim", b"4"));
    assert!(matches!(c.call("lim", b"4", LONG), Err(Error::QueueFull(_))));
    assert_eq!(raw_c.request_str("zmws.submit", &["lim", "4"])[0], b"503");
    let queued: Vec<String> = c.jobs(JobList::Queued).unwrap().into_iter().map(|j| j.job_id).collect();
    assert_eq!(queued, ids, "queued listing, oldest first");

    // Cancel a queued job: it is final at once and frees a queue slot.
    c.cancel(&ids[1]).expect("cancel queued job");
    let st = c.status(&ids[1]).unwrap();
    assert_eq!(st.state, JobState::Cancelled);
    assert_eq!(st.attempts, 0);
    assert!(st.finished_ms.is_some());
    assert!(matches!(c.result(&ids[1]), Err(Error::JobFailed(_))));
    c.cancel(&ids[1]).expect("cancelling twice is harmless");
    let extra = c.submit("lim", b"after cancel").expect("a slot was freed").to_string();
    assert!(matches!(c.submit("lim", b"5"), Err(Error::QueueFull(_))));
    assert!(matches!(c.cancel("0123456789abcdef0123456789abcdef"), Err(Error::NotFound(_))));

    // A worker joining runs the queued jobs but never the cancelled one.
    let (tx, rx) = mpsc::channel();
    let _w = b.spawn_worker("lim", move |job| {
        tx.send(job.id.clone()).unwrap();
        Ok(b"r".to_vec())
    });
    for id in [&ids[0], &ids[2], &extra] {
        eventually("queued job completes", LONG, || c.status(id).ok().filter(|s| s.state == JobState::Complete));
    }
    let ran: Vec<String> = rx.try_iter().collect();
    assert_eq!(ran.len(), 3, "{ran:?}");
    assert!(!ran.contains(&ids[1]), "the cancelled job was not run");
    assert_eq!(c.status(&ids[1]).unwrap().state, JobState::Cancelled);
    // Cancelling a finished job is refused (409 → InvalidArgument).
    assert!(matches!(c.cancel(&ids[0]), Err(Error::InvalidArgument(_))));
}

#[test]
fn max_workers_per_service_disconnects_the_extra_worker() {
    let mut cfg = config();
    cfg.engine.max_workers_per_service = 1;
    let b = start_broker(cfg);
    let mut c = b.client();
    let mut w1 = RawWorker::connect(&b.worker_ep, Mdp::V2, Duration::from_millis(500));
    w1.ready("one");
    wait_workers(&mut c, "one", 1);
    let mut w2 = RawWorker::connect(&b.worker_ep, Mdp::V2, Duration::from_millis(500));
    w2.ready("one");
    assert!(w2.wait_disconnect(LONG), "the extra worker is told DISCONNECT");
    let ws = wait_workers(&mut c, "one", 1);
    assert_eq!(ws[0].worker, hex(&w1.identity));
}

fn assert_type(v: &Value, key: &str, want: &str) {
    let got = &v[key];
    let ok = match want {
        "string" => got.is_string(),
        "u64" => got.is_u64(),
        "string|null" => got.is_string() || got.is_null(),
        "u64|null" => got.is_u64() || got.is_null(),
        "array" => got.is_array(),
        "null" => got.is_null(),
        _ => unreachable!(),
    };
    assert!(ok, "'{key}' should be {want}, is {got} in {v}");
}

fn check_status_shape(v: &Value) {
    assert!(v.is_object(), "{v}");
    for (k, t) in [
        ("job_id", "string"),
        ("service", "string"),
        ("state", "string"),
        ("attempts", "u64"),
        ("max_attempts", "u64"),
        ("worker", "string|null"),
        ("created_ms", "u64"),
        ("started_ms", "u64|null"),
        ("finished_ms", "u64|null"),
        ("failure", "string|null"),
        ("payload_bytes", "u64"),
        ("result_bytes", "u64|null"),
    ] {
        assert_type(v, k, t);
    }
    assert!(is_job_id(v["job_id"].as_str().unwrap().as_bytes()));
    let state = v["state"].as_str().unwrap();
    assert!(["queued", "active", "complete", "failed", "cancelled"].contains(&state), "{state}");
}

fn check_worker_shape(v: &Value) {
    for (k, t) in [
        ("worker", "string"),
        ("service", "string"),
        ("state", "string"),
        ("capacity", "u64"),
        ("active_jobs", "array"),
        ("jobs_done", "u64"),
        ("protocol", "string"),
        ("connected_ms", "u64"),
        ("last_seen_ms", "u64"),
    ] {
        assert_type(v, k, t);
    }
    assert!(["idle", "busy"].contains(&v["state"].as_str().unwrap()), "{v}");
    assert!(["0.1", "0.2"].contains(&v["protocol"].as_str().unwrap()), "{v}");
    assert!(v["active_jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j.as_str().map(|s| is_job_id(s.as_bytes())).unwrap_or(false)));
    let w = v["worker"].as_str().unwrap();
    assert!(!w.is_empty() && w.bytes().all(|b| b.is_ascii_hexdigit()), "worker identity is hex: {w}");
}

#[test]
fn json_shapes_of_status_jobs_workers() {
    let b = start_broker(config());
    let w = zmws::Worker::with_config(b.worker_config("shape")).unwrap();
    let mut c = b.client();
    wait_workers(&mut c, "shape", 1);
    let parse = |s: String| -> Value { serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}")) };

    let j1 = c.submit("shape", b"abc").unwrap().to_string();
    eventually("j1 active", LONG, || c.status(&j1).ok().filter(|s| s.state == JobState::Active));
    let j2 = c.submit("shape", b"de").unwrap().to_string();

    let s1 = parse(c.status_json(&j1).unwrap());
    check_status_shape(&s1);
    assert_eq!(s1["state"], "active");
    assert_eq!(s1["job_id"], j1.as_str());
    assert_eq!(s1["service"], "shape");
    assert_eq!(s1["attempts"], 1);
    assert!(s1["worker"].is_string() && s1["started_ms"].is_u64());
    assert!(s1["finished_ms"].is_null() && s1["result_bytes"].is_null() && s1["failure"].is_null());
    assert_eq!(s1["payload_bytes"], 3);

    let s2 = parse(c.status_json(&j2).unwrap());
    check_status_shape(&s2);
    assert_eq!(s2["state"], "queued");
    assert_eq!(s2["attempts"], 0);
    assert!(s2["worker"].is_null() && s2["started_ms"].is_null());

    let queued = parse(c.jobs_json(JobList::Queued).unwrap());
    let active = parse(c.jobs_json(JobList::Active).unwrap());
    for (list, id) in [(&queued, &j2), (&active, &j1)] {
        let arr = list.as_array().expect("listing is a JSON array");
        arr.iter().for_each(check_status_shape);
        assert_eq!(arr.len(), 1, "{list}");
        assert_eq!(arr[0]["job_id"], id.as_str());
    }

    let workers = parse(c.workers_json().unwrap());
    let arr = workers.as_array().expect("workers is a JSON array");
    assert_eq!(arr.len(), 1);
    check_worker_shape(&arr[0]);
    assert_eq!(arr[0]["state"], "busy");
    assert_eq!(arr[0]["service"], "shape");
    assert_eq!(arr[0]["protocol"], "0.2");
    assert_eq!(arr[0]["active_jobs"], serde_json::json!([j1]));
    assert_eq!(s1["worker"], arr[0]["worker"], "status names the worker as the listing does");

    // Finish j1 (complete) and j2 (failed).
    let job = w.next_job(LONG).unwrap().unwrap();
    w.complete(&job.id, b"done").unwrap();
    let job = w.next_job(LONG).unwrap().unwrap();
    assert_eq!(job.id, j2);
    w.fail(&job.id, "boom", false).unwrap();
    eventually("j2 failed", LONG, || c.status(&j2).ok().filter(|s| s.state == JobState::Failed));

    let s1 = parse(c.status_json(&j1).unwrap());
    check_status_shape(&s1);
    assert_eq!(s1["state"], "complete");
    assert!(s1["finished_ms"].is_u64());
    assert_eq!(s1["result_bytes"], 4);
    let s2 = parse(c.status_json(&j2).unwrap());
    check_status_shape(&s2);
    assert_eq!(s2["failure"], "boom");
    assert!(s2["finished_ms"].as_u64().unwrap() >= s2["created_ms"].as_u64().unwrap());

    let hist = parse(c.jobs_json(JobList::History).unwrap());
    let arr = hist.as_array().unwrap();
    arr.iter().for_each(check_status_shape);
    let ids: Vec<&str> = arr.iter().map(|j| j["job_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [j2.as_str(), j1.as_str()], "history is newest first");

    let workers = parse(c.workers_json().unwrap());
    let w0 = &workers.as_array().unwrap()[0];
    check_worker_shape(w0);
    assert_eq!(w0["state"], "idle");
    assert_eq!(w0["jobs_done"], 2);

    // The typed views agree with the JSON.
    let typed = c.status(&j1).unwrap();
    assert_eq!(typed.result_bytes, Some(4));
    assert_eq!(c.workers().unwrap()[0].jobs_done, 2);
}

#[test]
fn news_socket_publishes_job_state_changes() {
    let b = start_broker(config());
    let _w = b.spawn_worker("news", echo_upper);
    let mut c = b.client();
    wait_workers(&mut c, "news", 1);
    let sub = ctx().socket(zmq::SUB).unwrap();
    sub.set_linger(0).unwrap();
    sub.set_subscribe(b"news").unwrap();
    sub.connect(b.news_ep.as_deref().expect("news endpoint")).unwrap();

    // PUB/SUB joins late: retry with fresh jobs until one job's events are all seen.
    let events = eventually("a job's queued/started/completed events", LONG, || {
        let id = c.submit("news", b"e").ok()?.to_string();
        let mut kinds = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline && !kinds.contains(&"completed".to_string()) {
            if sub.poll(zmq::POLLIN, 50).unwrap() == 0 {
                continue;
            }
            let frames = sub.recv_multipart(0).unwrap();
            assert_eq!(frames.len(), 2, "topic + JSON");
            assert_eq!(frames[0], b"news", "topic is the service name");
            let v: Value = serde_json::from_slice(&frames[1]).expect("event is JSON");
            assert!(v["event"].is_string() && v["job_id"].is_string() && v["ts_ms"].is_u64(), "{v}");
            assert_eq!(v["service"], "news");
            if v["job_id"] == id.as_str() {
                kinds.push(v["event"].as_str().unwrap().to_string());
            }
        }
        (kinds.first().map(String::as_str) == Some("queued")).then_some(kinds)
    });
    assert_eq!(events, ["queued", "started", "completed"]);
}

#[test]
fn worker_config_validation() {
    // Not a socket test of the broker, but of the Worker API's refusals.
    let b = start_broker(config());
    let mut cfg = WorkerConfig::new(&b.worker_ep, "");
    assert!(matches!(zmws::Worker::with_config(cfg.clone()), Err(Error::InvalidArgument(_))));
    cfg.service = "ok".into();
    cfg.capacity = 0;
    assert!(matches!(zmws::Worker::with_config(cfg), Err(Error::InvalidArgument(_))));
    let mut c = b.client();
    assert!(matches!(c.call("", b"x", LONG), Err(Error::InvalidArgument(_))));
}

#[test]
fn worker_capacity_holds_several_jobs_at_once() {
    let b = start_broker(config());
    let mut cfg = b.worker_config("cap");
    cfg.capacity = 3;
    let w = zmws::Worker::with_config(cfg).unwrap();
    let mut c = b.client();
    assert_eq!(wait_workers(&mut c, "cap", 1)[0].capacity, 3);
    let ids: Vec<String> = (0..4).map(|i| c.submit("cap", i.to_string().as_bytes()).unwrap().to_string()).collect();
    let got: Vec<zmws::Job> = (0..3).map(|_| w.next_job(LONG).unwrap().expect("job within capacity")).collect();
    let got_ids: Vec<&str> = got.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(got_ids, [&ids[0], &ids[1], &ids[2]], "jobs are handed out in submission order");
    assert!(got.iter().all(|j| j.attempt == 1));
    assert!(w.next_job(Duration::from_millis(200)).unwrap().is_none(), "a fourth job waits: capacity is 3");
    let info = c.workers().unwrap().remove(0);
    assert_eq!(info.state, "busy");
    assert_eq!(info.active_jobs.len(), 3);
    let queued: Vec<String> = c.jobs(JobList::Queued).unwrap().into_iter().map(|j| j.job_id).collect();
    assert_eq!(queued, [ids[3].clone()]);
    w.complete(&got[1].id, b"r1").unwrap();
    let j4 = w.next_job(LONG).unwrap().expect("a slot freed up");
    assert_eq!(j4.id, ids[3]);
    for j in [&got[0], &got[2], &j4] {
        w.complete(&j.id, b"r").unwrap();
    }
    for id in &ids {
        eventually("all complete", LONG, || c.status(id).ok().filter(|s| s.state == JobState::Complete));
    }
    assert_eq!(c.result(&ids[1]).unwrap(), b"r1");
}

#[test]
fn call_times_out_and_a_late_reply_does_not_confuse_the_next_call() {
    let b = start_broker(config());
    let w = zmws::Worker::with_config(b.worker_config("slowpoke")).unwrap();
    let mut c = b.client();
    wait_workers(&mut c, "slowpoke", 1);
    let t = Instant::now();
    let r = c.call("slowpoke", b"x", Duration::from_millis(200));
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    // (zmq_poll may wake a millisecond early; the wait is still the timeout.)
    assert!(t.elapsed() >= Duration::from_millis(190) && t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // The job still runs; its late reply reaches this client's socket first,
    // and the next call must skip it.
    let j = w.next_job(LONG).unwrap().unwrap();
    w.complete(&j.id, b"late").unwrap();
    let helper = std::thread::spawn(move || {
        let j = w.next_job(LONG).unwrap().unwrap();
        w.complete(&j.id, b"fresh").unwrap();
        w
    });
    assert_eq!(c.call("slowpoke", b"y", LONG).unwrap(), b"fresh");
    drop(helper.join().unwrap());
}

#[test]
fn worker_reports_idle_after_quiet_heartbeats() {
    let b = start_broker(config().heartbeat(Duration::from_millis(200)).liveness(5));
    let mut cfg = b.worker_config("idle");
    cfg.liveness = 5;
    cfg.idle_after = 2;
    let t = Instant::now();
    let w = zmws::Worker::with_config(cfg).unwrap();
    match w.next_event(LONG).unwrap() {
        zmws::WorkerEvent::Idle => {}
        other => panic!("expected Idle, got {other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(390), "idle after 2 × 200 ms, not {:?}", t.elapsed());
    assert_eq!(w.next_event(Duration::from_millis(50)).unwrap(), zmws::WorkerEvent::Timeout);
    w.stop();
    assert!(matches!(w.next_event(LONG), Err(Error::Closed(_))));
}

#[test]
fn finished_jobs_expire_after_their_ttl_and_history_is_bounded() {
    let mut cfg = config();
    cfg.engine.result_ttl_ms = 1500; // long enough that a loaded CI machine sees every job complete first
    cfg.engine.history_len = 3;
    let b = start_broker(cfg);
    let _w = b.spawn_worker("ttl", echo_upper);
    let mut c = b.client();
    wait_workers(&mut c, "ttl", 1);
    let mut ids: Vec<String> = (0..4).map(|i| c.submit("ttl", i.to_string().as_bytes()).unwrap().to_string()).collect();
    // The last job cannot finish before it is submitted: a lower bound for its TTL.
    let last_submitted = Instant::now();
    ids.push(c.submit("ttl", b"4").unwrap().to_string());
    for id in &ids {
        eventually("complete", LONG, || c.status(id).ok().filter(|s| s.state == JobState::Complete));
    }
    let hist: Vec<String> = c.jobs(JobList::History).unwrap().into_iter().map(|j| j.job_id).collect();
    assert_eq!(hist, [ids[4].clone(), ids[3].clone(), ids[2].clone()], "the last 3, newest first");
    eventually("results expire", LONG, || matches!(c.status(&ids[4]), Err(Error::NotFound(_))).then_some(()));
    assert!(
        last_submitted.elapsed() >= Duration::from_millis(1495),
        "expired after {:?}, TTL is 1500 ms",
        last_submitted.elapsed()
    );
    assert!(matches!(c.result(&ids[0]), Err(Error::NotFound(_))));
    assert!(c.jobs(JobList::History).unwrap().is_empty());
}

#[test]
fn cancel_of_an_active_job_answers_the_waiting_client() {
    let b = start_broker(config());
    let w = zmws::Worker::with_config(b.worker_config("cx")).unwrap();
    let mut c = b.client();
    wait_workers(&mut c, "cx", 1);
    let waiting = RawClient::v2(&b.client_ep);
    waiting.send("cx", &["work"]);
    let j = w.next_job(LONG).unwrap().unwrap();
    c.cancel(&j.id).expect("cancel an active job");
    let r = waiting.recv(LONG).expect("the waiting client is answered");
    assert!(r.is_final);
    assert_eq!(r.body[0], b"500", "{:?}", r.body);
    assert_eq!(c.status(&j.id).unwrap().state, JobState::Cancelled);
    // The worker's late answer changes nothing, and it gets the next job.
    w.complete(&j.id, b"too late").unwrap();
    let id2 = c.submit("cx", b"next").unwrap().to_string();
    let j2 = w.next_job(LONG).unwrap().expect("worker free again after answering");
    assert_eq!(j2.id, id2);
    assert_eq!(c.status(&j.id).unwrap().state, JobState::Cancelled);
}

#[test]
fn submit_batch_queues_all_and_a_batched_answer_is_not_held_behind_a_long_job() {
    let b = start_broker(config());
    let mut c = b.client();
    // Refused as a whole: no worker ever offered the service.
    match c.submit_batch("later", &["a", "b"]) {
        Err(Error::NoSuchService(msg)) => assert!(msg.contains("later"), "{msg}"),
        other => panic!("want NoSuchService, got {other:?}"),
    }
    assert!(c.submit_batch("later", &[] as &[&str]).expect("empty batch").is_empty());
    let too_many: Vec<&str> = vec!["x"; zmws::engine::MAX_SUBMIT_BATCH + 1];
    assert!(matches!(c.submit_batch("later", &too_many), Err(Error::InvalidArgument(_))));

    // One worker that holds 8 jobs and answers them on its own thread: the
    // first job is quick, the second takes a long time. The first answer is
    // held back only while more received jobs wait, and the keeper thread
    // sends it within a few milliseconds even though the caller is busy.
    let mut cfg = b.worker_config("mixed");
    cfg.capacity = 8;
    let w = zmws::Worker::with_config(cfg).expect("worker");
    wait_workers(&mut c, "mixed", 1);
    let ids = c.submit_batch("mixed", &["quick", "slow", "third"]).expect("batch accepted");
    assert_eq!(ids.len(), 3);
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Some(job) = w.next_job(Duration::from_secs(10)).expect("next_job") {
            got.push(job);
        } else {
            panic!("no job within 10 s");
        }
    }
    assert_eq!(got[0].payload, b"quick");
    assert_eq!(got[0].id, ids[0].to_string(), "jobs arrive in submit order");
    w.complete(&got[0].id, b"done").expect("complete");
    // The caller now "runs" the slow job for a while without calling the worker.
    let quick = ids[0].to_string();
    let seen = eventually("the quick job's result while the slow job runs", Duration::from_secs(5), || {
        match c.result(&quick) {
            Ok(r) => Some(r),
            Err(Error::Pending(_)) => None,
            Err(e) => panic!("result: {e}"),
        }
    });
    assert_eq!(seen, b"done");
    w.complete(&got[1].id, b"slow done").expect("complete");
    let third = w.next_job(Duration::from_secs(10)).expect("next_job").expect("third job");
    w.complete(&third.id, b"3").expect("complete");
    for (id, want) in ids.iter().zip([&b"done"[..], b"slow done", b"3"]) {
        let r = eventually("result", Duration::from_secs(5), || c.result(&id.to_string()).ok());
        assert_eq!(r, want);
    }
    w.close();
}

#[test]
fn a_spinning_broker_serves_calls_and_batches_alike() {
    let b = start_broker(BrokerConfig { spin_us: 300, ..config() });
    let _w = b.spawn_worker("upper", echo_upper);
    let mut c = b.client();
    wait_workers(&mut c, "upper", 1);
    for i in 0..200 {
        let p = format!("spin {i}");
        assert_eq!(c.call("upper", p.as_bytes(), LONG).unwrap(), p.to_uppercase().as_bytes());
    }
    let ids = c.submit_batch("upper", &["x", "y"]).expect("batch");
    for (id, want) in ids.iter().zip(["X", "Y"]) {
        let got = eventually("batched result", LONG, || c.result(&id.to_string()).ok());
        assert_eq!(got, want.as_bytes());
    }
}

/// Several threads sharing one worker of capacity 4 (what `zmws worker
/// --concurrency 4` and a multi-threaded C worker do): a thread answering
/// its job must get the connection at once, not wait out another thread's
/// poll. Before the fix every answer could wait up to that thread's 200 ms
/// wait, so 30 serial calls took seconds; the bound below is 100× what a
/// stall-free run needs on a loaded machine, so it only catches the stall.
#[test]
fn threads_sharing_a_worker_answer_without_waiting_out_each_others_polls() {
    let b = start_broker(config());
    let mut cfg = b.worker_config("shared");
    cfg.capacity = 4;
    let worker = std::sync::Arc::new(zmws::Worker::with_config(cfg).expect("worker"));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let w = worker.clone();
            std::thread::spawn(move || w.run(|job| Ok(job.payload.clone())))
        })
        .collect();
    let mut c = b.client();
    wait_workers(&mut c, "shared", 1);
    let start = std::time::Instant::now();
    for i in 0..30 {
        let payload = format!("call {i}");
        assert_eq!(c.call("shared", payload.as_bytes(), Duration::from_secs(10)).expect("call"), payload.as_bytes());
    }
    let took = start.elapsed();
    worker.stop();
    for t in threads {
        t.join().expect("worker thread").expect("worker loop");
    }
    assert!(took < Duration::from_secs(3), "30 serial calls through a 4-thread worker took {took:?}");
}
