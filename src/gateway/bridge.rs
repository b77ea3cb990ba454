//! The bridge between async HTTP handlers and the broker.
//!
//! [`crate::Client`] is blocking and owns one socket, so the gateway does not
//! use it per request. Instead one dedicated I/O thread owns two DEALER
//! sockets connected to the broker's client endpoint:
//!
//! * **calls**: every `SYNC-` request is a `zmws.call` (`[tag, service,
//!   payload]`); thousands may be in flight on the one socket, and each FINAL
//!   (`[tag, status, job_id, result…]`) is matched to its waiting handler by
//!   the tag. A handler waits on a tokio oneshot channel, so 1,000 waiting
//!   requests cost 1,000 small futures, not threads.
//! * **admin**: `zmws.submit`, `zmws.status`, `zmws.jobs`, … carry no tag.
//!   The broker answers them without waiting for workers, in request order
//!   for each service (a durable `zmws.submit` is acknowledged after its
//!   group commit, still in order), so replies are matched first-in
//!   first-out per service frame. If one is not answered in time the socket
//!   is replaced (a new identity: late replies to the old one can never be
//!   misread) and the requests waiting on it fail with 503.
//!
//! Handlers hand requests over through a mutex-protected queue and wake the
//! thread through an inproc PUSH/PULL pair (one wake-up per batch). Both
//! sockets set `ZMQ_IMMEDIATE`: while the broker is unreachable nothing is
//! queued inside libzmq; requests wait in the bridge's own outbox for up to
//! the connect grace and then fail with 503 instead of running much later.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::protocol::{Frame, C_FINAL, C_PARTIAL, C_REQUEST, MDPC02};

/// A failed bridged request, already phrased as an HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeError {
    /// HTTP status to answer with.
    pub status: u16,
    /// Human-readable reason.
    pub message: String,
    /// The job, when one was created.
    pub job_id: Option<String>,
}

impl BridgeError {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> BridgeError {
        BridgeError { status, message: message.into(), job_id: None }
    }

    /// Maps a broker status frame (`"404"`, `"500"`, …) to an HTTP status:
    /// a failed job (`500`) is a bad gateway (`502`), unknown broker codes too.
    pub(crate) fn from_broker(code: &[u8], message: String) -> BridgeError {
        let status = match code {
            b"400" => 400,
            b"404" => 404,
            // the service's workers moved to another broker (failback)
            b"421" => 503,
            b"409" => 409,
            b"413" => 413,
            b"503" => 503,
            b"504" => 504,
            b"500" => 502,
            b"501" => 501,
            _ => 502,
        };
        BridgeError::new(status, message)
    }
}

/// A `zmws.call` that completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOk {
    /// The job's id.
    pub job_id: String,
    /// The worker's result (all frames concatenated).
    pub result: Vec<u8>,
}

type CallReply = std::result::Result<CallOk, BridgeError>;
type AdminReply = std::result::Result<Vec<Frame>, BridgeError>;

enum Request {
    Call { service: Vec<u8>, payload: Vec<u8>, timeout: Duration, reply: oneshot::Sender<CallReply> },
    Admin { service: Vec<u8>, body: Vec<Frame>, timeout: Duration, reply: oneshot::Sender<AdminReply> },
}

/// Timings of the bridge.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Broker client endpoint (`tcp://…` or `ipc://…`).
    pub endpoint: String,
    /// Default deadline of administrative requests.
    pub admin_timeout: Duration,
    /// How long a request may wait for the broker connection before 503.
    pub connect_grace: Duration,
}

struct Shared {
    queue: Mutex<Vec<Request>>,
    wake: Mutex<zmq::Socket>,
    stop: AtomicBool,
    inflight_calls: AtomicUsize,
    calls_total: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
    config: BridgeConfig,
}

/// A cheap, cloneable handle to the bridge thread (`Send + Sync`).
#[derive(Clone)]
pub struct Bridge {
    shared: Arc<Shared>,
}

static BRIDGE_COUNTER: AtomicU64 = AtomicU64::new(0);

fn dealer(ctx: &zmq::Context, endpoint: &str) -> Result<zmq::Socket> {
    let s = ctx.socket(zmq::DEALER)?;
    s.set_linger(0)?;
    s.set_sndhwm(100_000)?;
    s.set_rcvhwm(100_000)?;
    s.set_immediate(true)?;
    s.connect(endpoint).map_err(|e| Error::InvalidArgument(format!("cannot connect to broker '{endpoint}': {e}")))?;
    Ok(s)
}

struct InflightGuard<'a>(&'a AtomicUsize);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Bridge {
    /// Connects to the broker and starts the I/O thread.
    pub fn start(config: BridgeConfig) -> Result<Bridge> {
        let ctx = zmq::Context::new();
        let n = BRIDGE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let wake_ep = format!("inproc://zmws-gateway-wake-{}-{n}", std::process::id());
        let pull = ctx.socket(zmq::PULL)?;
        pull.set_linger(0)?;
        pull.bind(&wake_ep)?;
        let push = ctx.socket(zmq::PUSH)?;
        push.set_linger(0)?;
        push.set_sndhwm(16)?;
        push.connect(&wake_ep)?;
        let calls = dealer(&ctx, &config.endpoint)?;
        let admin = dealer(&ctx, &config.endpoint)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            wake: Mutex::new(push),
            stop: AtomicBool::new(false),
            inflight_calls: AtomicUsize::new(0),
            calls_total: AtomicU64::new(0),
            thread: Mutex::new(None),
            config: config.clone(),
        });
        let io = Io {
            shared: shared.clone(),
            ctx,
            wake: pull,
            calls,
            admin,
            next_tag: 1,
            pending_calls: HashMap::new(),
            call_deadlines: BinaryHeap::new(),
            call_outbox: VecDeque::new(),
            admin_sent: HashMap::new(),
            admin_outbox: VecDeque::new(),
        };
        let thread = std::thread::Builder::new()
            .name("zmws-gateway-io".into())
            .spawn(move || io.run())
            .map_err(|e| Error::Io(format!("cannot start the gateway I/O thread: {e}")))?;
        *shared.thread.lock() = Some(thread);
        Ok(Bridge { shared })
    }

    /// The broker endpoint in use.
    pub fn endpoint(&self) -> &str {
        &self.shared.config.endpoint
    }

    /// Number of `SYNC-` calls waiting for a result right now.
    pub fn inflight_calls(&self) -> usize {
        self.shared.inflight_calls.load(Ordering::Relaxed)
    }

    /// Number of `SYNC-` calls made since start.
    pub fn calls_total(&self) -> u64 {
        self.shared.calls_total.load(Ordering::Relaxed)
    }

    fn push(&self, req: Request) -> std::result::Result<(), BridgeError> {
        let was_empty = {
            let mut q = self.shared.queue.lock();
            // Checked under the queue lock: `shutdown` sets the flag under it
            // too, so nothing can be queued after the last drain.
            if self.shared.stop.load(Ordering::SeqCst) {
                return Err(BridgeError::new(503, "the gateway is shutting down"));
            }
            let was_empty = q.is_empty();
            q.push(req);
            was_empty
        };
        if was_empty {
            // EAGAIN means wake-ups are already pending: nothing to do.
            let _ = self.shared.wake.lock().send(&b""[..], zmq::DONTWAIT);
        }
        Ok(())
    }

    /// Runs `service` with `payload` (a `zmws.call`) and waits up to `timeout`.
    pub async fn call(&self, service: &str, payload: Vec<u8>, timeout: Duration) -> CallReply {
        let (tx, rx) = oneshot::channel();
        self.shared.inflight_calls.fetch_add(1, Ordering::Relaxed);
        let _guard = InflightGuard(&self.shared.inflight_calls);
        self.shared.calls_total.fetch_add(1, Ordering::Relaxed);
        self.push(Request::Call { service: service.as_bytes().to_vec(), payload, timeout, reply: tx })?;
        rx.await.unwrap_or_else(|_| Err(BridgeError::new(503, "the gateway is shutting down")))
    }

    /// Sends a request to a broker service that answers at once (`zmws.*`,
    /// `mmi.*`) and returns the reply body.
    pub async fn admin(&self, service: &str, body: Vec<Frame>, timeout: Option<Duration>) -> AdminReply {
        let (tx, rx) = oneshot::channel();
        let timeout = timeout.unwrap_or(self.shared.config.admin_timeout);
        self.push(Request::Admin { service: service.as_bytes().to_vec(), body, timeout, reply: tx })?;
        rx.await.unwrap_or_else(|_| Err(BridgeError::new(503, "the gateway is shutting down")))
    }

    /// Stops the I/O thread; every waiting request fails with 503.
    pub fn shutdown(&self) {
        {
            let _q = self.shared.queue.lock();
            self.shared.stop.store(true, Ordering::SeqCst);
        }
        let _ = self.shared.wake.lock().send(&b""[..], zmq::DONTWAIT);
        if let Some(t) = self.shared.thread.lock().take() {
            let _ = t.join();
        }
        for req in std::mem::take(&mut *self.shared.queue.lock()) {
            let e = BridgeError::new(503, "the gateway is shutting down");
            match req {
                Request::Call { reply, .. } => {
                    let _ = reply.send(Err(e));
                }
                Request::Admin { reply, .. } => {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

struct PendingCall {
    reply: oneshot::Sender<CallReply>,
    service: String,
    timeout: Duration,
    /// Not yet sent (broker unreachable): the frames, and when to give up.
    unsent: Option<(Vec<u8>, Vec<u8>, Instant)>,
}

struct PendingAdmin {
    service: Vec<u8>,
    body: Vec<Frame>,
    reply: oneshot::Sender<AdminReply>,
    deadline: Instant,
    timeout: Duration,
}

struct Io {
    shared: Arc<Shared>,
    ctx: zmq::Context,
    wake: zmq::Socket,
    calls: zmq::Socket,
    admin: zmq::Socket,
    next_tag: u64,
    pending_calls: HashMap<u64, PendingCall>,
    call_deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    call_outbox: VecDeque<u64>,
    /// Sent and unanswered, first-in first-out per service frame.
    admin_sent: HashMap<Vec<u8>, VecDeque<PendingAdmin>>,
    admin_outbox: VecDeque<PendingAdmin>,
}

/// Sends one MDP/0.2 request without blocking. `Ok(false)`: the socket
/// cannot take it now (not connected or full); nothing was sent.
fn try_send(sock: &zmq::Socket, service: &[u8], body: &[&[u8]]) -> std::result::Result<bool, zmq::Error> {
    match sock.send(MDPC02, zmq::SNDMORE | zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Ok(false),
        Err(e) => return Err(e),
    }
    // The first part is in: libzmq takes the rest of the message atomically.
    sock.send(&[C_REQUEST][..], zmq::SNDMORE)?;
    if body.is_empty() {
        sock.send(service, 0)?;
        return Ok(true);
    }
    sock.send(service, zmq::SNDMORE)?;
    for (i, f) in body.iter().enumerate() {
        sock.send(*f, if i + 1 < body.len() { zmq::SNDMORE } else { 0 })?;
    }
    Ok(true)
}

/// Splits a broker reply into (kind, service, body).
fn parse_reply(mut frames: Vec<Frame>) -> Option<(u8, Frame, Vec<Frame>)> {
    if frames.len() < 3 || frames[0] != MDPC02 || frames[1].len() != 1 {
        return None;
    }
    let body = frames.split_off(3);
    let service = frames.pop()?;
    Some((frames[1][0], service, body))
}

impl Io {
    fn run(mut self) {
        tracing::debug!(endpoint = %self.shared.config.endpoint, "gateway bridge running");
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                self.fail_everything(503, "the gateway is shutting down");
                break;
            }
            let now = Instant::now();
            self.expire(now);
            let wait =
                self.next_deadline().map(|d| d.saturating_duration_since(now)).unwrap_or(Duration::from_millis(100));
            let wait_ms = wait.min(Duration::from_millis(100)).as_millis() as i64;
            let calls_ev = if self.call_outbox.is_empty() { zmq::POLLIN } else { zmq::POLLIN | zmq::POLLOUT };
            let admin_ev = if self.admin_outbox.is_empty() { zmq::POLLIN } else { zmq::POLLIN | zmq::POLLOUT };
            let mut items = [
                self.wake.as_poll_item(zmq::POLLIN),
                self.calls.as_poll_item(calls_ev),
                self.admin.as_poll_item(admin_ev),
            ];
            match zmq::poll(&mut items, wait_ms) {
                Ok(_) => {}
                Err(zmq::Error::EINTR) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "gateway bridge poll failed");
                    self.fail_everything(503, format!("gateway bridge failed: {e}"));
                    break;
                }
            }
            let (woken, calls_in, calls_out, admin_in, admin_out) = (
                items[0].is_readable(),
                items[1].is_readable(),
                items[1].is_writable(),
                items[2].is_readable(),
                items[2].is_writable(),
            );
            if woken {
                while self.wake.recv_bytes(zmq::DONTWAIT).is_ok() {}
                let batch = std::mem::take(&mut *self.shared.queue.lock());
                for req in batch {
                    self.accept(req);
                }
            }
            if calls_out || woken {
                self.flush_calls();
            }
            if admin_out || woken {
                self.flush_admin();
            }
            if calls_in {
                for _ in 0..4096 {
                    match self.calls.recv_multipart(zmq::DONTWAIT) {
                        Ok(frames) => self.on_call_reply(frames),
                        Err(_) => break,
                    }
                }
            }
            if admin_in {
                for _ in 0..4096 {
                    match self.admin.recv_multipart(zmq::DONTWAIT) {
                        Ok(frames) => self.on_admin_reply(frames),
                        Err(_) => break,
                    }
                }
            }
        }
        tracing::debug!("gateway bridge stopped");
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut t: Option<Instant> = self.call_deadlines.peek().map(|Reverse((d, _))| *d);
        let mut consider = |d: Instant| t = Some(t.map_or(d, |x| x.min(d)));
        for q in self.admin_sent.values() {
            if let Some(a) = q.front() {
                consider(a.deadline);
            }
        }
        for a in &self.admin_outbox {
            consider(a.deadline);
        }
        for tag in &self.call_outbox {
            if let Some(PendingCall { unsent: Some((_, _, give_up)), .. }) = self.pending_calls.get(tag) {
                consider(*give_up);
            }
        }
        t
    }

    fn accept(&mut self, req: Request) {
        let now = Instant::now();
        match req {
            Request::Call { service, payload, timeout, reply } => {
                let tag = self.next_tag;
                self.next_tag += 1;
                let give_up = now + timeout.min(self.shared.config.connect_grace);
                self.pending_calls.insert(
                    tag,
                    PendingCall {
                        reply,
                        service: String::from_utf8_lossy(&service).into_owned(),
                        timeout,
                        unsent: Some((service, payload, give_up)),
                    },
                );
                self.call_deadlines.push(Reverse((now + timeout, tag)));
                self.call_outbox.push_back(tag);
            }
            Request::Admin { service, body, timeout, reply } => {
                self.admin_outbox.push_back(PendingAdmin { service, body, reply, deadline: now + timeout, timeout });
            }
        }
    }

    fn flush_calls(&mut self) {
        while let Some(&tag) = self.call_outbox.front() {
            let Some(p) = self.pending_calls.get_mut(&tag) else {
                self.call_outbox.pop_front();
                continue;
            };
            let Some((service, payload, _)) = &p.unsent else {
                self.call_outbox.pop_front();
                continue;
            };
            let tag_text = tag.to_string();
            match try_send(&self.calls, b"zmws.call", &[tag_text.as_bytes(), service, payload]) {
                Ok(true) => {
                    p.unsent = None;
                    self.call_outbox.pop_front();
                }
                Ok(false) => break,
                Err(e) => {
                    let p = self.pending_calls.remove(&tag).expect("present");
                    self.call_outbox.pop_front();
                    let _ = p.reply.send(Err(BridgeError::new(503, format!("cannot send to the broker: {e}"))));
                }
            }
        }
    }

    fn flush_admin(&mut self) {
        while let Some(a) = self.admin_outbox.front() {
            let body: Vec<&[u8]> = a.body.iter().map(|f| f.as_slice()).collect();
            match try_send(&self.admin, &a.service, &body) {
                Ok(true) => {
                    let a = self.admin_outbox.pop_front().expect("present");
                    self.admin_sent.entry(a.service.clone()).or_default().push_back(a);
                }
                Ok(false) => break,
                Err(e) => {
                    let a = self.admin_outbox.pop_front().expect("present");
                    let _ = a.reply.send(Err(BridgeError::new(503, format!("cannot send to the broker: {e}"))));
                }
            }
        }
    }

    fn on_call_reply(&mut self, frames: Vec<Frame>) {
        let Some((kind, service, body)) = parse_reply(frames) else {
            tracing::debug!("malformed broker reply dropped");
            return;
        };
        if service != b"zmws.call" || body.is_empty() {
            return;
        }
        if kind == C_PARTIAL {
            return; // progress is not forwarded over plain HTTP responses
        }
        if kind != C_FINAL {
            return;
        }
        let Some(tag) = std::str::from_utf8(&body[0]).ok().and_then(|t| t.parse::<u64>().ok()) else { return };
        let Some(p) = self.pending_calls.remove(&tag) else {
            return; // timed out already; the late result stays queryable by job id
        };
        let status = body.get(1).map(|f| f.as_slice()).unwrap_or(b"500");
        let job_id = body.get(2).map(|f| String::from_utf8_lossy(f).into_owned()).filter(|s| !s.is_empty());
        let outcome = if status == b"200" {
            Ok(CallOk {
                job_id: job_id.unwrap_or_default(),
                result: body.get(3..).map(|r| r.concat()).unwrap_or_default(),
            })
        } else {
            let msg = body.get(3).map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default();
            let mut e = BridgeError::from_broker(status, msg);
            e.job_id = job_id;
            Err(e)
        };
        let _ = p.reply.send(outcome);
    }

    fn on_admin_reply(&mut self, frames: Vec<Frame>) {
        let Some((kind, service, body)) = parse_reply(frames) else {
            tracing::debug!("malformed broker reply dropped");
            return;
        };
        if kind != C_FINAL {
            return;
        }
        match self.admin_sent.get_mut(&service).and_then(|q| q.pop_front()) {
            Some(a) => {
                let _ = a.reply.send(Ok(body));
            }
            None => tracing::debug!(service = %String::from_utf8_lossy(&service), "unexpected admin reply dropped"),
        }
    }

    /// Replaces the admin socket and fails the requests already sent on it.
    fn reset_admin(&mut self, status: u16, message: String) {
        for (_, q) in self.admin_sent.drain() {
            for a in q {
                let _ = a.reply.send(Err(BridgeError::new(status, message.clone())));
            }
        }
        match dealer(&self.ctx, &self.shared.config.endpoint) {
            Ok(s) => self.admin = s,
            Err(e) => tracing::error!(error = %e, "cannot reopen the broker connection"),
        }
    }

    fn expire(&mut self, now: Instant) {
        // SYNC calls past their timeout.
        while let Some(Reverse((deadline, tag))) = self.call_deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.call_deadlines.pop();
            if let Some(p) = self.pending_calls.remove(&tag) {
                let e = if p.unsent.is_some() {
                    BridgeError::new(503, format!("the broker at {} is not reachable", self.shared.config.endpoint))
                } else {
                    BridgeError::new(
                        504,
                        format!("no result from service '{}' within {} ms", p.service, p.timeout.as_millis()),
                    )
                };
                let _ = p.reply.send(Err(e));
            }
        }
        // Calls that could not even be sent within the connect grace.
        if !self.call_outbox.is_empty() {
            let expired: Vec<u64> = self
                .call_outbox
                .iter()
                .copied()
                .filter(|t| matches!(self.pending_calls.get(t), Some(PendingCall { unsent: Some((_, _, g)), .. }) if *g <= now))
                .collect();
            for tag in expired {
                if let Some(p) = self.pending_calls.remove(&tag) {
                    let msg = format!("the broker at {} is not reachable", self.shared.config.endpoint);
                    let _ = p.reply.send(Err(BridgeError::new(503, msg)));
                }
            }
            let pending = &self.pending_calls;
            self.call_outbox.retain(|t| pending.contains_key(t));
        }
        // Admin requests not sent in time: the broker is unreachable.
        if self.admin_outbox.iter().any(|a| a.deadline <= now) {
            let endpoint = self.shared.config.endpoint.clone();
            let (late, keep): (VecDeque<_>, VecDeque<_>) = self.admin_outbox.drain(..).partition(|a| a.deadline <= now);
            self.admin_outbox = keep;
            for a in late {
                let _ = a.reply.send(Err(BridgeError::new(503, format!("the broker at {endpoint} is not reachable"))));
            }
        }
        // Admin requests sent but not answered in time: the connection is suspect.
        let late = self.admin_sent.values().filter_map(|q| q.front()).find(|a| a.deadline <= now);
        if let Some(a) = late {
            let msg = format!(
                "the broker at {} did not answer {} within {} ms",
                self.shared.config.endpoint,
                String::from_utf8_lossy(&a.service),
                a.timeout.as_millis()
            );
            self.reset_admin(503, msg);
        }
    }

    fn fail_everything(&mut self, status: u16, message: impl Into<String>) {
        let message = message.into();
        for (_, p) in self.pending_calls.drain() {
            let _ = p.reply.send(Err(BridgeError::new(status, message.clone())));
        }
        self.call_outbox.clear();
        self.call_deadlines.clear();
        let sent: Vec<PendingAdmin> = self.admin_sent.drain().flat_map(|(_, q)| q).collect();
        for a in sent.into_iter().chain(self.admin_outbox.drain(..)) {
            let _ = a.reply.send(Err(BridgeError::new(status, message.clone())));
        }
        for req in std::mem::take(&mut *self.shared.queue.lock()) {
            match req {
                Request::Call { reply, .. } => {
                    let _ = reply.send(Err(BridgeError::new(status, message.clone())));
                }
                Request::Admin { reply, .. } => {
                    let _ = reply.send(Err(BridgeError::new(status, message.clone())));
                }
            }
        }
    }
}
