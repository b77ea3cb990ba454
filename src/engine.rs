//! The broker state machine, free of sockets and clocks.
//!
//! Feed it decoded messages ([`Engine::on_client`], [`Engine::on_worker`]) and
//! the time ([`Engine::tick`]); it appends the messages it wants sent to an
//! output vector. `broker.rs` owns the sockets and calls it; tests call it
//! directly.
//!
//! Structure (after the Majordomo brokers): services (a queue of job ids and a
//! list of idle workers), workers (identity, service, jobs held, expiry) and
//! job records, plus one dispatch function that pairs queued jobs with idle
//! workers whenever either side changes.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::job::{JobId, JobList, JobState, JobStatus, WorkerInfo};
use crate::job_table::JobTable;
use crate::protocol::{
    self, encode_client_reply, encode_job_record, encode_worker_disconnect, encode_worker_heartbeat,
    encode_worker_request, encode_worker_request_batch, hex, ClientRequest, ClientRoute, Frame, ReplyKind, Version,
    WorkerCommand, WorkerMessage,
};
use crate::store::{JournalOp, Loaded, PackedFrames};

/// Limits and timings of the broker. All durations in milliseconds.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Heartbeat interval both ways.
    pub heartbeat_ms: u64,
    /// Missed heartbeats before a worker is purged.
    pub liveness: u32,
    /// Time one attempt may run before the job is given to another worker.
    pub job_timeout_ms: u64,
    /// Attempts before a job is failed.
    pub max_attempts: u32,
    /// How long finished jobs stay queryable.
    pub result_ttl_ms: u64,
    /// At most this many finished jobs are kept (oldest dropped first).
    pub max_finished: usize,
    /// Length of the history listing.
    pub history_len: usize,
    /// Largest accepted payload, all frames together, in bytes.
    pub max_payload: usize,
    /// Most jobs queued at once over all services.
    pub max_queued: usize,
    /// Most live workers one service may have.
    pub max_workers_per_service: usize,
    /// Most entries a `zmws.jobs` listing returns.
    pub list_limit: usize,
    /// Whether to emit job events (only when a PUB socket is bound).
    pub emit_events: bool,
    /// Whether to journal async jobs for the durable store.
    pub persist: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            heartbeat_ms: 1000,
            liveness: 3,
            job_timeout_ms: 60_000,
            max_attempts: 3,
            result_ttl_ms: 3_600_000,
            max_finished: 100_000,
            history_len: 100,
            max_payload: 16 * 1024 * 1024,
            max_queued: 1_000_000,
            max_workers_per_service: 10_000,
            list_limit: 1000,
            emit_events: false,
            persist: false,
        }
    }
}

/// Which broker socket a message goes out on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Socket {
    /// The client ROUTER.
    Client,
    /// The worker ROUTER.
    Worker,
}

/// A job state change, published on the news socket as JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct JobEvent {
    /// `queued`, `started`, `partial`, `completed`, `failed`, `retried`, `cancelled`.
    pub kind: &'static str,
    /// The job.
    pub job_id: JobId,
    /// Its service (the PUB topic).
    pub service: Rc<str>,
    /// Attempt number (0 before the first start).
    pub attempt: u32,
    /// Failure reason or other detail.
    pub detail: Option<String>,
}

/// Something the engine wants done.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send these frames (identity first) on a ROUTER socket.
    Send(Socket, Vec<Frame>),
    /// Publish a job event.
    Event(JobEvent),
    /// A reply to the client socket that may only go out once the journal of
    /// this turn is committed; `refused` replaces `ok` if the commit fails.
    Durable {
        /// The job the reply acknowledges.
        job: JobId,
        /// The reply to send after a successful commit.
        ok: Vec<Frame>,
        /// The reply to send if the commit failed.
        refused: Vec<Frame>,
    },
}

/// Who waits for a job's outcome.
#[derive(Clone, Debug)]
enum Waiter {
    /// A plain MDP client: the reply goes back as an MDP reply to `service`.
    Mdp { route: ClientRoute, service: Frame },
    /// A `zmws.call` client: replies carry its tag.
    Call { route: ClientRoute, tag: Frame },
}

/// A job record. Kept small (64 bytes; the id is the map key) because a
/// broker may hold a million queued jobs: the fields a queued async job does
/// not need live in [`JobExtra`], allocated only when used.
#[derive(Debug)]
struct Job {
    /// Payload frames packed in one allocation (see [`pack_frames`]); emptied when the job finishes.
    payload: Box<[u8]>,
    /// Worker running the current attempt.
    worker: Option<Rc<[u8]>>,
    created_ms: u64,
    started_ms: u64,
    extra: Option<Box<JobExtra>>,
    service: u32,
    attempts: u16,
    state: JobState,
    /// `DURABLE` | `MULTI_FRAME`.
    flags: u8,
}

/// The job was journaled to the store.
const DURABLE: u8 = 1;
/// `payload` holds several length-prefixed frames.
const MULTI_FRAME: u8 = 2;

/// The less common parts of a job record.
#[derive(Debug, Default)]
struct JobExtra {
    finished_ms: u64,
    payload_bytes: usize,
    result: Option<Vec<Frame>>,
    failure: Option<String>,
    waiter: Option<Waiter>,
    unique_key: Option<Box<str>>,
}

/// Packs frames into one buffer: a single frame as is, several as
/// u32-LE length + bytes each. Returns the buffer and whether it is multi-frame.
fn pack_frames(mut frames: Vec<Frame>) -> (Box<[u8]>, bool) {
    if frames.len() == 1 {
        return (frames.pop().unwrap_or_default().into_boxed_slice(), false);
    }
    let mut out = Vec::with_capacity(frames.iter().map(|f| f.len() + 4).sum());
    for f in &frames {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    (out.into_boxed_slice(), true)
}

/// The frames of a packed buffer, as slices into it.
fn frame_slices(data: &[u8], multi: bool) -> Vec<&[u8]> {
    if !multi {
        return vec![data];
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= data.len() {
        let len = u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as usize;
        let end = (i + 4 + len).min(data.len());
        out.push(&data[i + 4..end]);
        i = end;
    }
    out
}

impl Job {
    fn durable(&self) -> bool {
        self.flags & DURABLE != 0
    }
    fn payload_bytes(&self) -> usize {
        match &self.extra {
            Some(x) if self.state.is_final() => x.payload_bytes,
            _ if self.flags & MULTI_FRAME == 0 => self.payload.len(),
            _ => frame_slices(&self.payload, true).iter().map(|f| f.len()).sum(),
        }
    }
    fn extra_mut(&mut self) -> &mut JobExtra {
        self.extra.get_or_insert_with(Default::default)
    }
    fn waiter(&self) -> Option<&Waiter> {
        self.extra.as_ref().and_then(|x| x.waiter.as_ref())
    }
    fn result(&self) -> Option<&Vec<Frame>> {
        self.extra.as_ref().and_then(|x| x.result.as_ref())
    }
    fn failure(&self) -> Option<&String> {
        self.extra.as_ref().and_then(|x| x.failure.as_ref())
    }
    fn finished_ms(&self) -> u64 {
        self.extra.as_ref().map(|x| x.finished_ms).unwrap_or(0)
    }
}

#[derive(Debug)]
struct Service {
    name: Rc<str>,
    /// The name again, shareable with the store thread.
    journal_name: std::sync::Arc<str>,
    queue: VecDeque<JobId>,
    /// Workers with a free slot, least recently used first, with the
    /// registration number they had when queued (stale entries are skipped).
    idle: VecDeque<(Rc<[u8]>, u64)>,
    live_workers: usize,
    /// The last worker left for another broker (failback): new jobs are
    /// refused with 421 until a worker registers again, so none waits here
    /// for a worker that will not come.
    moved_away: bool,
    /// When a worker of the service last left for another broker (ms),
    /// since the last registration: if the last one goes within
    /// [`MOVED_MEMORY_MS`] of that, for whatever reason, the service
    /// counts as moved away.
    some_moved_ms: Option<u64>,
    stats: ServiceStats,
}

/// Counters kept per service (for `zmws.services` and metrics).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ServiceStats {
    /// Jobs accepted.
    pub submitted: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Jobs failed.
    pub failed: u64,
    /// Attempts that were given to another worker.
    pub retried: u64,
    /// Jobs cancelled.
    pub cancelled: u64,
    /// Sum of queue-to-finish latency of completed jobs, ms.
    pub latency_ms_sum: u64,
    /// Completed-job latency histogram: counts of jobs ≤ each bound of [`LATENCY_BUCKETS_MS`].
    pub latency_buckets: Vec<u64>,
}

/// Upper bounds (ms) of the latency histogram buckets; the last bucket is +Inf.
pub const LATENCY_BUCKETS_MS: &[u64] = &[1, 5, 10, 50, 100, 500, 1000, 5000, 30000, 60000];

#[derive(Debug)]
struct WorkerRec {
    identity: Rc<[u8]>,
    service: usize,
    version: Version,
    extended: bool,
    /// Takes REQUEST_BATCH (announced `batch` in READY).
    batch: bool,
    capacity: u32,
    /// (job, attempt) pairs held, including attempts that already timed out,
    /// in the order given (answers mostly come in that order, so the search
    /// for an answered job starts at the front).
    held: VecDeque<(JobId, u32)>,
    in_idle: bool,
    /// Registration number: tells this registration from an earlier one of
    /// the same identity.
    registration: u64,
    expiry_ms: u64,
    connected_ms: u64,
    last_seen_ms: u64,
    jobs_done: u64,
}

/// The heartbeat interval assumed for workers without the zmws extension
/// when the broker's own is shorter: the Majordomo reference worker's
/// (zguide `mdwrkapi`, 2,500 ms), so stock workers are not purged as dead.
pub const STOCK_WORKER_HEARTBEAT_MS: u64 = 2500;

/// The broker's whole state. Single-threaded by design.
pub struct Engine {
    config: EngineConfig,
    services: Vec<Service>,
    service_index: HashMap<Box<[u8]>, usize>,
    workers: HashMap<Rc<[u8]>, WorkerRec>,
    jobs: JobTable<Job>,
    queued_total: usize,
    /// (deadline, job, attempt) in dispatch order; deadlines never decrease.
    deadlines: VecDeque<(u64, JobId, u32)>,
    /// Finished jobs in finishing order, for TTL pruning and history.
    /// (finish time, job): the time is kept here so pruning needs no lookup.
    finished: VecDeque<(u64, JobId)>,
    /// Entries of `finished` whose job was closed (`titanic.close`) since:
    /// they do not count toward `max_finished` and are dropped when reached.
    closed_in_finished: usize,
    next_heartbeat_ms: u64,
    /// Changes for the durable store, drained by the I/O layer each turn.
    journal: Vec<JournalOp>,
    /// Idempotency key → job, while the job is live or within its TTL.
    uniques: HashMap<Box<str>, JobId>,
    /// Set while the store refuses writes: new async jobs are refused.
    store_error: Option<String>,
    /// Counter for `WorkerRec::registration`.
    registrations: u64,
}

/// Most jobs one `zmws.submit.batch` message may hold.
pub const MAX_SUBMIT_BATCH: usize = 10_000;

/// How long after a worker of a service moved to another broker (failback)
/// the departure of its last worker, for any reason, still means the
/// service moved away (421) rather than "its workers will be back".
const MOVED_MEMORY_MS: u64 = 60_000;

const RESERVED_PREFIXES: &[&[u8]] = &[b"mmi.", b"zmws.", b"titanic.", b"SERVER-"];

/// Strips the seed's `SYNC-` / `SYNC:` prefix.
pub fn strip_sync(service: &[u8]) -> &[u8] {
    if service.len() > 5 && (service.starts_with(b"SYNC-") || service.starts_with(b"SYNC:")) {
        &service[5..]
    } else {
        service
    }
}

/// The reply to a job id that names no job: `400` when it is not even a job
/// id (32 hex characters), `404` when no such job is known (any more).
fn no_such_job(raw: &[u8]) -> Vec<Frame> {
    if JobId::parse(raw).is_none() {
        err_body("400", format!("'{}' is not a job id (32 hex characters)", printable(raw)))
    } else {
        err_body("404", format!("unknown job id '{}'", printable(raw)))
    }
}

fn err_body(code: &str, message: impl Into<String>) -> Vec<Frame> {
    vec![code.as_bytes().to_vec(), message.into().into_bytes()]
}

fn printable(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Engine {
    /// A fresh engine; `now_ms` is the current time.
    pub fn new(config: EngineConfig, now_ms: u64) -> Engine {
        let hb = config.heartbeat_ms;
        Engine {
            config,
            services: Vec::new(),
            service_index: HashMap::new(),
            workers: HashMap::new(),
            jobs: JobTable::default(),
            queued_total: 0,
            deadlines: VecDeque::new(),
            finished: VecDeque::new(),
            closed_in_finished: 0,
            next_heartbeat_ms: now_ms + hb,
            journal: Vec::new(),
            uniques: HashMap::new(),
            store_error: None,
            registrations: 0,
        }
    }

    /// Turns job events on or off (the broker does so while the news socket has subscribers).
    pub fn set_emit_events(&mut self, on: bool) {
        self.config.emit_events = on;
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Number of jobs waiting in all queues.
    pub fn queued(&self) -> usize {
        self.queued_total
    }

    /// Number of live workers.
    pub fn live_workers(&self) -> usize {
        self.workers.len()
    }

    /// The time by which [`Engine::tick`] should next be called.
    pub fn next_wakeup(&self) -> u64 {
        let mut t = self.next_heartbeat_ms;
        if let Some((d, _, _)) = self.deadlines.front() {
            t = t.min(*d);
        }
        t
    }

    // ----------------------------------------------------------------- clients

    /// Handles one decoded client request.
    pub fn on_client(&mut self, req: ClientRequest, now: u64, out: &mut Vec<Output>) {
        let ClientRequest { route, service, mut body } = req;
        let name = strip_sync(&service);
        let reply = |out: &mut Vec<Output>, body: Vec<Frame>| {
            if let Some(m) = encode_client_reply(&route, &service, ReplyKind::Final, body) {
                out.push(Output::Send(Socket::Client, m));
            }
        };
        if service.len() > 255 {
            // No service can have such a name (workers are refused above 255
            // bytes); the message does not repeat it.
            return reply(
                out,
                err_body("400", format!("service name of {} bytes is longer than 255 bytes", service.len())),
            );
        }
        if name.starts_with(b"mmi.") {
            let body = match name {
                b"mmi.service" => {
                    let target = strip_sync(&body[0]);
                    let live = self.service_index.get(target).map(|&i| self.services[i].live_workers).unwrap_or(0);
                    vec![if live > 0 { b"200".to_vec() } else { b"404".to_vec() }]
                }
                _ => vec![b"501".to_vec()],
            };
            return reply(out, body);
        }
        match name {
            b"zmws.submit" | b"titanic.request" | b"zmws.submit.unique" => {
                let titanic = name.starts_with(b"titanic.");
                let key = if name == b"zmws.submit.unique" {
                    if body.len() < 2 || body[0].is_empty() || body[0].len() > 255 {
                        return reply(
                            out,
                            err_body("400", "zmws.submit.unique needs [key (1-255 bytes), service, payload...]"),
                        );
                    }
                    Some(printable(&body.remove(0)).into_boxed_str())
                } else {
                    None
                };
                if body.is_empty() || body[0].is_empty() {
                    return reply(
                        out,
                        err_body(if titanic { "500" } else { "400" }, "the first frame must name a service"),
                    );
                }
                let target = body.remove(0);
                match self.accept_async(&target, body, key, now, out) {
                    Ok((id, fresh)) => {
                        let ok = if titanic {
                            vec![b"200".to_vec(), id.to_hex().to_vec()]
                        } else {
                            vec![id.to_hex().to_vec()]
                        };
                        if fresh && self.config.persist {
                            let refused =
                                err_body(if titanic { "500" } else { "503" }, "the job store refused the write");
                            if let (Some(ok), Some(refused)) = (
                                encode_client_reply(&route, &service, ReplyKind::Final, ok),
                                encode_client_reply(&route, &service, ReplyKind::Final, refused),
                            ) {
                                out.push(Output::Durable { job: id, ok, refused });
                            }
                        } else {
                            reply(out, ok)
                        }
                    }
                    Err((_, msg)) if titanic => reply(out, err_body("500", msg)),
                    Err((code, msg)) => reply(out, err_body(code, msg)),
                }
            }
            b"zmws.submit.batch" => match self.submit_batch(body, now, out) {
                Ok(ids) => {
                    let first = ids.get(1).and_then(|f| JobId::parse(f.get(..32)?));
                    match first {
                        Some(job) if self.config.persist => {
                            let refused = err_body("503", "the job store refused the write");
                            if let (Some(ok), Some(refused)) = (
                                encode_client_reply(&route, &service, ReplyKind::Final, ids),
                                encode_client_reply(&route, &service, ReplyKind::Final, refused),
                            ) {
                                out.push(Output::Durable { job, ok, refused });
                            }
                        }
                        _ => reply(out, ids),
                    }
                }
                Err((code, msg)) => reply(out, err_body(code, msg)),
            },
            b"zmws.call" => {
                if body.len() < 2 {
                    return reply(out, err_body("400", "zmws.call needs [tag, service, payload...]"));
                }
                let tag = body.remove(0);
                let target = body.remove(0);
                let waiter = Waiter::Call { route: route.clone(), tag: tag.clone() };
                if let Err((code, msg)) = self.accept(&target, body, Some(waiter), None, now, out) {
                    reply(out, vec![tag, code.as_bytes().to_vec(), Vec::new(), msg.into_bytes()]);
                }
            }
            b"zmws.status" => {
                let body = match self.lookup(&body[0]) {
                    Some((id, job)) => vec![serde_json::to_vec(&self.status_of(id, job)).unwrap_or_default()],
                    None => no_such_job(&body[0]),
                };
                reply(out, body)
            }
            b"zmws.result" | b"titanic.reply" => {
                let titanic = name.starts_with(b"titanic.");
                let body = match self.lookup(&body[0]) {
                    None if titanic => err_body("400", format!("unknown job id '{}'", printable(&body[0]))),
                    None => no_such_job(&body[0]),
                    Some((_, job)) => match job.state {
                        JobState::Complete => {
                            let mut b = vec![b"200".to_vec()];
                            b.extend(job.result().cloned().unwrap_or_default());
                            b
                        }
                        JobState::Queued | JobState::Active => {
                            err_body("300", format!("job is {}", job.state.as_str()))
                        }
                        JobState::Failed | JobState::Cancelled => {
                            err_body("500", job.failure().cloned().unwrap_or_else(|| "job failed".into()))
                        }
                    },
                };
                reply(out, body)
            }
            b"zmws.cancel" => {
                let body = match JobId::parse(&body[0]) {
                    None => no_such_job(&body[0]),
                    Some(id) => match self.cancel(id, now, out) {
                        Ok(()) => vec![b"200".to_vec()],
                        Err((code, msg)) => err_body(code, msg),
                    },
                };
                reply(out, body)
            }
            b"titanic.close" => {
                // RFC 9: forget the request and its reply; idempotent, always 200.
                if let Some(id) = JobId::parse(&body[0]) {
                    let _ = self.cancel(id, now, out);
                    // Finished now, so its id is in `finished`: that entry
                    // no longer counts toward `max_finished`.
                    if self.forget(id) {
                        self.closed_in_finished += 1;
                    }
                }
                reply(out, vec![b"200".to_vec()])
            }
            b"zmws.jobs" | b"SERVER-JOBS" | b"SERVER-ACTIVE" | b"SERVER-HIST" => {
                let kind = match name {
                    b"SERVER-ACTIVE" => Some(JobList::Active),
                    b"SERVER-HIST" => Some(JobList::History),
                    _ if body[0].is_empty() => Some(JobList::Queued),
                    _ => std::str::from_utf8(&body[0]).ok().and_then(JobList::parse),
                };
                let body = match kind {
                    Some(k) => vec![serde_json::to_vec(&self.list_jobs(k)).unwrap_or_default()],
                    None => err_body("400", "zmws.jobs takes queued, active or history"),
                };
                reply(out, body)
            }
            b"zmws.workers" | b"SERVER-WORKERS" => {
                let body = vec![serde_json::to_vec(&self.list_workers()).unwrap_or_default()];
                reply(out, body)
            }
            b"zmws.services" => {
                let body = vec![serde_json::to_vec(&self.list_services()).unwrap_or_default()];
                reply(out, body)
            }
            _ if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) => {
                reply(out, err_body("501", format!("'{}' is not implemented", printable(name))))
            }
            _ => {
                let waiter = Waiter::Mdp { route: route.clone(), service: service.clone() };
                if let Err((code, msg)) = self.accept(name, body, Some(waiter), None, now, out) {
                    reply(out, err_body(code, msg));
                }
            }
        }
    }

    /// Accepts an async job (journaled when persisting); an idempotency key
    /// seen before returns the earlier job. Returns (id, newly created).
    fn accept_async(
        &mut self,
        service: &[u8],
        payload: Vec<Frame>,
        key: Option<Box<str>>,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<(JobId, bool), (&'static str, String)> {
        if let Some(k) = &key {
            if let Some(&id) = self.uniques.get(k) {
                if self.jobs.contains_key(&id) {
                    return Ok((id, false));
                }
            }
        }
        if self.config.persist {
            if let Some(e) = &self.store_error {
                return Err(("503", format!("the job store refuses writes: {e}")));
            }
        }
        let id = self.accept(service, payload, None, key.clone(), now, out)?;
        if let Some(k) = key {
            self.uniques.insert(k, id);
        }
        Ok((id, true))
    }

    /// Validates and queues a new job, then hands out what can be handed
    /// out. Errors are (status code, message).
    fn accept(
        &mut self,
        service: &[u8],
        payload: Vec<Frame>,
        waiter: Option<Waiter>,
        unique_key: Option<Box<str>>,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<JobId, (&'static str, String)> {
        let (id, si) = self.enqueue(service, payload, waiter, unique_key, now, out)?;
        self.dispatch(si, now, out);
        Ok(id)
    }

    /// Validates and queues a new job without dispatching. Returns the job
    /// and its service index.
    fn enqueue(
        &mut self,
        service: &[u8],
        payload: Vec<Frame>,
        waiter: Option<Waiter>,
        unique_key: Option<Box<str>>,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<(JobId, usize), (&'static str, String)> {
        let service = strip_sync(service);
        let Some(&si) = self.service_index.get(service) else {
            return Err(("404", format!("no worker has ever offered service '{}'", printable(service))));
        };
        self.check_not_moved(si)?;
        self.enqueue_at(si, payload, waiter, unique_key, now, out)
    }

    /// Refuses jobs for a service whose workers all moved to another broker.
    fn check_not_moved(&self, si: usize) -> Result<(), (&'static str, String)> {
        let svc = &self.services[si];
        if svc.moved_away && svc.live_workers == 0 {
            return Err(("421", format!("the workers of service '{}' {}", svc.name, protocol::MOVED_REFUSAL)));
        }
        Ok(())
    }

    /// [`Engine::enqueue`] for a service already looked up.
    fn enqueue_at(
        &mut self,
        si: usize,
        payload: Vec<Frame>,
        waiter: Option<Waiter>,
        unique_key: Option<Box<str>>,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<(JobId, usize), (&'static str, String)> {
        let size: usize = payload.iter().map(|f| f.len()).sum();
        if size > self.config.max_payload {
            return Err((
                "413",
                format!("payload of {size} bytes is over the limit of {} bytes", self.config.max_payload),
            ));
        }
        let payload = if payload.is_empty() { vec![Vec::new()] } else { payload };
        let (packed, multi) = pack_frames(payload);
        let id = self.enqueue_packed(si, packed, multi, waiter, unique_key, now, out)?;
        Ok((id, si))
    }

    /// Queues a job whose payload is packed already (see [`pack_frames`]);
    /// its size was checked by the caller.
    #[allow(clippy::too_many_arguments)]
    fn enqueue_packed(
        &mut self,
        si: usize,
        packed: Box<[u8]>,
        multi: bool,
        waiter: Option<Waiter>,
        unique_key: Option<Box<str>>,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<JobId, (&'static str, String)> {
        if self.queued_total >= self.config.max_queued {
            return Err(("503", format!("queue full: {} jobs are already waiting", self.queued_total)));
        }
        let id = JobId::generate(now);
        let durable = self.config.persist && waiter.is_none();
        if durable {
            self.journal.push(JournalOp::Insert {
                id,
                service: self.services[si].journal_name.clone(),
                payload: PackedFrames {
                    nframes: if multi { frame_slices(&packed, true).len() as u32 } else { 1 },
                    data: packed.clone(),
                },
                created_ms: now,
                unique_key: unique_key.as_deref().map(str::to_string),
            });
        }
        let extra = if waiter.is_some() || unique_key.is_some() {
            Some(Box::new(JobExtra { waiter, unique_key, ..Default::default() }))
        } else {
            None
        };
        self.jobs.insert(
            id,
            Job {
                payload: packed,
                worker: None,
                created_ms: now,
                started_ms: 0,
                extra,
                service: si as u32,
                attempts: 0,
                state: JobState::Queued,
                flags: if durable { DURABLE } else { 0 } | if multi { MULTI_FRAME } else { 0 },
            },
        );
        let svc = &mut self.services[si];
        svc.queue.push_back(id);
        svc.stats.submitted += 1;
        self.queued_total += 1;
        self.event(out, "queued", id, si, 0, None);
        Ok(id)
    }

    /// `zmws.submit.batch [service, payload, payload…]`: one async job per
    /// payload frame, all accepted or all refused. Reply `["200", ids]`, the
    /// ids packed in one frame (32 hex characters each, in payload order).
    fn submit_batch(
        &mut self,
        mut body: Vec<Frame>,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<Vec<Frame>, (&'static str, String)> {
        if body.len() < 2 || body[0].is_empty() {
            return Err(("400", "zmws.submit.batch needs [service, payload, payload...]".into()));
        }
        let n = body.len() - 1;
        if n > MAX_SUBMIT_BATCH {
            return Err(("400", format!("a batch holds at most {MAX_SUBMIT_BATCH} jobs; this one has {n}")));
        }
        let service = strip_sync(&body[0]);
        let Some(&si) = self.service_index.get(service) else {
            return Err(("404", format!("no worker has ever offered service '{}'", printable(service))));
        };
        self.check_not_moved(si)?;
        if let Some((i, f)) = body[1..].iter().enumerate().find(|(_, f)| f.len() > self.config.max_payload) {
            return Err((
                "413",
                format!("payload {i} of {} bytes is over the limit of {} bytes", f.len(), self.config.max_payload),
            ));
        }
        if self.queued_total + n > self.config.max_queued {
            return Err(("503", format!("queue full: {} jobs are waiting and the batch has {n}", self.queued_total)));
        }
        if self.config.persist {
            if let Some(e) = &self.store_error {
                return Err(("503", format!("the job store refuses writes: {e}")));
            }
        }
        body.remove(0);
        // All ids in one frame: 32 hex characters each, no separator.
        let mut ids = Vec::with_capacity(n * 32);
        for payload in body {
            let id = self.enqueue_packed(si, payload.into_boxed_slice(), false, None, None, now, out)?;
            ids.extend_from_slice(&id.to_hex());
        }
        self.dispatch(si, now, out);
        Ok(vec![b"200".to_vec(), ids])
    }

    fn lookup(&self, text: &[u8]) -> Option<(JobId, &Job)> {
        JobId::parse(text).and_then(|id| self.jobs.get(&id).map(|j| (id, j)))
    }

    fn cancel(&mut self, id: JobId, now: u64, out: &mut Vec<Output>) -> Result<(), (&'static str, String)> {
        let Some(job) = self.jobs.get_mut(&id) else {
            return Err(("404", format!("unknown job id '{id}'")));
        };
        match job.state {
            JobState::Cancelled => Ok(()),
            JobState::Complete | JobState::Failed => {
                Err(("409", format!("job {id} already finished ({})", job.state.as_str())))
            }
            JobState::Queued | JobState::Active => {
                if job.state == JobState::Queued {
                    self.queued_total -= 1; // its queue entry is skipped lazily
                }
                self.finish(id, JobState::Cancelled, None, Some("cancelled by a client".into()), now, out);
                Ok(())
            }
        }
    }

    // ----------------------------------------------------------------- workers

    /// Handles one decoded worker message.
    pub fn on_worker(&mut self, msg: WorkerMessage, now: u64, out: &mut Vec<Output>) {
        let WorkerMessage { peer, version, command } = msg;
        let known = self.workers.contains_key(peer.as_slice());
        match command {
            WorkerCommand::Ready { service, extension } => {
                if known {
                    tracing::warn!(worker = %hex(&peer), "second READY from a registered worker: disconnecting it");
                    self.purge_worker(&peer, now, out, "sent a second READY");
                    out.push(Output::Send(Socket::Worker, encode_worker_disconnect(&peer, version)));
                    return;
                }
                self.register(peer, version, service, extension, now, out);
            }
            WorkerCommand::Disconnect => {
                if known {
                    self.purge_worker(&peer, now, out, "disconnected");
                }
            }
            WorkerCommand::Invalid { reason } => {
                // RFC 7/18: an invalid command makes the peer invalid.
                tracing::warn!(worker = %hex(&peer), %reason, "invalid worker command: disconnecting the worker");
                if known {
                    self.purge_worker(&peer, now, out, "sent an invalid command");
                }
                out.push(Output::Send(Socket::Worker, encode_worker_disconnect(&peer, version)));
            }
            _ if !known => {
                // RFC 7/18: a valid but unexpected command gets DISCONNECT.
                out.push(Output::Send(Socket::Worker, encode_worker_disconnect(&peer, version)));
            }
            WorkerCommand::Heartbeat => self.touch(&peer, now),
            WorkerCommand::Moving => self.on_moving(peer, version, now, out),
            WorkerCommand::Partial { address, body } => {
                self.touch(&peer, now);
                self.on_partial(&peer, &address, body, out);
            }
            WorkerCommand::Final { address, body } => {
                self.touch(&peer, now);
                self.on_final(&peer, &address, Ok(body), now, out);
            }
            WorkerCommand::Fail { address, retryable, reason } => {
                self.touch(&peer, now);
                self.on_final(&peer, &address, Err((retryable, reason)), now, out);
            }
            WorkerCommand::ReplyBatch { records } => {
                self.touch(&peer, now);
                let records = protocol::decode_outcome_records(&records).unwrap_or_default();
                // First free the worker's slots (one lookup of the worker for the batch)…
                let Some(w) = self.workers.get_mut(peer.as_slice()) else { return };
                let mut settled = Vec::with_capacity(records.len());
                for (kind, address, data) in records {
                    match JobId::parse(address).and_then(|id| Engine::release(w, id)) {
                        Some((id, attempt)) => settled.push((id, attempt, kind, data)),
                        None => {
                            tracing::debug!(worker = %hex(&peer), "reply for a job this worker does not hold: ignored")
                        }
                    }
                }
                let si = w.service;
                if (w.held.len() as u32) < w.capacity && !w.in_idle {
                    w.in_idle = true;
                    self.services[si].idle.push_back((w.identity.clone(), w.registration));
                }
                // …then record the outcomes…
                for (id, attempt, kind, data) in settled {
                    let outcome = match kind {
                        protocol::outcome::COMPLETE => Ok(vec![data.to_vec()]),
                        k => Err((k == protocol::outcome::FAIL_RETRYABLE, String::from_utf8_lossy(data).into_owned())),
                    };
                    self.conclude(&peer, id, attempt, outcome, now, out);
                }
                // …and refill the freed slots in one message.
                self.dispatch(si, now, out);
            }
        }
    }

    /// How long a worker may stay silent before it is purged: liveness ×
    /// the heartbeat, where a worker without the zmws extension (a stock
    /// Majordomo worker) is allowed the zguide reference interval of
    /// [`STOCK_WORKER_HEARTBEAT_MS`] when the broker's is shorter: such
    /// workers heartbeat at their own pace and send nothing while working.
    fn silence_allowed_ms(config: &EngineConfig, extended: bool) -> u64 {
        let heartbeat = if extended { config.heartbeat_ms } else { config.heartbeat_ms.max(STOCK_WORKER_HEARTBEAT_MS) };
        heartbeat * config.liveness as u64
    }

    fn touch(&mut self, peer: &[u8], now: u64) {
        if let Some(w) = self.workers.get_mut(peer) {
            w.expiry_ms = now + Engine::silence_allowed_ms(&self.config, w.extended);
            w.last_seen_ms = now;
        }
    }

    fn register(
        &mut self,
        peer: Frame,
        version: Version,
        service: Frame,
        ext: Option<Frame>,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let reserved = RESERVED_PREFIXES.iter().any(|p| service.starts_with(p));
        let invalid = service.len() > 255 || std::str::from_utf8(&service).is_err();
        if reserved || invalid || strip_sync(&service).len() != service.len() {
            tracing::warn!(service = %printable(&service), "worker offered a reserved or invalid service name: disconnecting it");
            out.push(Output::Send(Socket::Worker, encode_worker_disconnect(&peer, version)));
            return;
        }
        let known = self.service_index.contains_key(service.as_slice());
        let si = self.ensure_service(&service);
        if !known && self.config.persist {
            self.journal.push(JournalOp::Service(printable(&service)));
        }
        if self.services[si].live_workers >= self.config.max_workers_per_service {
            tracing::warn!(service = %printable(&service), "too many workers for service: disconnecting the newest");
            out.push(Output::Send(Socket::Worker, encode_worker_disconnect(&peer, version)));
            return;
        }
        let ext = ext.as_deref().and_then(protocol::parse_ready_extension);
        let v02 = version == Version::V02;
        let expiry_ms = now + Engine::silence_allowed_ms(&self.config, ext.is_some() && v02);
        let identity: Rc<[u8]> = Rc::from(peer.into_boxed_slice());
        self.workers.insert(
            identity.clone(),
            WorkerRec {
                identity: identity.clone(),
                service: si,
                version,
                extended: ext.is_some() && v02,
                batch: v02 && ext.map(|e| e.batch).unwrap_or(false),
                // Capacity is a zmws extension of MDP/0.2 only.
                capacity: if v02 { ext.map(|e| e.capacity).unwrap_or(1) } else { 1 },
                held: VecDeque::new(),
                in_idle: true,
                registration: self.registrations + 1,
                expiry_ms,
                connected_ms: now,
                last_seen_ms: now,
                jobs_done: 0,
            },
        );
        self.registrations += 1;
        let svc = &mut self.services[si];
        svc.live_workers += 1;
        svc.moved_away = false;
        svc.some_moved_ms = None;
        svc.idle.push_back((identity, self.registrations));
        self.dispatch(si, now, out);
    }

    /// A registered worker asks to leave for another broker (failback). It
    /// stays while it holds jobs (some may be on their way to it), and the
    /// last worker of a service stays while jobs wait in its queue;
    /// otherwise it is removed and told MOVED. A service whose last worker
    /// moved refuses new jobs (421) until a worker registers again.
    fn on_moving(&mut self, peer: Frame, version: Version, now: u64, out: &mut Vec<Output>) {
        let Some(w) = self.workers.get(peer.as_slice()) else { return };
        let si = w.service;
        let svc = &self.services[si];
        let backlog = svc.live_workers == 1
            && svc.queue.iter().any(|id| self.jobs.get(id).is_some_and(|j| j.state == JobState::Queued));
        if !w.held.is_empty() || backlog {
            self.touch(&peer, now);
            let mut m = protocol::encode_worker_heartbeat(&peer, version);
            m.push(protocol::STAY.to_vec());
            out.push(Output::Send(Socket::Worker, m));
            return;
        }
        self.services[si].some_moved_ms = Some(now);
        self.purge_worker(&peer, now, out, "moved to another broker");
        let mut m = encode_worker_disconnect(&peer, version);
        m.push(protocol::MOVED.to_vec());
        out.push(Output::Send(Socket::Worker, m));
    }

    /// Removes a worker; its jobs go back to the front of their queue (or
    /// fail when out of attempts).
    fn purge_worker(&mut self, peer: &[u8], now: u64, out: &mut Vec<Output>, why: &str) {
        let Some(w) = self.workers.remove(peer) else { return };
        let si = w.service;
        let svc = &mut self.services[si];
        svc.live_workers -= 1;
        if svc.live_workers == 0 && svc.some_moved_ms.is_some_and(|t| now.saturating_sub(t) <= MOVED_MEMORY_MS) {
            svc.moved_away = true;
        }
        tracing::info!(worker = %hex(peer), service = %self.services[si].name, why, jobs = w.held.len(), "worker removed");
        // Requeue in reverse so the oldest ends up first.
        for &(id, attempt) in w.held.iter().rev() {
            let current = self.jobs.get(&id).map(|j| {
                j.state == JobState::Active && j.attempts as u32 == attempt && j.worker.as_deref() == Some(peer)
            });
            if current == Some(true) {
                self.retry_or_fail(id, format!("worker {why}"), true, now, out);
            }
        }
        self.dispatch(si, now, out);
    }

    /// Puts an active job back in its queue, or fails it if it used its last attempt.
    fn retry_or_fail(&mut self, id: JobId, why: String, front: bool, now: u64, out: &mut Vec<Output>) {
        let max = self.config.max_attempts;
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if job.attempts as u32 >= max {
            let reason = format!("job failed after {} attempt(s): {why}", job.attempts);
            self.finish(id, JobState::Failed, None, Some(reason), now, out);
            return;
        }
        job.state = JobState::Queued;
        job.worker = None;
        if job.durable() {
            self.journal.push(JournalOp::Requeued { id, attempts: job.attempts as u32 });
        }
        let (si, attempt) = (job.service as usize, job.attempts as u32);
        let svc = &mut self.services[si];
        if front {
            svc.queue.push_front(id);
        } else {
            svc.queue.push_back(id);
        }
        svc.stats.retried += 1;
        self.queued_total += 1;
        self.event(out, "retried", id, si, attempt, Some(why));
        self.dispatch(si, now, out);
    }

    fn on_partial(&mut self, peer: &[u8], address: &[u8], body: Vec<Frame>, out: &mut Vec<Output>) {
        let Some(id) = JobId::parse(address) else { return };
        let Some(job) = self.jobs.get(&id) else { return };
        if job.state != JobState::Active || job.worker.as_deref() != Some(peer) {
            return;
        }
        let (si, attempt) = (job.service as usize, job.attempts as u32);
        match job.waiter() {
            Some(Waiter::Mdp { route, service }) => {
                if let Some(m) = encode_client_reply(route, service, ReplyKind::Partial, body) {
                    out.push(Output::Send(Socket::Client, m));
                }
            }
            Some(Waiter::Call { route, tag }) => {
                let mut b = vec![tag.clone()];
                b.extend(body);
                if let Some(m) = encode_client_reply(route, b"zmws.call", ReplyKind::Partial, b) {
                    out.push(Output::Send(Socket::Client, m));
                }
            }
            None => {}
        }
        self.event(out, "partial", id, si, attempt, None);
    }

    fn on_final(
        &mut self,
        peer: &[u8],
        address: &[u8],
        outcome: Result<Vec<Frame>, (bool, String)>,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        if let Some(si) = self.settle(peer, address, outcome, now, out) {
            self.dispatch(si, now, out);
        }
    }

    /// Records a worker's outcome for one job it holds, without dispatching.
    /// Returns the worker's service when the worker is known.
    fn settle(
        &mut self,
        peer: &[u8],
        address: &[u8],
        outcome: Result<Vec<Frame>, (bool, String)>,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Option<usize> {
        let w = self.workers.get_mut(peer)?;
        let Some((id, attempt)) = JobId::parse(address).and_then(|id| Engine::release(w, id)) else {
            tracing::debug!(worker = %hex(peer), "reply for a job this worker does not hold: ignored");
            return Some(w.service);
        };
        let si = w.service;
        let free = (w.held.len() as u32) < w.capacity;
        if free && !w.in_idle {
            w.in_idle = true;
            self.services[si].idle.push_back((w.identity.clone(), w.registration));
        }
        self.conclude(peer, id, attempt, outcome, now, out);
        Some(si)
    }

    /// Takes job `id` out of the worker's held list; returns it with its attempt.
    fn release(w: &mut WorkerRec, id: JobId) -> Option<(JobId, u32)> {
        let pos = w.held.iter().position(|(j, _)| *j == id)?;
        w.jobs_done += 1;
        w.held.remove(pos)
    }

    /// Applies a worker's outcome to the attempt it answered, if that
    /// attempt is still the job's current one (a late answer is ignored).
    fn conclude(
        &mut self,
        peer: &[u8],
        id: JobId,
        attempt: u32,
        outcome: Result<Vec<Frame>, (bool, String)>,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let current = self
            .jobs
            .get(&id)
            .map(|j| j.state == JobState::Active && j.attempts as u32 == attempt && j.worker.as_deref() == Some(peer))
            .unwrap_or(false);
        if current {
            match outcome {
                Ok(result) => {
                    // Results are kept for the TTL: bound them like payloads.
                    let size: usize = result.iter().map(|f| f.len()).sum();
                    if size > self.config.max_payload {
                        let why =
                            format!("result of {size} bytes is over the limit of {} bytes", self.config.max_payload);
                        self.finish(id, JobState::Failed, None, Some(why), now, out)
                    } else {
                        self.finish(id, JobState::Complete, Some(result), None, now, out)
                    }
                }
                Err((true, reason)) => self.retry_or_fail(id, format!("worker failed it: {reason}"), false, now, out),
                Err((false, reason)) => self.finish(id, JobState::Failed, None, Some(reason), now, out),
            }
        }
    }

    /// Moves a job to a final state, answers its waiter, records it for TTL.
    fn finish(
        &mut self,
        id: JobId,
        state: JobState,
        result: Option<Vec<Frame>>,
        failure: Option<String>,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let payload_bytes = job.payload_bytes();
        // The payload is not needed any more; keep memory small.
        job.payload = Box::default();
        job.state = state;
        let si = job.service as usize;
        let attempt = job.attempts as u32;
        let latency = now.saturating_sub(job.created_ms);
        let durable = job.durable();
        let x = job.extra_mut();
        x.finished_ms = now;
        x.payload_bytes = payload_bytes;
        x.result = result;
        x.failure = failure;
        if let Some(waiter) = x.waiter.take() {
            let (route, service, body) = match waiter {
                Waiter::Mdp { route, service } => {
                    let body = match state {
                        JobState::Complete => x.result.clone().unwrap_or_default(),
                        _ => err_body("500", x.failure.clone().unwrap_or_default()),
                    };
                    (route, service, body)
                }
                Waiter::Call { route, tag } => {
                    let mut body = vec![tag];
                    match state {
                        JobState::Complete => {
                            body.push(b"200".to_vec());
                            body.push(id.to_hex().to_vec());
                            body.extend(x.result.clone().unwrap_or_default());
                        }
                        _ => {
                            body.push(b"500".to_vec());
                            body.push(id.to_hex().to_vec());
                            body.push(x.failure.clone().unwrap_or_default().into_bytes());
                        }
                    }
                    (route, b"zmws.call".to_vec(), body)
                }
            };
            if let Some(m) = encode_client_reply(&route, &service, ReplyKind::Final, body) {
                out.push(Output::Send(Socket::Client, m));
            }
        }
        if durable {
            self.journal.push(JournalOp::Finished {
                id,
                state,
                result: x.result.clone(),
                failure: x.failure.clone(),
                at_ms: now,
                attempts: attempt,
            });
        }
        let detail = x.failure.clone();
        let stats = &mut self.services[si].stats;
        let kind = match state {
            JobState::Complete => {
                stats.completed += 1;
                stats.latency_ms_sum += latency;
                let b = LATENCY_BUCKETS_MS.iter().position(|&ub| latency <= ub).unwrap_or(LATENCY_BUCKETS_MS.len());
                stats.latency_buckets[b] += 1;
                "completed"
            }
            JobState::Cancelled => {
                stats.cancelled += 1;
                "cancelled"
            }
            _ => {
                stats.failed += 1;
                "failed"
            }
        };
        self.finished.push_back((now, id));
        self.event(out, kind, id, si, attempt, detail);
        self.prune_finished(now);
    }

    fn prune_finished(&mut self, now: u64) {
        while let Some(&(finished_ms, id)) = self.finished.front() {
            let kept = self.finished.len() - self.closed_in_finished.min(self.finished.len());
            let expired =
                kept > self.config.max_finished || now.saturating_sub(finished_ms) >= self.config.result_ttl_ms;
            if !expired {
                break;
            }
            self.finished.pop_front();
            if !self.forget(id) {
                // Closed before it expired: one closed entry fewer.
                self.closed_in_finished = self.closed_in_finished.saturating_sub(1);
            }
        }
    }

    /// Drops a job record (and its idempotency key and stored row); false
    /// if there was none.
    fn forget(&mut self, id: JobId) -> bool {
        if let Some(job) = self.jobs.remove(&id) {
            if let Some(k) = job.extra.and_then(|x| x.unique_key) {
                if self.uniques.get(&k) == Some(&id) {
                    self.uniques.remove(&k);
                }
            }
            if job.flags & DURABLE != 0 {
                self.journal.push(JournalOp::Delete { id });
            }
            return true;
        }
        false
    }

    /// Pairs queued jobs of service `si` with its idle workers. A worker
    /// that takes batches gets up to its free slots in one REQUEST_BATCH
    /// (an even share of the queue among the idle workers); others get one
    /// REQUEST per job.
    fn dispatch(&mut self, si: usize, now: u64, out: &mut Vec<Output>) {
        let mut given: Vec<(JobId, u32)> = Vec::new();
        // Batch workers get an even share of what is queued now.
        let spread = {
            let svc = &self.services[si];
            svc.queue.len().div_ceil(svc.idle.len().max(1)).max(1)
        };
        loop {
            let svc = &mut self.services[si];
            if svc.queue.is_empty() {
                return;
            }
            // Find an idle worker with room.
            let Some((wid, registration)) = svc.idle.pop_front() else { return };
            let Some(w) = self.workers.get_mut(&wid) else { continue };
            if w.registration != registration {
                continue; // an entry left by an earlier registration of this identity
            }
            w.in_idle = false;
            let free = w.capacity.saturating_sub(w.held.len() as u32) as usize;
            if free == 0 {
                continue;
            }
            let share = if w.batch { free.min(spread) } else { 1 };
            let mut records = Vec::new();
            given.clear();
            while given.len() < share {
                // Find a job that is still queued (cancelled ones are skipped).
                let Some(id) = svc.queue.pop_front() else { break };
                let Some(job) = self.jobs.get_mut(&id) else { continue };
                if job.state != JobState::Queued {
                    continue;
                }
                self.queued_total -= 1;
                job.state = JobState::Active;
                job.attempts += 1;
                job.worker = Some(w.identity.clone());
                job.started_ms = now;
                let attempt = job.attempts as u32;
                if job.durable() {
                    self.journal.push(JournalOp::Started { id, attempt, at_ms: now });
                }
                w.held.push_back((id, attempt));
                let single = [&job.payload[..]];
                let multi;
                let frames: &[&[u8]] = if job.flags & MULTI_FRAME == 0 {
                    &single
                } else {
                    multi = frame_slices(&job.payload, true);
                    &multi
                };
                if w.batch {
                    encode_job_record(&mut records, &id.to_hex(), attempt, frames);
                } else {
                    let msg = encode_worker_request(
                        &w.identity,
                        w.version,
                        &id.to_hex(),
                        w.extended.then_some(attempt),
                        frames,
                    );
                    out.push(Output::Send(Socket::Worker, msg));
                }
                given.push((id, attempt));
            }
            if given.is_empty() {
                w.in_idle = true;
                svc.idle.push_front((wid, registration));
                return;
            }
            if w.batch {
                out.push(Output::Send(Socket::Worker, encode_worker_request_batch(&w.identity, records)));
            }
            if (w.held.len() as u32) < w.capacity {
                w.in_idle = true;
                svc.idle.push_back((wid, registration));
            }
            for &(id, attempt) in &given {
                self.deadlines.push_back((now + self.config.job_timeout_ms, id, attempt));
            }
            if self.config.emit_events {
                for &(id, attempt) in &given {
                    self.event(out, "started", id, si, attempt, None);
                }
            }
        }
    }

    // ----------------------------------------------------------------- time

    /// Purges expired workers, retries timed-out jobs, sends heartbeats and
    /// prunes old results. Call it at [`Engine::next_wakeup`] or later.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Output>) {
        // Timed-out attempts.
        while let Some(&(deadline, id, attempt)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            let live = self
                .jobs
                .get(&id)
                .map(|j| j.state == JobState::Active && j.attempts as u32 == attempt)
                .unwrap_or(false);
            if live {
                let timeout = self.config.job_timeout_ms;
                self.retry_or_fail(id, format!("attempt {attempt} timed out after {timeout} ms"), false, now, out);
            }
        }
        // Expired workers: collect first, the purge mutates the map. A stock
        // Majordomo worker (no zmws extension) sends nothing while it works
        // (zguide `mdwrkapi`), so its silence only counts while it is idle,
        // as in the reference broker; a busy one that died is found when the
        // heartbeat to it cannot be delivered (its connection is gone: the
        // I/O layer reports it unreachable), and a hung one loses its job to
        // the job timeout.
        let expired: Vec<Rc<[u8]>> = self
            .workers
            .values()
            .filter(|w| w.expiry_ms <= now && (w.extended || w.held.is_empty()))
            .map(|w| w.identity.clone())
            .collect();
        for id in expired {
            self.purge_worker(&id, now, out, "missed its heartbeats");
        }
        if now >= self.next_heartbeat_ms {
            for w in self.workers.values() {
                out.push(Output::Send(Socket::Worker, encode_worker_heartbeat(&w.identity, w.version)));
            }
            self.next_heartbeat_ms = now + self.config.heartbeat_ms;
        }
        self.prune_finished(now);
    }

    /// The broker is stopping: tells every registered worker DISCONNECT, so
    /// workers with another broker in their list move there at once instead
    /// of after heartbeat × liveness of silence. Jobs they hold are not
    /// requeued here (the store, if any, requeues them at the next start).
    pub fn farewell(&self, out: &mut Vec<Output>) {
        for w in self.workers.values() {
            let mut frames = encode_worker_disconnect(&w.identity[..], w.version);
            if w.extended {
                // zmws workers learn why, and go to their next broker.
                frames.push(protocol::DISCONNECT_STOPPING.to_vec());
            }
            out.push(Output::Send(Socket::Worker, frames));
        }
    }

    /// The I/O layer could not deliver to this worker (it vanished): treat it as dead.
    pub fn worker_unreachable(&mut self, peer: &[u8], now: u64, out: &mut Vec<Output>) {
        self.purge_worker(peer, now, out, "is unreachable");
    }

    // ----------------------------------------------------------------- store

    /// Takes the journal of changes made since the last call.
    pub fn take_journal(&mut self) -> Vec<JournalOp> {
        std::mem::take(&mut self.journal)
    }

    /// The commit of `ops` failed: new async jobs of that batch are dropped
    /// and their acknowledgements in `out` turned into refusals; further
    /// async jobs are refused until [`Engine::store_recovered`]. Returns the
    /// batch's other ops (starts, finishes, requeues, deletes of jobs already
    /// on disk), in order, to be written again before anything newer: a job
    /// that finishes while the disk is full must not come back as queued.
    #[must_use = "the returned ops must be committed again"]
    pub fn store_failed(
        &mut self,
        ops: Vec<JournalOp>,
        reason: String,
        _now: u64,
        out: &mut [Output],
    ) -> Vec<JournalOp> {
        if self.store_error.is_none() {
            tracing::error!(%reason, "job store write failed: refusing new async jobs until it accepts writes again");
        } else {
            tracing::debug!(%reason, "job store write failed again");
        }
        self.store_error = Some(reason);
        let mut lost = std::collections::HashSet::new();
        for op in &ops {
            if let JournalOp::Insert { id, .. } = op {
                lost.insert(*id);
            }
        }
        let why = self.store_error.as_deref().unwrap_or_default();
        for o in out.iter_mut() {
            if let Output::Durable { job, ok, refused } = o {
                if lost.contains(job) {
                    // The refusal's last frame is its message: name the cause.
                    if let Some(message) = refused.last_mut() {
                        *message = format!("the job store refused the write: {why}").into_bytes();
                    }
                    *ok = std::mem::take(refused);
                }
            }
        }
        for &id in &lost {
            let mut in_finished = false;
            if let Some(j) = self.jobs.get_mut(&id) {
                if j.state == JobState::Queued {
                    self.queued_total -= 1;
                }
                in_finished = j.state.is_final();
                // Final and not durable: a worker's reply is ignored, nothing is journaled.
                j.state = JobState::Failed;
                j.flags &= !DURABLE;
            }
            if self.forget(id) && in_finished {
                self.closed_in_finished += 1;
            }
        }
        let of_kept_job = |op: &JournalOp| match op {
            JournalOp::Service(_) => true,
            JournalOp::Insert { .. } => false,
            JournalOp::Started { id, .. }
            | JournalOp::Requeued { id, .. }
            | JournalOp::Finished { id, .. }
            | JournalOp::Delete { id } => !lost.contains(id),
        };
        self.journal.retain(|op| of_kept_job(op));
        ops.into_iter().filter(|op| of_kept_job(op)).collect()
    }

    /// The store accepts writes again.
    pub fn store_recovered(&mut self) {
        if self.store_error.take().is_some() {
            tracing::info!("job store writable again: accepting async jobs");
        }
    }

    /// Whether new async jobs are being refused because the store failed.
    pub fn store_failing(&self) -> bool {
        self.store_error.is_some()
    }

    /// Rebuilds state from the store at start-up: queued jobs in creation
    /// order, jobs that were running become queued again (their attempt
    /// counted; out of attempts means failed), finished jobs stay queryable
    /// until their TTL.
    pub fn restore(&mut self, loaded: Loaded, now: u64) {
        for name in loaded.services {
            self.ensure_service(name.as_bytes());
        }
        let mut requeued = 0usize;
        for sj in loaded.jobs {
            let si = self.ensure_service(sj.service.as_bytes());
            let mut state = sj.state;
            let mut failure = sj.failure;
            let mut finished_ms = sj.finished_ms;
            if state == JobState::Active {
                if sj.attempts >= self.config.max_attempts {
                    state = JobState::Failed;
                    failure = Some(format!(
                        "job failed after {} attempt(s): the broker stopped during the last one",
                        sj.attempts
                    ));
                    finished_ms = now;
                    let attempts = sj.attempts;
                    self.journal.push(JournalOp::Finished {
                        id: sj.id,
                        state,
                        result: None,
                        failure: failure.clone(),
                        at_ms: now,
                        attempts,
                    });
                } else {
                    state = JobState::Queued;
                    self.journal.push(JournalOp::Requeued { id: sj.id, attempts: sj.attempts });
                    requeued += 1;
                }
            }
            let payload_bytes = sj.payload.iter().map(|f| f.len()).sum();
            let (payload, multi) = if state.is_final() { (Box::default(), false) } else { pack_frames(sj.payload) };
            let unique_key = sj.unique_key.map(String::into_boxed_str);
            if let Some(k) = &unique_key {
                self.uniques.insert(k.clone(), sj.id);
            }
            let extra = if state.is_final() || unique_key.is_some() {
                Some(Box::new(JobExtra {
                    finished_ms,
                    payload_bytes,
                    result: sj.result,
                    failure,
                    waiter: None,
                    unique_key,
                }))
            } else {
                None
            };
            let job = Job {
                payload,
                worker: None,
                created_ms: sj.created_ms,
                started_ms: sj.started_ms,
                extra,
                service: si as u32,
                attempts: sj.attempts.min(u16::MAX as u32) as u16,
                state,
                flags: DURABLE | if multi { MULTI_FRAME } else { 0 },
            };
            if state.is_final() {
                self.finished.push_back((sj.finished_ms, sj.id));
            } else {
                self.services[si].queue.push_back(sj.id);
                self.queued_total += 1;
            }
            self.jobs.insert(sj.id, job);
        }
        // Finished jobs were loaded in creation order; order them by finish time.
        let mut fin: Vec<(u64, JobId)> = self.finished.drain(..).collect();
        fin.sort_by_key(|&(at, _)| at);
        self.finished = fin.into();
        self.prune_finished(now);
        tracing::info!(queued = self.queued_total, requeued, kept = self.finished.len(), "job store restored");
    }

    fn ensure_service(&mut self, name: &[u8]) -> usize {
        if let Some(&i) = self.service_index.get(name) {
            return i;
        }
        self.services.push(Service {
            name: Rc::from(printable(name).as_str()),
            journal_name: std::sync::Arc::from(printable(name).as_str()),
            queue: VecDeque::new(),
            idle: VecDeque::new(),
            live_workers: 0,
            moved_away: false,
            some_moved_ms: None,
            stats: ServiceStats { latency_buckets: vec![0; LATENCY_BUCKETS_MS.len() + 1], ..Default::default() },
        });
        self.service_index.insert(name.to_vec().into_boxed_slice(), self.services.len() - 1);
        self.services.len() - 1
    }

    // ----------------------------------------------------------------- views

    fn status_of(&self, id: JobId, job: &Job) -> JobStatus {
        JobStatus {
            job_id: id.to_string(),
            service: self.services[job.service as usize].name.to_string(),
            state: job.state,
            attempts: job.attempts as u32,
            max_attempts: self.config.max_attempts,
            worker: job.worker.as_deref().map(hex),
            created_ms: job.created_ms,
            started_ms: (job.attempts > 0).then_some(job.started_ms),
            finished_ms: job.state.is_final().then_some(job.finished_ms()),
            failure: job.failure().cloned(),
            payload_bytes: job.payload_bytes(),
            result_bytes: job.result().map(|r| r.iter().map(|f| f.len()).sum()),
        }
    }

    /// Status of one job, if known.
    pub fn job_status(&self, id: JobId) -> Option<JobStatus> {
        self.jobs.get(&id).map(|j| self.status_of(id, j))
    }

    /// One of the job listings, capped at `list_limit` entries.
    pub fn list_jobs(&self, kind: JobList) -> Vec<JobStatus> {
        let limit = self.config.list_limit;
        match kind {
            JobList::Queued => {
                let mut v = Vec::new();
                'outer: for svc in &self.services {
                    for id in &svc.queue {
                        if let Some(j) = self.jobs.get(id).filter(|j| j.state == JobState::Queued) {
                            v.push(self.status_of(*id, j));
                            if v.len() >= limit {
                                break 'outer;
                            }
                        }
                    }
                }
                v.sort_by(|a, b| a.job_id.cmp(&b.job_id));
                v
            }
            JobList::Active => {
                let mut v: Vec<JobStatus> = self
                    .workers
                    .values()
                    .flat_map(|w| w.held.iter())
                    .filter_map(|(id, _)| self.jobs.get(id).filter(|j| j.state == JobState::Active).map(|j| (*id, j)))
                    .map(|(id, j)| self.status_of(id, j))
                    .take(limit)
                    .collect();
                v.sort_by(|a, b| a.job_id.cmp(&b.job_id));
                v.dedup_by(|a, b| a.job_id == b.job_id);
                v
            }
            JobList::History => self
                .finished
                .iter()
                .rev()
                .filter_map(|(_, id)| self.jobs.get(id).map(|j| (*id, j)))
                .take(self.config.history_len.min(limit))
                .map(|(id, j)| self.status_of(id, j))
                .collect(),
        }
    }

    /// All live workers, oldest first.
    pub fn list_workers(&self) -> Vec<WorkerInfo> {
        let mut v: Vec<WorkerInfo> = self
            .workers
            .values()
            .map(|w| WorkerInfo {
                worker: hex(&w.identity),
                service: self.services[w.service].name.to_string(),
                state: if w.held.is_empty() { "idle".into() } else { "busy".into() },
                capacity: w.capacity,
                active_jobs: w.held.iter().map(|(id, _)| id.to_string()).collect(),
                jobs_done: w.jobs_done,
                protocol: w.version.as_str().into(),
                connected_ms: w.connected_ms,
                last_seen_ms: w.last_seen_ms,
            })
            .collect();
        v.sort_by(|a, b| (a.connected_ms, &a.worker).cmp(&(b.connected_ms, &b.worker)));
        v
    }

    /// Every service ever offered, with queue depth, worker counts and counters.
    pub fn list_services(&self) -> Vec<serde_json::Value> {
        self.services
            .iter()
            .enumerate()
            .map(|(si, s)| {
                let busy = self.workers.values().filter(|w| w.service == si && !w.held.is_empty()).count();
                let active: usize = self
                    .workers
                    .values()
                    .filter(|w| w.service == si)
                    .map(|w| {
                        w.held
                            .iter()
                            .filter(|(id, a)| {
                                self.jobs
                                    .get(id)
                                    .map(|j| j.state == JobState::Active && j.attempts as u32 == *a)
                                    .unwrap_or(false)
                            })
                            .count()
                    })
                    .sum();
                let queued = s
                    .queue
                    .iter()
                    .filter(|id| self.jobs.get(id).map(|j| j.state == JobState::Queued).unwrap_or(false))
                    .count();
                serde_json::json!({
                    "service": &*s.name,
                    "queued": queued,
                    "active": active,
                    "workers": s.live_workers,
                    "workers_busy": busy,
                    "stats": s.stats,
                })
            })
            .collect()
    }

    fn event(
        &self,
        out: &mut Vec<Output>,
        kind: &'static str,
        job_id: JobId,
        si: usize,
        attempt: u32,
        detail: Option<String>,
    ) {
        if self.config.emit_events {
            out.push(Output::Event(JobEvent {
                kind,
                job_id,
                service: self.services[si].name.clone(),
                attempt,
                detail,
            }));
        }
    }
}

impl JobEvent {
    /// The JSON text published for this event.
    pub fn to_json(&self, now_ms: u64) -> String {
        use std::fmt::Write;
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let mut out = String::with_capacity(160);
        let _ = write!(
            out,
            "{{\"event\":\"{}\",\"job_id\":\"{}\",\"service\":{},\"attempt\":{},\"detail\":{},\"ts_ms\":{}}}",
            self.kind,
            self.job_id,
            quote(&self.service),
            self.attempt,
            self.detail.as_deref().map(quote).unwrap_or_else(|| "null".into()),
            now_ms
        );
        out
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
