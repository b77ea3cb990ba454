//! The zmws worker: registers one service with a broker and pulls jobs.
//!
//! A background thread owns the broker connection: it sends READY and
//! heartbeats, watches the broker's heartbeats, reconnects (to the next
//! endpoint of the list) when the broker goes quiet or sends DISCONNECT, and
//! passes jobs to the front over an in-process socket. The front
//! ([`Worker::next_event`], [`Worker::complete`], …) never blocks the
//! heartbeats, so a job may run for minutes without being taken for dead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::client::split_endpoints;
use crate::error::{Error, Result};
use crate::protocol::{
    Frame, MDPW02, READY_EXTENSION_PREFIX, W_DISCONNECT_OR_HEARTBEAT, W_DISCONNECT_V2, W_FAIL, W_HEARTBEAT_OR_FINAL, W_READY,
    W_REPLY_OR_PARTIAL, W_REQUEST,
};

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
    _ctx: zmq::Context,
    inbox: Mutex<zmq::Socket>,
    outbox: Mutex<zmq::Socket>,
    stop: StopHandle,
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    last_activity: Mutex<Instant>,
    jobs_done: AtomicU64,
}

static PIPE_COUNTER: AtomicU64 = AtomicU64::new(0);

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
        let n = PIPE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let jobs_addr = format!("inproc://zmws-worker-jobs-{n}");
        let replies_addr = format!("inproc://zmws-worker-replies-{n}");
        let inbox = ctx.socket(zmq::PAIR)?;
        inbox.bind(&jobs_addr)?;
        let outbox = ctx.socket(zmq::PAIR)?;
        outbox.bind(&replies_addr)?;
        let bg_jobs = ctx.socket(zmq::PAIR)?;
        bg_jobs.connect(&jobs_addr)?;
        let bg_replies = ctx.socket(zmq::PAIR)?;
        bg_replies.connect(&replies_addr)?;
        for s in [&inbox, &outbox, &bg_jobs, &bg_replies] {
            s.set_sndhwm(0)?;
            s.set_rcvhwm(0)?;
            s.set_linger(0)?;
        }
        // Validate endpoints now so a typo is an error, not a silent retry loop.
        // (The probe must not outlive this call: no linger, a short handshake.)
        let probe = ctx.socket(zmq::DEALER)?;
        probe.set_linger(0)?;
        probe.set_handshake_ivl(100)?;
        for ep in &config.endpoints {
            probe
                .connect(ep)
                .map_err(|e| Error::InvalidArgument(format!("cannot connect to '{ep}': {e}")))?;
            let _ = probe.disconnect(ep);
        }
        drop(probe);
        let shutdown = Arc::new(AtomicBool::new(false));
        let bg = Background {
            ctx: ctx.clone(),
            config: config.clone(),
            jobs: bg_jobs,
            replies: bg_replies,
            shutdown: shutdown.clone(),
            held: HashMap::new(),
            generation: 0,
        };
        let thread = std::thread::Builder::new()
            .name("zmws-worker-io".into())
            .spawn(move || bg.run())
            .map_err(|e| Error::Io(format!("cannot start worker thread: {e}")))?;
        Ok(Worker {
            config,
            _ctx: ctx,
            inbox: Mutex::new(inbox),
            outbox: Mutex::new(outbox),
            stop: StopHandle(Arc::new(AtomicBool::new(false))),
            shutdown,
            thread: Some(thread),
            last_activity: Mutex::new(Instant::now()),
            jobs_done: AtomicU64::new(0),
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
        let deadline = crate::deadline_after(timeout);
        let idle_span = Duration::from_millis(self.config.heartbeat_ms * self.config.idle_after.max(1) as u64);
        let inbox = self.inbox.lock();
        loop {
            if self.stop.is_stopped() {
                return Err(Error::Closed("worker stopped".into()));
            }
            let now = Instant::now();
            {
                let mut last = self.last_activity.lock();
                if now.duration_since(*last) >= idle_span {
                    *last = now;
                    return Ok(WorkerEvent::Idle);
                }
            }
            if now >= deadline {
                return Ok(WorkerEvent::Timeout);
            }
            let slice = deadline.saturating_duration_since(now).min(Duration::from_millis(50));
            let ready = match inbox.poll(zmq::POLLIN, slice.as_millis() as i64) {
                Ok(n) => n,
                Err(zmq::Error::EINTR) => continue, // a signal: the stop flag is checked above
                Err(e) => return Err(e.into()),
            };
            if ready == 0 {
                continue;
            }
            let mut frames = inbox.recv_multipart(0)?;
            if frames.len() < 2 {
                continue;
            }
            let payload = frames.split_off(2).concat();
            let attempt = std::str::from_utf8(&frames[1]).ok().and_then(|s| s.parse().ok()).unwrap_or(1);
            let id = String::from_utf8_lossy(&frames[0]).into_owned();
            *self.last_activity.lock() = Instant::now();
            return Ok(WorkerEvent::Job(Job { id, attempt, payload }));
        }
    }

    /// Waits up to `timeout` for a job; `None` when none came (idle spells are skipped).
    pub fn next_job(&self, timeout: Duration) -> Result<Option<Job>> {
        let deadline = crate::deadline_after(timeout);
        loop {
            match self.next_event(deadline.saturating_duration_since(Instant::now()))? {
                WorkerEvent::Job(j) => return Ok(Some(j)),
                WorkerEvent::Timeout => return Ok(None),
                WorkerEvent::Idle => continue,
            }
        }
    }

    fn send_reply(&self, frames: Vec<Vec<u8>>) -> Result<()> {
        if self.thread.as_ref().map(|t| t.is_finished()).unwrap_or(true) {
            return Err(Error::Closed("worker connection is closed".into()));
        }
        self.outbox.lock().send_multipart(frames, 0)?;
        *self.last_activity.lock() = Instant::now();
        Ok(())
    }

    fn check_id(job_id: &str) -> Result<()> {
        if job_id.len() != 32 || !job_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidArgument(format!("'{job_id}' is not a job id")));
        }
        Ok(())
    }

    /// Completes a job with its result.
    pub fn complete(&self, job_id: &str, result: &[u8]) -> Result<()> {
        Worker::check_id(job_id)?;
        self.send_reply(vec![b"F".to_vec(), job_id.as_bytes().to_vec(), result.to_vec()])?;
        self.jobs_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Fails a job with a reason. A `retryable` failure is run again on
    /// another attempt (if any are left); otherwise the job ends now.
    pub fn fail(&self, job_id: &str, reason: &str, retryable: bool) -> Result<()> {
        Worker::check_id(job_id)?;
        let flag = if retryable { b"1".to_vec() } else { b"0".to_vec() };
        self.send_reply(vec![b"X".to_vec(), job_id.as_bytes().to_vec(), flag, reason.as_bytes().to_vec()])?;
        self.jobs_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends a partial result (progress) to a client waiting on the job.
    pub fn partial(&self, job_id: &str, data: &[u8]) -> Result<()> {
        Worker::check_id(job_id)?;
        self.send_reply(vec![b"P".to_vec(), job_id.as_bytes().to_vec(), data.to_vec()])
    }

    /// Runs jobs through `handler` until [`Worker::stop`]: `Ok(result)`
    /// completes a job, `Err(reason)` fails it.
    pub fn run<F>(&self, mut handler: F) -> Result<()>
    where
        F: FnMut(&Job) -> std::result::Result<Vec<u8>, String>,
    {
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
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.close_inner();
    }
}

/// The I/O thread behind a [`Worker`].
struct Background {
    ctx: zmq::Context,
    config: WorkerConfig,
    jobs: zmq::Socket,
    replies: zmq::Socket,
    shutdown: Arc<AtomicBool>,
    /// Job id → connection generation it came from.
    held: HashMap<Vec<u8>, u64>,
    generation: u64,
}

fn worker_frames(cmd: u8, rest: Vec<Frame>) -> Vec<Frame> {
    let mut f = Vec::with_capacity(rest.len() + 2);
    f.push(MDPW02.to_vec());
    f.push(vec![cmd]);
    f.extend(rest);
    f
}

impl Background {
    fn connect(&mut self, index: usize) -> Option<zmq::Socket> {
        let ep = &self.config.endpoints[index % self.config.endpoints.len()];
        let s = self.ctx.socket(zmq::DEALER).ok()?;
        // Abandoned connections must not hold the process at exit: no linger
        // (raised briefly for the final DISCONNECT), and a handshake that
        // takes longer than the liveness window is given up.
        let _ = s.set_linger(0);
        let patience = (self.config.heartbeat_ms * self.config.liveness.max(1) as u64).clamp(500, i32::MAX as u64);
        let _ = s.set_handshake_ivl(patience as i32);
        let _ = s.set_sndhwm(100_000);
        let _ = s.set_rcvhwm(100_000);
        s.connect(ep).ok()?;
        self.generation += 1;
        // Jobs still running from an earlier connection take slots the new
        // broker cannot see: announce only the free ones.
        let free = self.config.capacity.saturating_sub(self.held.len() as u32).max(1);
        let ext = format!("{} capacity={free}", std::str::from_utf8(READY_EXTENSION_PREFIX).unwrap_or("zmws:1"));
        let ready = worker_frames(W_READY, vec![self.config.service.as_bytes().to_vec(), ext.into_bytes()]);
        s.send_multipart(ready, 0).ok()?;
        tracing::debug!(endpoint = %ep, service = %self.config.service, "worker connected");
        Some(s)
    }

    fn run(mut self) {
        let hb = Duration::from_millis(self.config.heartbeat_ms.max(1));
        let patience = hb * self.config.liveness.max(1);
        let mut index = 0usize;
        'connection: while !self.shutdown.load(Ordering::SeqCst) {
            // After a lost connection, wait for a free slot before offering
            // the service again, so a busy worker is not sent more than it
            // can hold (its running job was requeued by the old broker).
            while self.held.len() as u32 >= self.config.capacity && !self.shutdown.load(Ordering::SeqCst) {
                if self.replies.poll(zmq::POLLIN, 100).unwrap_or(0) > 0 {
                    while let Ok(frames) = self.replies.recv_multipart(zmq::DONTWAIT) {
                        if frames.len() >= 2 && frames[0].as_slice() != b"P" {
                            self.held.remove(&frames[1]);
                        }
                    }
                }
            }
            let Some(broker) = self.connect(index) else {
                std::thread::sleep(Duration::from_millis(self.config.reconnect_ms));
                index += 1;
                continue;
            };
            let mut heard = Instant::now();
            let mut next_hb = Instant::now() + hb;
            loop {
                if self.shutdown.load(Ordering::SeqCst) {
                    let _ = broker.set_linger(500);
                    self.flush_replies(&broker);
                    let _ = broker.send_multipart(worker_frames(W_DISCONNECT_V2, vec![]), zmq::DONTWAIT);
                    break 'connection;
                }
                let wait = next_hb.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
                let mut items = [broker.as_poll_item(zmq::POLLIN), self.replies.as_poll_item(zmq::POLLIN)];
                if zmq::poll(&mut items, wait.as_millis() as i64).is_err() {
                    continue;
                }
                let (broker_ready, replies_ready) = (items[0].is_readable(), items[1].is_readable());
                if replies_ready {
                    self.flush_replies(&broker);
                }
                if broker_ready {
                    while let Ok(frames) = broker.recv_multipart(zmq::DONTWAIT) {
                        heard = Instant::now();
                        if frames.len() < 2 || frames[0] != MDPW02 || frames[1].len() != 1 {
                            continue;
                        }
                        match frames[1][0] {
                            W_REQUEST => self.forward_job(frames),
                            W_DISCONNECT_V2 => {
                                tracing::info!("broker sent DISCONNECT: reconnecting");
                                std::thread::sleep(Duration::from_millis(self.config.reconnect_ms));
                                continue 'connection;
                            }
                            _ => {} // heartbeat
                        }
                    }
                }
                if Instant::now() >= next_hb {
                    let _ = broker.send_multipart(worker_frames(W_DISCONNECT_OR_HEARTBEAT, vec![]), zmq::DONTWAIT);
                    next_hb = Instant::now() + hb;
                }
                if heard.elapsed() > patience {
                    tracing::warn!("broker silent past liveness: reconnecting to the next endpoint");
                    index += 1;
                    std::thread::sleep(Duration::from_millis(self.config.reconnect_ms));
                    continue 'connection;
                }
            }
        }
    }

    /// REQUEST `[MDPW02, 0x02, job_id, "", attempt, payload…]` → front `[job_id, attempt, payload…]`.
    fn forward_job(&mut self, mut frames: Vec<Frame>) {
        if frames.len() < 5 || !frames[3].is_empty() {
            return;
        }
        let payload = frames.split_off(4);
        let id = frames.swap_remove(2);
        let (attempt, payload) = match payload.split_first() {
            Some((a, rest)) if !a.is_empty() && a.iter().all(u8::is_ascii_digit) => (a.clone(), rest.to_vec()),
            _ => (b"1".to_vec(), payload),
        };
        self.held.insert(id.clone(), self.generation);
        let mut out = vec![id, attempt];
        out.extend(payload);
        let _ = self.jobs.send_multipart(out, 0);
    }

    fn flush_replies(&mut self, broker: &zmq::Socket) {
        while let Ok(frames) = self.replies.recv_multipart(zmq::DONTWAIT) {
            if frames.len() < 3 {
                continue;
            }
            let id = frames[1].clone();
            // A reply for a job from an earlier connection would confuse the
            // new broker; that job was requeued there already.
            let gen = match frames[0].as_slice() {
                b"P" => self.held.get(&id).copied(),
                _ => self.held.remove(&id),
            };
            if gen != Some(self.generation) {
                continue;
            }
            let msg = match frames[0].as_slice() {
                b"F" => worker_frames(W_HEARTBEAT_OR_FINAL, vec![id, Vec::new(), frames[2].clone()]),
                b"P" => worker_frames(W_REPLY_OR_PARTIAL, vec![id, Vec::new(), frames[2].clone()]),
                b"X" if frames.len() >= 4 => {
                    worker_frames(W_FAIL, vec![id, Vec::new(), frames[2].clone(), frames[3].clone()])
                }
                _ => continue,
            };
            let _ = broker.send_multipart(msg, 0);
        }
    }
}
