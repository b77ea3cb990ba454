//! Sans-socket tests of the broker state machine: feed frames and a clock,
//! read the frames it wants sent.

use crate::engine::{Engine, EngineConfig, Output, Socket};
use crate::job::JobId;
use crate::protocol::{decode_client, decode_worker, Frame};

fn f(s: &str) -> Frame {
    s.as_bytes().to_vec()
}

fn cfg() -> EngineConfig {
    EngineConfig { heartbeat_ms: 100, liveness: 3, job_timeout_ms: 1000, max_attempts: 2, ..Default::default() }
}

struct Harness {
    e: Engine,
    now: u64,
    out: Vec<Output>,
}

impl Harness {
    fn new() -> Harness {
        Harness { e: Engine::new(cfg(), 1_000_000), now: 1_000_000, out: Vec::new() }
    }
    fn client(&mut self, frames: Vec<Frame>) {
        let req = decode_client(frames).expect("valid client frames");
        self.e.on_client(req, self.now, &mut self.out);
    }
    fn worker(&mut self, frames: Vec<Frame>) {
        let msg = decode_worker(frames).expect("valid worker frames");
        self.e.on_worker(msg, self.now, &mut self.out);
    }
    fn ready(&mut self, id: &str, service: &str) {
        self.worker(vec![f(id), f("MDPW02"), vec![1], f(service)]);
    }
    fn take(&mut self, sock: Socket) -> Vec<Vec<Frame>> {
        let mut got = Vec::new();
        self.out.retain(|o| match o {
            Output::Send(s, frames) if *s == sock => {
                got.push(frames.clone());
                false
            }
            _ => true,
        });
        got
    }
    fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.e.tick(self.now, &mut self.out);
    }
}

#[test]
fn unknown_service_is_refused_at_once() {
    let mut h = Harness::new();
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("NOPE"), f("x")]);
    let replies = h.take(Socket::Client);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0][4], f("404"));
}

#[test]
fn request_goes_to_idle_worker_and_reply_back() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.client(vec![f("c1"), f(""), f("MDPC01"), f("SYNC-echo"), f("hi")]);
    let reqs = h.take(Socket::Worker);
    assert_eq!(reqs.len(), 1);
    let job_id = reqs[0][3].clone();
    assert_eq!(job_id.len(), 32);
    assert_eq!(reqs[0][5], f("hi"));
    h.worker(vec![f("w1"), f("MDPW02"), vec![4], job_id, f(""), f("HI")]);
    let replies = h.take(Socket::Client);
    assert_eq!(replies, vec![vec![f("c1"), f(""), f("MDPC01"), f("SYNC-echo"), f("HI")]]);
}

#[test]
fn queued_job_waits_for_a_worker_that_joins() {
    let mut h = Harness::new();
    h.ready("w1", "slow");
    h.worker(vec![f("w1"), f("MDPW02"), vec![6]]); // leaves: service stays known
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("zmws.submit"), f("slow"), f("p")]);
    let ack = h.take(Socket::Client);
    assert_eq!(ack[0][4].len(), 32, "async submit answers with a job id");
    assert!(h.take(Socket::Worker).is_empty());
    assert_eq!(h.e.queued(), 1);
    h.ready("w2", "slow");
    assert_eq!(h.take(Socket::Worker).len(), 1);
    assert_eq!(h.e.queued(), 0);
}

#[test]
fn dead_worker_job_goes_to_front_and_runs_elsewhere() {
    let mut h = Harness::new();
    // A zmws worker (extension frame): purged after liveness × heartbeat.
    h.worker(vec![f("w1"), f("MDPW02"), vec![1], f("s"), f("zmws:1 capacity=1")]);
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("s"), f("a")]);
    h.client(vec![f("c2"), f("MDPC02"), vec![1], f("s"), f("b")]);
    let first = h.take(Socket::Worker);
    assert_eq!(first.len(), 1);
    // w1 goes silent; after liveness x heartbeat it is purged.
    for _ in 0..4 {
        h.advance(100);
    }
    h.take(Socket::Worker); // heartbeats
    h.ready("w2", "s");
    let sent = h.take(Socket::Worker);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][5], f("a"), "the requeued job runs first");
}

#[test]
fn timeout_retries_then_fails_and_tells_the_client() {
    let mut h = Harness::new();
    h.ready("w1", "s");
    h.ready("w2", "s");
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("s"), f("x")]);
    assert_eq!(h.take(Socket::Worker).len(), 1);
    for _ in 0..11 {
        h.advance(100);
        // keep both workers alive
        h.worker(vec![f("w1"), f("MDPW02"), vec![5]]);
        h.worker(vec![f("w2"), f("MDPW02"), vec![5]]);
    }
    let reqs: Vec<_> = h.take(Socket::Worker).into_iter().filter(|m| m.len() > 3).collect();
    assert_eq!(reqs.len(), 1, "second attempt sent to the other worker");
    assert_eq!(reqs[0][0], f("w2"));
    for _ in 0..11 {
        h.advance(100);
        h.worker(vec![f("w1"), f("MDPW02"), vec![5]]);
        h.worker(vec![f("w2"), f("MDPW02"), vec![5]]);
    }
    let replies = h.take(Socket::Client);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0][4], f("500"));
    assert!(String::from_utf8_lossy(&replies[0][5]).contains("2 attempt"));
}

#[test]
fn reserved_service_worker_is_disconnected() {
    let mut h = Harness::new();
    h.ready("w1", "mmi.hack");
    let out = h.take(Socket::Worker);
    assert_eq!(out, vec![vec![f("w1"), f("MDPW02"), vec![6]]]);
    h.client(vec![f("c"), f("MDPC02"), vec![1], f("mmi.service"), f("mmi.hack")]);
    assert_eq!(h.take(Socket::Client)[0][4], f("404"));
    h.client(vec![f("c"), f("MDPC02"), vec![1], f("mmi.other"), f("")]);
    assert_eq!(h.take(Socket::Client)[0][4], f("501"));
}

#[test]
fn capacity_lets_a_worker_hold_several_jobs() {
    let mut h = Harness::new();
    h.worker(vec![f("w1"), f("MDPW02"), vec![1], f("s"), f("zmws:1 capacity=3")]);
    for i in 0..5 {
        h.client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.submit"), f("s"), format!("{i}").into_bytes()]);
    }
    let reqs = h.take(Socket::Worker);
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0][5], f("1"), "extended workers get the attempt number first");
    assert_eq!(h.e.queued(), 2);
}

#[test]
fn non_retryable_fail_ends_the_job_with_the_reason() {
    let mut h = Harness::new();
    h.worker(vec![f("w1"), f("MDPW02"), vec![1], f("s"), f("zmws:1 capacity=1")]);
    h.client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.call"), f("t1"), f("s"), f("x")]);
    let req = h.take(Socket::Worker).remove(0);
    h.worker(vec![f("w1"), f("MDPW02"), vec![0x10], req[3].clone(), f(""), f("0"), f("disk full")]);
    let r = h.take(Socket::Client).remove(0);
    assert_eq!(&r[4..6], &[f("t1"), f("500")]);
    assert_eq!(r[7], f("disk full"));
}

#[test]
fn unknown_worker_gets_disconnect_and_stale_reply_is_ignored() {
    let mut h = Harness::new();
    h.worker(vec![f("ghost"), f(""), f("MDPW01"), vec![4]]);
    assert_eq!(h.take(Socket::Worker), vec![vec![f("ghost"), f(""), f("MDPW01"), vec![5]]]);
    h.ready("w1", "s");
    h.worker(vec![f("w1"), f("MDPW02"), vec![4], f("00000000000000000000000000000000"), f(""), f("r")]);
    assert!(h.take(Socket::Client).is_empty());
}

#[test]
fn cancelled_queued_job_is_skipped() {
    let mut h = Harness::new();
    h.ready("w1", "s");
    h.worker(vec![f("w1"), f("MDPW02"), vec![6]]);
    h.client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.submit"), f("s"), f("x")]);
    let id = h.take(Socket::Client).remove(0)[4].clone();
    h.client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.cancel"), id.clone()]);
    assert_eq!(h.take(Socket::Client).remove(0)[4], f("200"));
    h.ready("w2", "s");
    assert!(h.take(Socket::Worker).is_empty());
    h.client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.result"), id]);
    assert_eq!(h.take(Socket::Client).remove(0)[4], f("500"));
}

#[test]
fn persisted_submit_is_acked_only_through_the_journal() {
    use crate::store::JournalOp;
    let mut e = Engine::new(EngineConfig { persist: true, ..cfg() }, 1_000_000);
    let mut out = Vec::new();
    let ready = decode_worker(vec![f("w1"), f("MDPW02"), vec![1], f("s")]).unwrap();
    e.on_worker(ready, 1_000_000, &mut out);
    e.on_worker(decode_worker(vec![f("w1"), f("MDPW02"), vec![6]]).unwrap(), 1_000_000, &mut out);
    let sub = decode_client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.submit"), f("s"), f("x")]).unwrap();
    e.on_client(sub, 1_000_001, &mut out);
    let journal = e.take_journal();
    assert!(matches!(journal[0], JournalOp::Service(_)));
    assert!(journal.iter().any(|op| matches!(op, JournalOp::Insert { .. })));
    assert!(out.iter().any(|o| matches!(o, Output::Durable { .. })));
    // A failed commit turns the ack into a refusal and forgets the job.
    let again = e.store_failed(journal, "disk full".into(), 1_000_002, &mut out);
    assert!(
        again.iter().all(|op| matches!(op, JournalOp::Service(_))),
        "nothing of the refused job is written again: {again:?}"
    );
    let refused = out.iter().find_map(|o| match o {
        Output::Durable { ok, .. } => Some(ok.clone()),
        _ => None,
    });
    let refused = refused.unwrap();
    assert_eq!(refused[4], f("503"));
    assert_eq!(refused[5], f("the job store refused the write: disk full"), "the refusal names the cause");
    assert_eq!(e.queued(), 0);
    let sub = decode_client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.submit"), f("s"), f("y")]).unwrap();
    let mut out2 = Vec::new();
    e.on_client(sub, 1_000_003, &mut out2);
    match &out2[0] {
        Output::Send(Socket::Client, m) => assert_eq!(m[4], f("503")),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn idempotency_key_returns_the_same_job() {
    let mut h = Harness::new();
    h.ready("w1", "s");
    h.worker(vec![f("w1"), f("MDPW02"), vec![6]]);
    h.client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.submit.unique"), f("k1"), f("s"), f("x")]);
    h.client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.submit.unique"), f("k1"), f("s"), f("x")]);
    h.client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.submit.unique"), f("k2"), f("s"), f("x")]);
    let r = h.take(Socket::Client);
    assert_eq!(r[0][4], r[1][4]);
    assert_ne!(r[0][4], r[2][4]);
    assert_eq!(h.e.queued(), 2);
}

#[test]
fn restore_requeues_active_jobs_and_keeps_results() {
    use crate::job::{JobId, JobState};
    use crate::store::{Loaded, StoredJob};
    let mk = |n: u64, state: JobState, attempts: u32| StoredJob {
        id: JobId::generate(1_000_000 + n),
        service: "s".into(),
        payload: vec![f("p")],
        state,
        attempts,
        created_ms: 1_000_000 + n,
        started_ms: 0,
        finished_ms: if state == JobState::Complete { 1_000_500 } else { 0 },
        result: (state == JobState::Complete).then(|| vec![f("r")]),
        failure: None,
        unique_key: None,
    };
    let loaded = Loaded {
        services: vec!["s".into()],
        jobs: vec![
            mk(1, JobState::Queued, 0),
            mk(2, JobState::Active, 1),
            mk(3, JobState::Complete, 1),
            mk(4, JobState::Active, 2),
        ],
    };
    let mut e = Engine::new(EngineConfig { persist: true, ..cfg() }, 1_001_000);
    e.restore(loaded, 1_001_000);
    assert_eq!(e.queued(), 2, "queued + active-with-attempts-left");
    let hist = e.list_jobs(crate::job::JobList::History);
    assert_eq!(hist.len(), 2, "the complete one and the one out of attempts");
}

#[test]
fn event_json_is_valid() {
    use crate::engine::JobEvent;
    let ev = JobEvent {
        kind: "failed",
        job_id: crate::job::JobId(7),
        service: "S\"x".into(),
        attempt: 2,
        detail: Some("bad \"thing\"\n".into()),
    };
    let v: serde_json::Value = serde_json::from_str(&ev.to_json(5)).unwrap();
    assert_eq!(v["service"], "S\"x");
    assert_eq!(v["detail"], "bad \"thing\"\n");
    assert_eq!(v["attempt"], 2);
    assert_eq!(v["job_id"].as_str().unwrap().len(), 32);
}

fn batch_ready(h: &mut Harness, id: &str, service: &str, capacity: u32) {
    h.worker(vec![f(id), f("MDPW02"), vec![1], f(service), f(&format!("zmws:1 capacity={capacity} batch"))]);
}

/// The job records of one REQUEST_BATCH message as (id, attempt, payload).
fn batch_records(msg: &[Frame]) -> Vec<(Frame, u32, Frame)> {
    assert_eq!(msg[1], f("MDPW02"));
    assert_eq!(msg[2], vec![crate::protocol::W_REQUEST_BATCH]);
    crate::protocol::decode_job_records(&msg[3])
        .expect("well-formed records")
        .into_iter()
        .map(|(id, a, p)| (id.to_vec(), a, p.to_vec()))
        .collect()
}

fn reply_batch(h: &mut Harness, worker: &str, done: &[(Frame, &str)]) {
    let mut records = Vec::new();
    for (id, result) in done {
        crate::protocol::encode_outcome_record(&mut records, crate::protocol::outcome::COMPLETE, id, result.as_bytes());
    }
    h.worker(vec![f(worker), f("MDPW02"), vec![crate::protocol::W_REPLY_BATCH], records]);
}

#[test]
fn batch_worker_gets_its_free_slots_in_one_message_and_refills_per_reply_batch() {
    let mut h = Harness::new();
    batch_ready(&mut h, "w1", "echo", 4);
    let mut body = vec![f("c1"), f("MDPC02"), vec![1], f("zmws.submit.batch"), f("echo")];
    body.extend((0..6).map(|i| f(&format!("p{i}"))));
    h.client(body);
    let acks = h.take(Socket::Client);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0][4], f("200"));
    assert_eq!(acks[0].len(), 6, "[200, ids]");
    assert_eq!(acks[0][5].len(), 6 * 32, "the ids packed in one frame, 32 hex characters each");
    let ids: Vec<Frame> = acks[0][5].chunks(32).map(<[u8]>::to_vec).collect();
    assert!(ids.iter().all(|id| JobId::parse(id).is_some()));
    let sent = h.take(Socket::Worker);
    assert_eq!(sent.len(), 1, "one REQUEST_BATCH, not one REQUEST per job");
    let recs = batch_records(&sent[0]);
    assert_eq!(recs.len(), 4, "capacity 4");
    assert_eq!(recs.iter().map(|r| r.2.clone()).collect::<Vec<_>>(), vec![f("p0"), f("p1"), f("p2"), f("p3")]);
    assert!(recs.iter().all(|r| r.1 == 1), "first attempt");
    assert_eq!(recs.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), ids[..4], "ids in submit order");
    // Two answers free two slots: the last two jobs follow in one message.
    reply_batch(&mut h, "w1", &[(recs[0].0.clone(), "r0"), (recs[1].0.clone(), "r1")]);
    let sent = h.take(Socket::Worker);
    assert_eq!(sent.len(), 1);
    let more = batch_records(&sent[0]);
    assert_eq!(more.iter().map(|r| r.2.clone()).collect::<Vec<_>>(), vec![f("p4"), f("p5")]);
    // The answered jobs are complete with their results.
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("zmws.result"), recs[1].0.clone()]);
    let r = h.take(Socket::Client);
    assert_eq!(&r[0][4..], &[f("200"), f("r1")]);
    // A retryable failure in a batch requeues the job for a second attempt.
    let mut records = Vec::new();
    crate::protocol::encode_outcome_record(&mut records, crate::protocol::outcome::FAIL_RETRYABLE, &recs[2].0, b"busy");
    h.worker(vec![f("w1"), f("MDPW02"), vec![crate::protocol::W_REPLY_BATCH], records]);
    let sent = h.take(Socket::Worker);
    let again = batch_records(&sent[0]);
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].0.clone(), again[0].1), (recs[2].0.clone(), 2));
}

#[test]
fn batch_share_is_spread_over_idle_workers() {
    let mut h = Harness::new();
    batch_ready(&mut h, "w1", "echo", 100);
    batch_ready(&mut h, "w2", "echo", 100);
    let mut body = vec![f("c1"), f("MDPC02"), vec![1], f("zmws.submit.batch"), f("echo")];
    body.extend((0..10).map(|i| f(&format!("p{i}"))));
    h.client(body);
    let sent = h.take(Socket::Worker);
    assert_eq!(sent.len(), 2);
    assert_eq!(batch_records(&sent[0]).len(), 5);
    assert_eq!(batch_records(&sent[1]).len(), 5);
    assert_ne!(sent[0][0], sent[1][0]);
}

#[test]
fn submit_batch_is_all_or_nothing() {
    let mut h = Harness::new();
    h.e = Engine::new(EngineConfig { max_payload: 10, max_queued: 5, ..cfg() }, h.now);
    h.ready("w1", "echo");
    let batch = |svc: &str, payloads: &[&str]| {
        let mut b = vec![f("c1"), f("MDPC02"), vec![1], f("zmws.submit.batch"), f(svc)];
        b.extend(payloads.iter().map(|p| f(p)));
        b
    };
    h.client(batch("nope", &["a"]));
    h.client(batch("echo", &["a", "this payload is too long"]));
    h.client(batch("echo", &["1", "2", "3", "4", "5", "6"]));
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("zmws.submit.batch"), f("echo")]);
    let r = h.take(Socket::Client);
    let codes: Vec<Frame> = r.iter().map(|m| m[4].clone()).collect();
    assert_eq!(codes, vec![f("404"), f("413"), f("503"), f("400")]);
    assert!(r.iter().all(|m| m.len() == 6), "[code, message]");
    assert_eq!(h.e.queued(), 0, "nothing of a refused batch was kept");
    // Plain (non-batch) workers get one REQUEST per job.
    h.client(batch("echo", &["1", "2"]));
    let ack = h.take(Socket::Client);
    assert_eq!((ack[0].len(), ack[0][5].len()), (6, 2 * 32));
    let sent = h.take(Socket::Worker);
    assert_eq!(sent.len(), 1, "capacity 1: one job out, one queued");
    assert_eq!(sent[0][2], vec![crate::protocol::W_REQUEST]);
    assert_eq!(h.e.queued(), 1);
}

#[test]
fn a_closed_job_no_longer_counts_toward_max_finished() {
    let mut h = Harness::new();
    h.e = Engine::new(EngineConfig { max_finished: 2, ..cfg() }, h.now);
    h.ready("w1", "s");
    let run = |h: &mut Harness, p: &str| -> Frame {
        h.client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.submit"), f("s"), f(p)]);
        let id = h.take(Socket::Client).remove(0)[4].clone();
        let req = h.take(Socket::Worker).remove(0);
        h.worker(vec![f("w1"), f("MDPW02"), vec![4], req[3].clone(), f(""), f(p)]);
        h.take(Socket::Client);
        h.take(Socket::Worker);
        id
    };
    let result = |h: &mut Harness, id: &Frame| {
        h.client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.result"), id.clone()]);
        h.take(Socket::Client).remove(0)[4].clone()
    };
    let a = run(&mut h, "a");
    let b = run(&mut h, "b");
    // Titanic closes b: it is forgotten at once.
    h.client(vec![f("c"), f("MDPC02"), vec![1], f("titanic.close"), b.clone()]);
    assert_eq!(h.take(Socket::Client).remove(0)[4], f("200"));
    assert_eq!(result(&mut h, &b), f("404"), "closed");
    // Two results are kept: a and c. b's old entry must not push a out.
    let c = run(&mut h, "c");
    assert_eq!(result(&mut h, &a), f("200"));
    assert_eq!(result(&mut h, &c), f("200"));
    // Each further job pushes out the oldest kept one.
    let d = run(&mut h, "d");
    assert_eq!(result(&mut h, &a), f("404"));
    let e = run(&mut h, "e");
    assert_eq!(result(&mut h, &c), f("404"));
    assert_eq!((result(&mut h, &d), result(&mut h, &e)), (f("200"), f("200")));
}

#[test]
fn a_result_over_max_payload_fails_the_job_with_the_reason() {
    let mut h = Harness::new();
    h.e = Engine::new(EngineConfig { max_payload: 10, ..cfg() }, h.now);
    h.worker(vec![f("w1"), f("MDPW02"), vec![1], f("s"), f("zmws:1 capacity=1")]);
    h.client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.call"), f("t1"), f("s"), f("x")]);
    let req = h.take(Socket::Worker).remove(0);
    h.worker(vec![f("w1"), f("MDPW02"), vec![4], req[3].clone(), f(""), f("0123456789"), f("!")]);
    let r = h.take(Socket::Client).remove(0);
    assert_eq!(&r[4..6], &[f("t1"), f("500")]);
    let reason = String::from_utf8_lossy(&r[7]).into_owned();
    assert!(reason.contains("result of 11 bytes is over the limit of 10 bytes"), "{reason}");
    // A result at the limit is kept.
    h.client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.call"), f("t2"), f("s"), f("x")]);
    let req = h.take(Socket::Worker).remove(0);
    h.worker(vec![f("w1"), f("MDPW02"), vec![4], req[3].clone(), f(""), f("0123456789")]);
    let r = h.take(Socket::Client).remove(0);
    assert_eq!(&r[4..6], &[f("t2"), f("200")]);
}

#[test]
fn a_stock_worker_gets_the_reference_heartbeat_window() {
    // Broker heartbeat 100 ms × liveness 3; a worker without the zmws
    // extension may stay silent liveness × 2,500 ms (zguide's interval).
    let mut h = Harness::new();
    h.e = Engine::new(EngineConfig { job_timeout_ms: 60_000, ..cfg() }, h.now);
    h.ready("stock", "s");
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("s"), f("a")]);
    let req = h.take(Socket::Worker).remove(0);
    h.advance(7_000); // silent while working, as mdwrkapi is
    h.take(Socket::Worker);
    assert_eq!(h.e.queued(), 0, "still running after 7 s");
    // Idle and silent: purged after liveness × 2,500 ms.
    h.worker(vec![f("stock"), f("MDPW02"), vec![4], req[3].clone(), f(""), f("done")]);
    assert_eq!(h.take(Socket::Client).len(), 1, "the reply reaches the client");
    h.take(Socket::Worker);
    h.advance(7_400);
    assert_eq!(h.e.live_workers(), 1, "within the window");
    h.advance(200);
    h.take(Socket::Worker);
    assert_eq!(h.e.live_workers(), 0, "idle and silent for 7.5 s: purged");
}

#[test]
fn a_busy_stock_worker_is_not_purged_for_silence_but_a_zmws_worker_is() {
    // zguide's mdwrkapi sends nothing while work() runs: a job longer than
    // liveness × heartbeat must still complete on it (the reference broker
    // only expires idle workers). zmws workers heartbeat while busy, so
    // their silence means death, busy or not.
    let mut h = Harness::new();
    h.e = Engine::new(EngineConfig { job_timeout_ms: 600_000, ..cfg() }, h.now);
    h.ready("stock", "s");
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("s"), f("long")]);
    let req = h.take(Socket::Worker).remove(0);
    assert_eq!(req[0], f("stock"));
    for _ in 0..12 {
        h.advance(5_000); // 60 s of silence while working
        h.take(Socket::Worker);
    }
    assert_eq!(h.e.live_workers(), 1, "the busy stock worker is still registered");
    h.worker(vec![f("stock"), f("MDPW02"), vec![4], req[3].clone(), f(""), f("late but fine")]);
    let r = h.take(Socket::Client).remove(0);
    assert_eq!(r.last(), Some(&f("late but fine")), "its reply reaches the client: {r:?}");

    // A zmws worker (READY with the extension frame) silent while busy is dead.
    h.worker(vec![f("zw"), f("MDPW02"), vec![1], f("z"), f("zmws:1 capacity=1")]);
    h.client(vec![f("c2"), f("MDPC02"), vec![1], f("z"), f("job")]);
    assert_eq!(h.take(Socket::Worker).len(), 1);
    h.advance(cfg().heartbeat_ms * cfg().liveness as u64 + 1);
    h.take(Socket::Worker);
    assert_eq!(h.e.queued(), 1, "the silent zmws worker was purged and its job queued again");
}

#[test]
fn an_invalid_command_disconnects_the_worker_and_requeues_its_job() {
    let mut h = Harness::new();
    h.ready("w1", "s");
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("s"), f("a")]);
    assert_eq!(h.take(Socket::Worker).len(), 1);
    // MDP/0.1 REQUEST (0x02) is a broker-to-worker command.
    h.worker(vec![f("w1"), f(""), f("MDPW01"), vec![2], f("s"), f(""), f("x")]);
    let sent = h.take(Socket::Worker);
    assert!(sent.iter().any(|m| m[0] == f("w1") && m.last() == Some(&vec![0x05])), "DISCONNECT to w1: {sent:?}");
    h.ready("w2", "s");
    let sent = h.take(Socket::Worker);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0][0].clone(), sent[0][5].clone()), (f("w2"), f("a")), "the job runs on w2");
}

#[test]
fn a_service_name_over_255_bytes_is_refused_without_echoing_it_in_the_message() {
    let mut h = Harness::new();
    let long = "x".repeat(300);
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f(&long), f("body")]);
    let r = h.take(Socket::Client).remove(0);
    assert_eq!(r[4], f("400"));
    assert_eq!(r[5], f("service name of 300 bytes is longer than 255 bytes"));
}

#[test]
fn a_failed_commit_keeps_the_finishes_of_jobs_already_on_disk() {
    use crate::store::JournalOp;
    let mut e = Engine::new(EngineConfig { persist: true, ..cfg() }, 1_000_000);
    let mut out = Vec::new();
    // A job accepted and committed while the disk had room.
    let sub = decode_client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.submit"), f("s2"), f("x")]);
    e.on_worker(decode_worker(vec![f("w1"), f("MDPW02"), vec![1], f("s2")]).unwrap(), 1_000_000, &mut out);
    e.on_client(sub.unwrap(), 1_000_001, &mut out);
    let first = e.take_journal();
    assert!(first.iter().any(|op| matches!(op, JournalOp::Insert { .. })));
    // It runs and finishes; that batch fails (disk full), and a new submit
    // arrives in the same batch.
    let req = out.iter().rev().find_map(|o| match o {
        Output::Send(Socket::Worker, m) if m.len() > 3 && m[2] == vec![crate::protocol::W_REQUEST] => Some(m.clone()),
        _ => None,
    });
    let req = req.expect("the job went to the worker");
    e.on_worker(
        decode_worker(vec![f("w1"), f("MDPW02"), vec![4], req[3].clone(), f(""), f("done")]).unwrap(),
        1_000_002,
        &mut out,
    );
    let sub = decode_client(vec![f("c"), f("MDPC02"), vec![1], f("zmws.submit"), f("s2"), f("y")]).unwrap();
    e.on_client(sub, 1_000_003, &mut out);
    let batch = e.take_journal();
    assert!(batch.iter().any(|op| matches!(op, JournalOp::Finished { .. })));
    assert!(batch.iter().any(|op| matches!(op, JournalOp::Insert { .. })));
    let again = e.store_failed(batch, "disk full".into(), 1_000_004, &mut out);
    assert!(
        again.iter().any(|op| matches!(op, JournalOp::Finished { state: crate::job::JobState::Complete, .. })),
        "{again:?}"
    );
    assert!(!again.iter().any(|op| matches!(op, JournalOp::Insert { .. })), "the refused job is not written");
}

/// Failback (zmws extension "moving"): a worker asking to leave stays while
/// it holds a job, and the last worker stays while jobs are queued; once it
/// is gone the service refuses new jobs (421) until a worker registers.
#[test]
fn a_moving_worker_stays_while_it_has_work_and_its_service_then_refuses_jobs() {
    let mut h = Harness::new();
    h.ready("w1", "svc");
    let moving = |h: &mut Harness| h.worker(vec![f("w1"), f("MDPW02"), vec![6], f("zmws:1 moving")]);

    // Holding a job: it stays (HEARTBEAT + stay), the job is not requeued.
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("zmws.submit"), f("svc"), f("a")]);
    let reqs = h.take(Socket::Worker);
    assert_eq!(reqs.len(), 1);
    let held = reqs[0][3].clone();
    let _ = h.take(Socket::Client);
    moving(&mut h);
    let answer = h.take(Socket::Worker);
    assert_eq!(answer, vec![vec![f("w1"), f("MDPW02"), vec![5], f("zmws:1 stay")]]);
    assert_eq!(h.e.live_workers(), 1);

    // A second job is queued; the worker answers both.
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("zmws.submit"), f("svc"), f("b")]);
    let _ = h.take(Socket::Client);
    h.worker(vec![f("w1"), f("MDPW02"), vec![4], held, f(""), f("A")]);
    let next = h.take(Socket::Worker);
    assert_eq!(next.len(), 1, "the queued job went to the worker");
    let second = next[0][3].clone();
    h.worker(vec![f("w1"), f("MDPW02"), vec![4], second, f(""), f("B")]);
    let _ = h.take(Socket::Worker);

    // Idle, nothing queued: removed and told MOVED; new jobs get 421.
    moving(&mut h);
    assert_eq!(h.take(Socket::Worker), vec![vec![f("w1"), f("MDPW02"), vec![6], f("zmws:1 moved")]]);
    assert_eq!(h.e.live_workers(), 0);
    h.client(vec![f("c2"), f("MDPC02"), vec![1], f("zmws.submit"), f("svc"), f("c")]);
    h.client(vec![f("c2"), f("MDPC02"), vec![1], f("zmws.submit.batch"), f("svc"), f("d"), f("e")]);
    let refusals = h.take(Socket::Client);
    assert_eq!(refusals.len(), 2);
    for r in &refusals {
        assert_eq!(r[4], f("421"), "{r:?}");
    }

    // A worker that registers again lifts the refusal.
    h.ready("w2", "svc");
    h.client(vec![f("c2"), f("MDPC02"), vec![1], f("zmws.submit"), f("svc"), f("f")]);
    let ok = h.take(Socket::Client);
    assert_eq!(ok[0][4].len(), 32, "a job id");
    assert_eq!(h.take(Socket::Worker).len(), 1);
}

/// A worker holding a job is kept (its job may be on its way to it); an
/// idle one may go while another worker of the service remains.
#[test]
fn a_worker_holding_a_job_stays_and_an_idle_one_may_go_while_another_remains() {
    let mut h = Harness::new();
    h.ready("w1", "svc");
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("zmws.submit"), f("svc"), f("a")]);
    h.client(vec![f("c1"), f("MDPC02"), vec![1], f("zmws.submit"), f("svc"), f("b")]);
    let _ = h.take(Socket::Worker);
    // w1 holds a job ("b" waits behind it): stay.
    h.worker(vec![f("w1"), f("MDPW02"), vec![6], f("zmws:1 moving")]);
    assert_eq!(h.take(Socket::Worker)[0][3], f("zmws:1 stay"));
    // w2 joins and takes the queued job; w1 (still holding) stays; then
    // w2, idle with nothing queued, may go although w1 remains.
    h.ready("w2", "svc");
    let given = h.take(Socket::Worker);
    assert_eq!(given.len(), 1);
    let job = given[0][3].clone();
    h.worker(vec![f("w2"), f("MDPW02"), vec![4], job, f(""), f("B")]);
    let _ = h.take(Socket::Worker);
    h.worker(vec![f("w2"), f("MDPW02"), vec![6], f("zmws:1 moving")]);
    assert_eq!(h.take(Socket::Worker)[0][3], f("zmws:1 moved"));
    assert_eq!(h.e.live_workers(), 1);
    // The service still has w1: jobs are accepted.
    h.client(vec![f("c2"), f("MDPC02"), vec![1], f("zmws.submit"), f("svc"), f("c")]);
    assert_eq!(h.take(Socket::Client)[0][4].len(), 32);
    // When the last worker goes for another reason after one moved, the
    // service counts as moved away too.
    h.worker(vec![f("w1"), f("MDPW02"), vec![6]]);
    assert_eq!(h.e.live_workers(), 0);
    h.client(vec![f("c2"), f("MDPC02"), vec![1], f("zmws.submit"), f("svc"), f("d")]);
    assert_eq!(h.take(Socket::Client)[0][4], f("421"));
}
