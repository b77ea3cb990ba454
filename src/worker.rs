//! The zmws worker: registers one service with a broker and pulls jobs.
//!
//! The broker connection (a DEALER socket) lives in [`Connection`] behind a
//! mutex, and whichever thread holds it does the I/O: the caller's thread in
//! [`Worker::next_event`] and [`Worker::complete`] (so a job reaches the
//! caller and a result reaches the broker with no thread hand-off), and a
//! small keeper thread while the caller is busy running a job (so
//! heartbeats go on and a job may run for minutes without being taken for
//! dead). The keeper only ever *tries* the lock. The holder sends READY and
//! heartbeats, watches the broker's heartbeats, and reconnects (to the next
//! endpoint of the list) when the broker goes quiet or sends DISCONNECT.
//!
//! With a zmws broker, jobs come in REQUEST_BATCH messages (up to the free
//! capacity at once) and outcomes go back in REPLY_BATCH messages: an
//! outcome is held back only while more received jobs wait to be taken
//! (and never longer than [`REPLY_HOLD`]), so batching never delays the
//! last result of a burst.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::client::{split_endpoints, FAILBACK_PROBE_INTERVAL, FAILBACK_SETTLE};
use crate::error::{Error, Result};
use crate::fork::Origin;
use crate::job::{IdHash, JobId};
use crate::protocol::{
    self, outcome, Frame, MDPW02, READY_EXTENSION_PREFIX, W_DISCONNECT_OR_HEARTBEAT, W_DISCONNECT_V2, W_FAIL,
    W_HEARTBEAT_OR_FINAL, W_READY, W_REPLY_BATCH, W_REPLY_OR_PARTIAL, W_REQUEST, W_REQUEST_BATCH,
};

/// Longest time an outcome waits in the reply batch.
pub const REPLY_HOLD: Duration = Duration::from_millis(2);

/// How a worker connects and behaves.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Broker worker endpoints, tried in order (failover).
    pub endpoints: Vec<String>,
    /// The one service this worker offers.
    pub service: String,
    /// Jobs it may hold at once (zmws extension; 1 for plain MDP).
    pub capacity: u32,
    /// Heartbeat interval, ms (must match the broker's).
    pub heartbeat_ms: u64,
    /// Missed broker heartbeats before reconnecting.
    pub liveness: u32,
    /// Heartbeat intervals without a job before an `Idle` event (the seed's 3).
    pub idle_after: u32,
    /// Pause before reconnecting, ms.
    pub reconnect_ms: u64,
}

impl WorkerConfig {
    /// Defaults: capacity 1, heartbeat 1000 ms × 3, idle after 3 quiet heartbeats.
    pub fn new(endpoints: &str, service: &str) -> WorkerConfig {
        WorkerConfig {
            endpoints: split_endpoints(endpoints),
            service: service.to_string(),
            capacity: 1,
            heartbeat_ms: 1000,
            liveness: 3,
            idle_after: 3,
            reconnect_ms: 250,
        }
    }
}

/// One job handed to a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// 32-hex job id (the MDP client-address envelope).
    pub id: String,
    /// Attempt number, 1 for the first run.
    pub attempt: u32,
    /// The payload (all request frames, concatenated).
    pub payload: Vec<u8>,
}

/// What [`Worker::next_event`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerEvent {
    /// A job to run; answer it with complete, fail or partial.
    Job(Job),
    /// No job for `idle_after` heartbeats: a good moment for housekeeping.
    Idle,
    /// Nothing happened before the timeout.
    Timeout,
}

/// A flag that stops a worker; cheap to clone, safe to set from any thread
/// (and, being one atomic store, from a signal handler).
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the worker to stop after the current job.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether stop was asked.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A worker connection. `Send + Sync`: jobs may be answered from other threads.
pub struct Worker {
    config: WorkerConfig,
    shared: Arc<Shared>,
    stop: StopHandle,
    keeper: Option<JoinHandle<()>>,
    keeper_thread: std::thread::Thread,
    jobs_done: AtomicU64,
    /// The process this worker belongs to (see `fork`).
    origin: Origin,
}

/// What the caller's threads and the keeper thread share.
struct Shared {
    conn: Mutex<Connection>,
    /// Wakes the thread polling inside `next_event` when another thread
    /// waits for the connection (to answer a job).
    wake_tx: Mutex<zmq::Socket>,
    shutdown: AtomicBool,
    /// Set (under the connection lock) while outcomes are held back for a
    /// batch; the keeper then checks every half [`REPLY_HOLD`].
    holding: AtomicBool,
    /// The keeper is in (or about to start) a long sleep.
    keeper_asleep: AtomicBool,
    /// Threads waiting for the connection to answer a job. A thread polling
    /// in `next_event` hands the connection over while this is non-zero, so
    /// an answer never waits out another thread's poll.
    answering: AtomicUsize,
}

static WAKE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Worker {
    /// Connects a worker for `service` to `endpoints` (comma-separated list).
    pub fn connect(endpoints: &str, service: &str) -> Result<Worker> {
        Worker::with_config(WorkerConfig::new(endpoints, service))
    }

    /// Connects with a full configuration.
    pub fn with_config(config: WorkerConfig) -> Result<Worker> {
        if config.service.is_empty() || config.service.len() > 255 {
            return Err(Error::InvalidArgument("service name must be 1 to 255 bytes".into()));
        }
        if config.endpoints.is_empty() {
            return Err(Error::InvalidArgument("no broker endpoint given".into()));
        }
        if config.capacity == 0 {
            return Err(Error::InvalidArgument("capacity must be at least 1".into()));
        }
        let ctx = zmq::Context::new();
        let wake_addr = format!("inproc://zmws-worker-wake-{}", WAKE_COUNTER.fetch_add(1, Ordering::Relaxed));
        let wake_rx = ctx.socket(zmq::PAIR)?;
        wake_rx.bind(&wake_addr)?;
        let wake_tx = ctx.socket(zmq::PAIR)?;
        wake_tx.connect(&wake_addr)?;
        for s in [&wake_rx, &wake_tx] {
            s.set_sndhwm(16)?;
            s.set_rcvhwm(16)?;
            s.set_linger(0)?;
        }
        // Validate endpoints now so a typo is an error, not a silent retry loop.
        // (The probe must not outlive this call: no linger, a short handshake.)
        let probe = ctx.socket(zmq::DEALER)?;
        probe.set_linger(0)?;
        probe.set_handshake_ivl(100)?;
        for ep in &config.endpoints {
            probe.connect(ep).map_err(|e| Error::InvalidArgument(format!("cannot connect to '{ep}': {e}")))?;
            let _ = probe.disconnect(ep);
        }
        drop(probe);
        let now = Instant::now();
        let mut conn = Connection {
            ctx,
            config: config.clone(),
            socket: None,
            wake_rx,
            index: 0,
            generation: 0,
            held: HashMap::default(),
            pending: VecDeque::new(),
            outbox: Vec::new(),
            outbox_jobs: 0,
            outbox_since: now,
            heard: now,
            next_heartbeat: now,
            reconnect_at: now,
            last_activity: now,
            active: false,
            probe: None,
            probe_until: now,
            next_probe: now,
            first_up_since: None,
            move_asked: None,
            move_after: now,
        };
        conn.ensure_connected(now);
        let shared = Arc::new(Shared {
            conn: Mutex::new(conn),
            wake_tx: Mutex::new(wake_tx),
            shutdown: AtomicBool::new(false),
            holding: AtomicBool::new(false),
            keeper_asleep: AtomicBool::new(false),
            answering: AtomicUsize::new(0),
        });
        let keeper_shared = shared.clone();
        let tick = Duration::from_millis((config.heartbeat_ms / 4).clamp(1, 50));
        let keeper = std::thread::Builder::new()
            .name("zmws-worker-keeper".into())
            .spawn(move || keep(keeper_shared, tick))
            .map_err(|e| Error::Io(format!("cannot start worker thread: {e}")))?;
        Ok(Worker {
            config,
            shared,
            stop: StopHandle(Arc::new(AtomicBool::new(false))),
            keeper_thread: keeper.thread().clone(),
            keeper: Some(keeper),
            jobs_done: AtomicU64::new(0),
            origin: Origin::here(),
        })
    }

    /// The service this worker offers.
    pub fn service(&self) -> &str {
        &self.config.service
    }

    /// Jobs answered (completed or failed) so far.
    pub fn jobs_done(&self) -> u64 {
        self.jobs_done.load(Ordering::Relaxed)
    }

    /// A handle that stops this worker from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Asks the worker to stop: `next_event` returns `Closed`, `run` returns.
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// Whether stop was asked.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_stopped()
    }

    /// Waits up to `timeout` for a job, an idle spell, or nothing.
    pub fn next_event(&self, timeout: Duration) -> Result<WorkerEvent> {
        self.next_event_within(&mut Wait::For(timeout))
    }

    fn next_event_within(&self, wait: &mut Wait) -> Result<WorkerEvent> {
        self.origin.check("Worker")?;
        let idle_span = Duration::from_millis(self.config.heartbeat_ms * self.config.idle_after.max(1) as u64);
        // Another thread may be waiting here already: wait for it within our own timeout.
        let mut conn = match self.shared.conn.try_lock() {
            Some(c) => c,
            None => match self.shared.conn.try_lock_until(wait.deadline()) {
                Some(c) => c,
                None => return Ok(WorkerEvent::Timeout),
            },
        };
        loop {
            if self.stop.is_stopped() {
                return Err(Error::Closed("worker stopped".into()));
            }
            if self.shared.shutdown.load(Ordering::SeqCst) {
                return Err(Error::Closed("worker connection is closed".into()));
            }
            if let Some(job) = conn.pending.pop_front() {
                if conn.pending.is_empty() {
                    conn.flush_outbox();
                }
                conn.active = true;
                return Ok(WorkerEvent::Job(job));
            }
            let now = Instant::now();
            if conn.active {
                // A job was taken or answered since the last look at the
                // clock: the idle spell starts now (one clock read per
                // wait rather than two per job).
                conn.active = false;
                conn.last_activity = now;
            }
            if now.duration_since(conn.last_activity) >= idle_span {
                conn.last_activity = now;
                return Ok(WorkerEvent::Idle);
            }
            conn.maintain(now);
            if !conn.pending.is_empty() {
                continue;
            }
            let deadline = wait.deadline();
            if now >= deadline {
                return Ok(WorkerEvent::Timeout);
            }
            if self.shared.answering.load(Ordering::SeqCst) > 0 {
                // A thread wants to answer its job: hand the connection over
                // (fairly: the first thread queued gets it; other pollers
                // queued before it pass it on the same way).
                MutexGuard::unlocked_fair(&mut conn, || {});
                continue;
            }
            let wait = deadline.min(conn.next_deadline()).saturating_duration_since(now).min(Duration::from_millis(50));
            // Round up: a 0 ms poll on a sub-millisecond wait would spin.
            let wait_ms = (wait.as_micros() as i64 + 999) / 1000;
            let (broker_ready, woken) = match conn.poll(wait_ms) {
                Ok(r) => r,
                Err(zmq::Error::EINTR) => continue, // a signal: the stop flag is checked above
                Err(e) => return Err(e.into()),
            };
            if broker_ready {
                conn.receive(Instant::now());
            }
            if woken {
                // The thread that woke us is counted in `answering`: the
                // check above hands it the connection.
                conn.drain_wake();
            }
        }
    }

    /// Waits up to `timeout` for a job; `None` when none came (idle spells are skipped).
    pub fn next_job(&self, timeout: Duration) -> Result<Option<Job>> {
        let mut wait = Wait::For(timeout);
        loop {
            match self.next_event_within(&mut wait)? {
                WorkerEvent::Job(j) => return Ok(Some(j)),
                WorkerEvent::Timeout => return Ok(None),
                WorkerEvent::Idle => continue,
            }
        }
    }

    /// Takes the connection, waking a thread that polls inside `next_event`.
    fn lock_connection(&self) -> Result<MutexGuard<'_, Connection>> {
        self.origin.check("Worker")?;
        if self.shared.shutdown.load(Ordering::SeqCst) {
            return Err(Error::Closed("worker connection is closed".into()));
        }
        let conn = match self.shared.conn.try_lock() {
            Some(c) => c,
            None => {
                self.shared.answering.fetch_add(1, Ordering::SeqCst);
                let _ = self.shared.wake_tx.lock().send(&[][..], zmq::DONTWAIT);
                let conn = self.shared.conn.lock();
                self.shared.answering.fetch_sub(1, Ordering::SeqCst);
                conn
            }
        };
        Ok(conn)
    }

    fn check_id(job_id: &str) -> Result<JobId> {
        JobId::parse(job_id.as_bytes()).ok_or_else(|| Error::InvalidArgument(format!("'{job_id}' is not a job id")))
    }

    /// Completes a job with its result.
    pub fn complete(&self, job_id: &str, result: &[u8]) -> Result<()> {
        let id = Worker::check_id(job_id)?;
        self.answer(id, outcome::COMPLETE, result)
    }

    fn answer(&self, id: JobId, kind: u8, data: &[u8]) -> Result<()> {
        let mut conn = self.lock_connection()?;
        if conn.answer(id, kind, data) {
            // A batch is being held back: make sure the keeper sends it in time.
            self.shared.holding.store(true, Ordering::SeqCst);
            drop(conn);
            if self.shared.keeper_asleep.load(Ordering::SeqCst) {
                self.keeper_thread.unpark();
            }
        }
        self.jobs_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Fails a job with a reason. A `retryable` failure is run again on
    /// another attempt (if any are left); otherwise the job ends now.
    pub fn fail(&self, job_id: &str, reason: &str, retryable: bool) -> Result<()> {
        let id = Worker::check_id(job_id)?;
        let kind = if retryable { outcome::FAIL_RETRYABLE } else { outcome::FAIL };
        self.answer(id, kind, reason.as_bytes())
    }

    /// Sends a partial result (progress) to a client waiting on the job.
    pub fn partial(&self, job_id: &str, data: &[u8]) -> Result<()> {
        let id = Worker::check_id(job_id)?;
        self.lock_connection()?.partial(id, data);
        Ok(())
    }

    /// Runs jobs through `handler` until [`Worker::stop`]: `Ok(result)`
    /// completes a job, `Err(reason)` fails it.
    pub fn run<F>(&self, mut handler: F) -> Result<()>
    where
        F: FnMut(&Job) -> std::result::Result<Vec<u8>, String>,
    {
        // A forked child gets the reason, not a quiet end of the loop.
        self.origin.check("Worker")?;
        loop {
            match self.next_event(Duration::from_millis(200)) {
                Ok(WorkerEvent::Job(job)) => match handler(&job) {
                    Ok(r) => self.complete(&job.id, &r)?,
                    Err(reason) => self.fail(&job.id, &reason, false)?,
                },
                Ok(_) => {}
                Err(Error::Closed(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the connection: pending replies are flushed, the broker is told
    /// DISCONNECT (so jobs not yet answered are requeued), the thread joins.
    pub fn close(mut self) {
        self.close_inner();
    }

    fn close_inner(&mut self) {
        if self.origin.is_forked_child() {
            // The keeper thread and libzmq's I/O thread live in the parent
            // only: release nothing here (the child's exit reclaims it).
            std::mem::forget(self.shared.clone());
            std::mem::forget(self.keeper.take());
            return;
        }
        if self.shared.shutdown.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.shared.wake_tx.lock().send(&[][..], zmq::DONTWAIT);
        self.keeper_thread.unpark();
        if let Some(t) = self.keeper.take() {
            let _ = t.join();
        }
        self.shared.conn.lock().disconnect();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.close_inner();
    }
}

/// The keeper thread: while nobody else holds the connection, it keeps
/// heartbeats, reconnection and held-back replies going.
fn keep(shared: Arc<Shared>, tick: Duration) {
    // Ticks of REPLY_HOLD/2 while answers are being held back, and for a
    // while after (so a steady stream of batches needs no wake-ups); the
    // slow tick otherwise, and then an answer that starts a hold unparks us.
    const BUSY_TICKS: u32 = 50;
    let short = REPLY_HOLD / 2;
    let mut busy_left = 0u32;
    while !shared.shutdown.load(Ordering::SeqCst) {
        if shared.holding.load(Ordering::SeqCst) {
            busy_left = BUSY_TICKS;
        }
        let wait = if busy_left > 0 {
            busy_left -= 1;
            short
        } else {
            // Announce the long sleep, then look again: an answer that
            // started a hold meanwhile either sees the flag or is seen here.
            shared.keeper_asleep.store(true, Ordering::SeqCst);
            if shared.holding.load(Ordering::SeqCst) {
                shared.keeper_asleep.store(false, Ordering::SeqCst);
                busy_left = BUSY_TICKS;
                short
            } else {
                tick
            }
        };
        std::thread::park_timeout(wait);
        shared.keeper_asleep.store(false, Ordering::SeqCst);
        if let Some(mut conn) = shared.conn.try_lock() {
            let now = Instant::now();
            conn.receive(now);
            conn.maintain(now);
            if conn.outbox_jobs == 0 {
                shared.holding.store(false, Ordering::SeqCst);
            }
        }
    }
}

/// Reads the parts of one message into `parts` (emptied first) without
/// waiting; false when none is there.
fn recv_parts(socket: &zmq::Socket, parts: &mut Vec<zmq::Message>) -> bool {
    parts.clear();
    loop {
        match socket.recv_msg(zmq::DONTWAIT) {
            Ok(part) => {
                let more = part.get_more();
                parts.push(part);
                if !more {
                    return true;
                }
            }
            // The parts of a message arrive together: an error here means
            // there was no message (or the socket is going away).
            Err(_) => return !parts.is_empty(),
        }
    }
}

/// How long `next_event` may wait. The clock is read only once the call
/// has to wait: a job already received is handed out without a clock read.
enum Wait {
    For(Duration),
    Until(Instant),
}

impl Wait {
    /// The deadline, fixed at the first call.
    fn deadline(&mut self) -> Instant {
        match *self {
            Wait::Until(t) => t,
            Wait::For(d) => {
                let t = crate::deadline_after(d);
                *self = Wait::Until(t);
                t
            }
        }
    }
}

/// Where a held job came from.
#[derive(Clone, Copy)]
struct Held {
    /// Connection generation that delivered it.
    generation: u64,
    /// It came in a REQUEST_BATCH, so its outcome may go in a REPLY_BATCH.
    batched: bool,
}

/// The broker connection and the state that goes with it. Only the thread
/// holding the mutex touches it.
struct Connection {
    ctx: zmq::Context,
    config: WorkerConfig,
    socket: Option<zmq::Socket>,
    wake_rx: zmq::Socket,
    /// Endpoint index (into `config.endpoints`, modulo its length).
    index: usize,
    generation: u64,
    /// Job id → where it came from, for jobs received and not yet answered.
    held: HashMap<JobId, Held, IdHash>,
    /// Jobs received and not yet taken by `next_event`.
    pending: VecDeque<Job>,
    /// Outcome records held back for one REPLY_BATCH.
    outbox: Vec<u8>,
    outbox_jobs: usize,
    outbox_since: Instant,
    /// When the broker was last heard from.
    heard: Instant,
    next_heartbeat: Instant,
    /// With no socket: when to try to connect again.
    reconnect_at: Instant,
    /// When a job was last taken or answered (for `Idle`).
    last_activity: Instant,
    /// A job was taken or answered since `last_activity` was last set.
    active: bool,
    /// Failback: while connected to a later endpoint of the list, a probe
    /// of the first one (a worker HEARTBEAT from an unregistered identity,
    /// which any MDP broker answers with DISCONNECT).
    probe: Option<zmq::Socket>,
    /// When an unanswered probe is given up.
    probe_until: Instant,
    /// When the next probe may be sent.
    next_probe: Instant,
    /// Since when the first endpoint has answered every probe.
    first_up_since: Option<Instant>,
    /// When this worker asked its broker to let it move (DISCONNECT +
    /// "zmws:1 moving"), while the answer is awaited.
    move_asked: Option<Instant>,
    /// No move is asked before this (after a "stay").
    move_after: Instant,
}

fn worker_frames(cmd: u8, rest: Vec<Frame>) -> Vec<Frame> {
    let mut f = Vec::with_capacity(rest.len() + 2);
    f.push(MDPW02.to_vec());
    f.push(vec![cmd]);
    f.extend(rest);
    f
}

impl Connection {
    fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.config.heartbeat_ms.max(1))
    }

    /// The next moment `maintain` has something to do.
    fn next_deadline(&self) -> Instant {
        let mut t = if self.socket.is_some() {
            self.next_heartbeat.min(self.heard + self.heartbeat() * self.config.liveness.max(1))
        } else {
            self.reconnect_at
        };
        if self.outbox_jobs > 0 {
            t = t.min(self.outbox_since + REPLY_HOLD);
        }
        t
    }

    /// Connects when disconnected and due, once a slot is free: jobs still
    /// running from an earlier connection take slots the new broker cannot
    /// see, so a busy worker is not sent more than it can hold.
    fn ensure_connected(&mut self, now: Instant) {
        if self.socket.is_some() || now < self.reconnect_at || self.held.len() as u32 >= self.config.capacity {
            return;
        }
        let ep = self.config.endpoints[self.index % self.config.endpoints.len()].clone();
        match self.open(&ep) {
            Ok(s) => {
                self.socket = Some(s);
                self.generation += 1;
                self.heard = now;
                self.next_heartbeat = now + self.heartbeat();
                tracing::debug!(endpoint = %ep, service = %self.config.service, "worker connected");
            }
            Err(e) => {
                tracing::warn!(endpoint = %ep, error = %e, "worker cannot connect: trying the next endpoint");
                self.index += 1;
                self.reconnect_at = now + Duration::from_millis(self.config.reconnect_ms);
            }
        }
    }

    fn open(&self, ep: &str) -> std::result::Result<zmq::Socket, zmq::Error> {
        let s = self.ctx.socket(zmq::DEALER)?;
        // Abandoned connections must not hold the process at exit: no linger
        // (raised briefly for the final DISCONNECT), and a handshake that
        // takes longer than the liveness window is given up.
        s.set_linger(0)?;
        let patience = (self.config.heartbeat_ms * self.config.liveness.max(1) as u64).clamp(500, i32::MAX as u64);
        s.set_handshake_ivl(patience as i32)?;
        s.set_sndhwm(100_000)?;
        s.set_rcvhwm(100_000)?;
        s.connect(ep)?;
        let free = self.config.capacity.saturating_sub(self.held.len() as u32).max(1);
        let prefix = std::str::from_utf8(READY_EXTENSION_PREFIX).unwrap_or("zmws:1");
        let ext = format!("{prefix} capacity={free} batch");
        s.send_multipart(worker_frames(W_READY, vec![self.config.service.as_bytes().to_vec(), ext.into_bytes()]), 0)?;
        Ok(s)
    }

    /// Drops the connection; jobs received on it and not yet taken are
    /// forgotten (the broker requeues them), and a reconnect is scheduled.
    fn drop_connection(&mut self, now: Instant, next_endpoint: bool) {
        self.socket = None;
        self.move_asked = None;
        // Jobs the caller is running keep their slots until answered.
        for job in self.pending.drain(..) {
            if let Some(id) = JobId::parse(job.id.as_bytes()) {
                self.held.remove(&id);
            }
        }
        self.outbox.clear();
        self.outbox_jobs = 0;
        if next_endpoint {
            self.index += 1;
        }
        self.reconnect_at = now + Duration::from_millis(self.config.reconnect_ms);
    }

    /// Heartbeats, liveness, reconnection and the reply-batch time limit.
    fn maintain(&mut self, now: Instant) {
        self.ensure_connected(now);
        if self.outbox_jobs > 0 && now >= self.outbox_since + REPLY_HOLD {
            self.flush_outbox();
        }
        let Some(socket) = &self.socket else { return };
        if now >= self.next_heartbeat {
            let _ = socket.send_multipart(worker_frames(W_DISCONNECT_OR_HEARTBEAT, vec![]), zmq::DONTWAIT);
            self.next_heartbeat = now + self.heartbeat();
        }
        if now.duration_since(self.heard) > self.heartbeat() * self.config.liveness.max(1) {
            if self.config.endpoints.len() > 1 {
                tracing::warn!("broker silent past liveness: reconnecting to the next endpoint");
            } else {
                tracing::warn!(endpoint = %self.config.endpoints[0], "broker silent past liveness: reconnecting");
            }
            self.drop_connection(now, true);
            return;
        }
        self.watch_first_endpoint(now);
    }

    /// Failback. While connected to a later endpoint of the list, probes
    /// the first one every [`FAILBACK_PROBE_INTERVAL`]. Once it has answered
    /// every probe for [`FAILBACK_SETTLE`], the worker, between two jobs,
    /// asks its broker to let it go (DISCONNECT + "zmws:1 moving"). The
    /// broker answers MOVED (the worker then registers with the first
    /// broker) or STAY (a job is on its way, or work is queued that only
    /// this worker could run). A broker without the extension takes the
    /// DISCONNECT as final and answers the next heartbeat with a plain
    /// DISCONNECT, which counts as MOVED. With no answer within a liveness
    /// window the worker moves if it still holds nothing, and asks again
    /// later otherwise. Clients move back once the first broker has workers
    /// for their service, so workers go first.
    fn watch_first_endpoint(&mut self, now: Instant) {
        let n = self.config.endpoints.len();
        if n < 2 || self.index % n == 0 || self.socket.is_none() {
            self.probe = None;
            self.first_up_since = None;
            self.move_asked = None;
            return;
        }
        if let Some(asked) = self.move_asked {
            if now.duration_since(asked) >= self.heartbeat() * self.config.liveness.max(1) {
                if self.held.is_empty() && self.pending.is_empty() {
                    self.disconnect();
                    self.move_to_first(now);
                } else {
                    self.move_asked = None;
                    self.move_after = now + self.heartbeat();
                }
            }
            return;
        }
        if let Some(probe) = &self.probe {
            if probe.recv_bytes(zmq::DONTWAIT).is_ok() {
                self.probe = None;
                self.first_up_since.get_or_insert(now);
            } else if now >= self.probe_until {
                self.probe = None;
                self.first_up_since = None;
            }
        }
        if self.probe.is_none() && now >= self.next_probe {
            let window = self.heartbeat() * self.config.liveness.max(1);
            self.probe = self.open_probe(&self.config.endpoints[0], window).ok();
            self.probe_until = now + window;
            self.next_probe = now + FAILBACK_PROBE_INTERVAL;
        }
        // Settled: answers for FAILBACK_SETTLE, the latest probe included
        // (none is waiting for its answer).
        let settled =
            self.probe.is_none() && self.first_up_since.is_some_and(|t| now.duration_since(t) >= FAILBACK_SETTLE);
        let between_jobs =
            self.held.is_empty() && self.pending.is_empty() && self.outbox_jobs == 0 && now >= self.move_after;
        if settled && between_jobs {
            if let Some(s) = &self.socket {
                if s.send_multipart(
                    worker_frames(W_DISCONNECT_V2, vec![protocol::DISCONNECT_MOVING.to_vec()]),
                    zmq::DONTWAIT,
                )
                .is_ok()
                {
                    self.move_asked = Some(now);
                }
            }
        }
    }

    /// The broker let this worker go (or never answered): register with
    /// the first broker of the list now.
    fn move_to_first(&mut self, now: Instant) {
        tracing::info!(endpoint = %self.config.endpoints[0], "the first broker of the list is back: moving to it");
        self.drop_connection(now, false);
        self.index = 0;
        self.reconnect_at = now;
        self.probe = None;
        self.first_up_since = None;
        self.move_asked = None;
        self.ensure_connected(now);
    }

    /// A throw-away DEALER that sends one worker HEARTBEAT to `ep`.
    fn open_probe(&self, ep: &str, window: Duration) -> std::result::Result<zmq::Socket, zmq::Error> {
        let s = self.ctx.socket(zmq::DEALER)?;
        s.set_linger(0)?;
        s.set_handshake_ivl(window.as_millis().clamp(100, i32::MAX as u128) as i32)?;
        s.connect(ep)?;
        s.send_multipart(worker_frames(W_DISCONNECT_OR_HEARTBEAT, vec![]), zmq::DONTWAIT)?;
        Ok(s)
    }

    /// Polls the broker socket and the wake socket.
    fn poll(&self, timeout_ms: i64) -> std::result::Result<(bool, bool), zmq::Error> {
        match &self.socket {
            Some(s) => {
                let mut items = [s.as_poll_item(zmq::POLLIN), self.wake_rx.as_poll_item(zmq::POLLIN)];
                zmq::poll(&mut items, timeout_ms)?;
                Ok((items[0].is_readable(), items[1].is_readable()))
            }
            None => {
                let mut items = [self.wake_rx.as_poll_item(zmq::POLLIN)];
                zmq::poll(&mut items, timeout_ms)?;
                Ok((false, items[0].is_readable()))
            }
        }
    }

    fn drain_wake(&self) {
        while self.wake_rx.recv_bytes(zmq::DONTWAIT).is_ok() {}
    }

    /// Reads everything the broker has sent.
    fn receive(&mut self, now: Instant) {
        // The parts are read as libzmq messages, not copied into vectors: a
        // REQUEST_BATCH is decoded where libzmq received it.
        let mut frames: Vec<zmq::Message> = Vec::with_capacity(4);
        loop {
            let Some(socket) = &self.socket else { return };
            if !recv_parts(socket, &mut frames) {
                return;
            }
            self.heard = now;
            if frames.len() < 2 || &frames[0][..] != MDPW02 || frames[1].len() != 1 {
                continue;
            }
            match frames[1][0] {
                W_REQUEST => self.take_request(frames.iter().map(|m| m.to_vec()).collect()),
                W_REQUEST_BATCH => {
                    let records = frames.get(2).map(|f| &f[..]).unwrap_or_default();
                    let Some(jobs) = protocol::decode_job_records(records) else {
                        tracing::warn!("malformed REQUEST_BATCH from the broker: ignored");
                        continue;
                    };
                    for (id, attempt, payload) in jobs {
                        self.hold(id, true);
                        let id = std::str::from_utf8(id)
                            .map(str::to_owned)
                            .unwrap_or_else(|_| String::from_utf8_lossy(id).into_owned());
                        self.pending.push_back(Job { id, attempt, payload: payload.to_vec() });
                    }
                }
                W_DISCONNECT_V2
                    if self.move_asked.is_some()
                        && frames.get(2).is_none_or(|f| &f[..] != protocol::DISCONNECT_STOPPING) =>
                {
                    // "moved", or a plain DISCONNECT from a broker without
                    // the extension (it took ours as final and then answered
                    // a heartbeat from a worker it no longer knows).
                    self.move_to_first(now);
                    return;
                }
                W_DISCONNECT_OR_HEARTBEAT if frames.get(2).is_some_and(|f| &f[..] == protocol::STAY) => {
                    // The broker keeps us (a job is on its way, or work is
                    // queued): ask again later.
                    self.move_asked = None;
                    self.move_after = now + self.heartbeat();
                }
                W_DISCONNECT_V2 => {
                    // A broker that is stopping says so: try the next one
                    // of the list; otherwise register again with this one.
                    let stopping = frames.get(2).is_some_and(|f| &f[..] == protocol::DISCONNECT_STOPPING);
                    if stopping {
                        tracing::info!("broker is stopping: moving to the next endpoint");
                    } else {
                        tracing::info!("broker sent DISCONNECT: reconnecting");
                    }
                    self.drop_connection(now, stopping);
                    return;
                }
                _ => {} // heartbeat
            }
        }
    }

    /// REQUEST `[MDPW02, 0x02, job_id, "", attempt?, payload…]`.
    fn take_request(&mut self, mut frames: Vec<Frame>) {
        if frames.len() < 5 || !frames[3].is_empty() {
            return;
        }
        let payload = frames.split_off(4);
        let id = frames.swap_remove(2);
        let (attempt, payload) = match payload.split_first() {
            Some((a, rest)) if !a.is_empty() && a.iter().all(u8::is_ascii_digit) => {
                (std::str::from_utf8(a).ok().and_then(|s| s.parse().ok()).unwrap_or(1), rest.concat())
            }
            _ => (1, payload.concat()),
        };
        self.hold(&id, false);
        let id = String::from_utf8_lossy(&id).into_owned();
        self.pending.push_back(Job { id, attempt, payload });
    }

    /// Records a received job as held. A job id that is not a zmws job id
    /// (a foreign broker's envelope) could never be answered: it is logged.
    fn hold(&mut self, id: &[u8], batched: bool) {
        match JobId::parse(id) {
            Some(id) => {
                self.held.insert(id, Held { generation: self.generation, batched });
            }
            None => {
                tracing::warn!(id = %String::from_utf8_lossy(id), "job with an id that is not 32 hex digits: it cannot be answered")
            }
        }
    }

    /// Sends (or holds back for a batch) the outcome of a job. An outcome
    /// for a job from an earlier connection is dropped: the broker of that
    /// connection requeued the job already, and the new one never knew it.
    /// Returns true when this outcome starts a held-back batch.
    fn answer(&mut self, job: JobId, kind: u8, data: &[u8]) -> bool {
        let Some(held) = self.held.remove(&job) else { return false };
        self.active = true;
        let hex = job.to_hex();
        let id = &hex[..];
        if held.generation != self.generation || self.socket.is_none() {
            self.ensure_connected(Instant::now());
            return false;
        }
        if held.batched {
            if self.outbox_jobs == 0 {
                self.outbox_since = Instant::now();
            }
            protocol::encode_outcome_record(&mut self.outbox, kind, id, data);
            self.outbox_jobs += 1;
            let enough = self.outbox_jobs as u32 >= (self.config.capacity / 2).max(1);
            if self.pending.is_empty() || enough {
                self.flush_outbox();
                return false;
            }
            return self.outbox_jobs == 1;
        }
        let msg = match kind {
            outcome::COMPLETE => worker_frames(W_HEARTBEAT_OR_FINAL, vec![id.to_vec(), Vec::new(), data.to_vec()]),
            k => worker_frames(
                W_FAIL,
                vec![
                    id.to_vec(),
                    Vec::new(),
                    if k == outcome::FAIL_RETRYABLE { b"1".to_vec() } else { b"0".to_vec() },
                    data.to_vec(),
                ],
            ),
        };
        self.send(msg);
        false
    }

    /// Sends a PARTIAL for a job still held on this connection.
    fn partial(&mut self, job: JobId, data: &[u8]) {
        match self.held.get(&job) {
            Some(h) if h.generation == self.generation => {}
            _ => return,
        }
        let id = &job.to_hex()[..];
        self.send(worker_frames(W_REPLY_OR_PARTIAL, vec![id.to_vec(), Vec::new(), data.to_vec()]));
    }

    fn flush_outbox(&mut self) {
        if self.outbox_jobs == 0 {
            return;
        }
        // The next batch is likely as large: start it at this one's size.
        let next = Vec::with_capacity(self.outbox.len());
        let records = std::mem::replace(&mut self.outbox, next);
        self.outbox_jobs = 0;
        self.send(worker_frames(W_REPLY_BATCH, vec![records]));
    }

    fn send(&mut self, frames: Vec<Frame>) {
        if let Some(s) = &self.socket {
            if let Err(e) = s.send_multipart(frames, 0) {
                tracing::warn!(error = %e, "worker cannot send to the broker");
            }
        }
    }

    /// Final flush and DISCONNECT (jobs not answered are requeued by the broker).
    fn disconnect(&mut self) {
        self.flush_outbox();
        if let Some(s) = self.socket.take() {
            let _ = s.set_linger(500);
            let _ = s.send_multipart(worker_frames(W_DISCONNECT_V2, vec![]), zmq::DONTWAIT);
        }
    }
}
