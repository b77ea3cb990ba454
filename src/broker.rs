//! The broker's socket loop: binds the ROUTER and PUB sockets, feeds decoded
//! messages to the [`Engine`](crate::engine::Engine) and sends what it asks.
//!
//! One thread owns every socket. Sends use `ZMQ_ROUTER_MANDATORY` and
//! `ZMQ_DONTWAIT`: a vanished worker is purged (its jobs requeued), a full
//! peer queue parks the message in that peer's own backlog (other peers are
//! not held up) which is retried every few milliseconds, and reading from
//! clients pauses while the backlogs together are
//! long (backpressure instead of silent drops).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::committer::Committer;
use crate::engine::{Engine, EngineConfig, Output, Socket};
use crate::error::{Error, Result};
use crate::fork::{Origin, ProcessBound};
use crate::protocol::{decode_client, decode_worker, Frame};
use crate::store::{JournalOp, Store};

/// Everything a broker needs to start. `Default` binds loopback on the
/// standard ports 5555 (clients), 5556 (workers) and 5557 (events).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// ROUTER endpoint for clients.
    pub client_endpoint: String,
    /// ROUTER endpoint for workers (may equal nothing else; MDP allows one
    /// socket for both, zmws uses two).
    pub worker_endpoint: String,
    /// PUB endpoint for job events; `None` disables publishing.
    pub news_endpoint: Option<String>,
    /// Send and receive high-water mark of the ROUTER sockets (messages).
    pub hwm: i32,
    /// State machine limits and timings.
    pub engine: EngineConfig,
    /// Directory of the durable job store; `None` keeps jobs in memory only.
    pub data_dir: Option<std::path::PathBuf>,
    /// After handling a message, keep polling without sleeping for this many
    /// microseconds before blocking (0: always block). A message that comes
    /// meanwhile is picked up without a thread wake-up, which on many
    /// machines is most of a round trip's cost; the price is CPU time spent
    /// polling while traffic is light. At most 10,000.
    pub spin_us: u32,
}

/// Default of [`BrokerConfig::spin_us`].
pub const DEFAULT_SPIN_US: u32 = 0;
/// Largest [`BrokerConfig::spin_us`].
pub const MAX_SPIN_US: u32 = 10_000;

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            client_endpoint: "tcp://127.0.0.1:5555".into(),
            worker_endpoint: "tcp://127.0.0.1:5556".into(),
            news_endpoint: Some("tcp://127.0.0.1:5557".into()),
            hwm: 100_000,
            engine: EngineConfig::default(),
            data_dir: None,
            spin_us: DEFAULT_SPIN_US,
        }
    }
}

impl BrokerConfig {
    /// A configuration that binds every socket to a free loopback port
    /// (handy for tests and embedding).
    pub fn ephemeral() -> Self {
        BrokerConfig {
            client_endpoint: "tcp://127.0.0.1:*".into(),
            worker_endpoint: "tcp://127.0.0.1:*".into(),
            news_endpoint: Some("tcp://127.0.0.1:*".into()),
            ..Default::default()
        }
    }

    /// Sets the heartbeat interval.
    pub fn heartbeat(mut self, d: Duration) -> Self {
        self.engine.heartbeat_ms = d.as_millis().max(1) as u64;
        self
    }
    /// Sets how many heartbeats a worker may miss.
    pub fn liveness(mut self, n: u32) -> Self {
        self.engine.liveness = n.max(1);
        self
    }
    /// Sets the per-attempt job timeout.
    pub fn job_timeout(mut self, d: Duration) -> Self {
        self.engine.job_timeout_ms = d.as_millis().max(1) as u64;
        self
    }
    /// Sets the number of attempts per job.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.engine.max_attempts = n.max(1);
        self
    }
}

/// Millisecond clock: wall time at start plus monotonic elapsed time, so it
/// reads like Unix time but never goes backwards.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    wall_ms: u64,
    start: Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Clock { wall_ms, start: Instant::now() }
    }
    pub(crate) fn now_ms(&self) -> u64 {
        self.wall_ms + self.start.elapsed().as_millis() as u64
    }
}

/// Turns `host:0` into ZeroMQ's `host:*` (ephemeral port).
pub(crate) fn normalize_bind(endpoint: &str) -> String {
    match endpoint.strip_suffix(":0") {
        Some(base) if endpoint.starts_with("tcp://") => format!("{base}:*"),
        _ => endpoint.to_string(),
    }
}

/// A bound broker, ready to [`run`](Broker::run) or [`start`](Broker::start).
pub struct Broker {
    config: BrokerConfig,
    _ctx: ProcessBound<zmq::Context>,
    clients: ProcessBound<zmq::Socket>,
    workers: ProcessBound<zmq::Socket>,
    news: Option<ProcessBound<zmq::Socket>>,
    endpoints: Endpoints,
    store: Option<ProcessBound<Store>>,
}

/// The endpoints a broker actually bound (ports resolved).
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Where clients connect.
    pub client: String,
    /// Where workers connect.
    pub worker: String,
    /// Where event subscribers connect, if publishing.
    pub news: Option<String>,
}

fn bound(sock: &zmq::Socket) -> Result<String> {
    sock.get_last_endpoint()?.map_err(|_| Error::Io("bound endpoint is not UTF-8".into()))
}

/// Whether a message (identity first) carries one of `headers` as its
/// protocol frame, with or without the empty delimiter before it.
fn speaks(frames: &[Vec<u8>], headers: &[&[u8]]) -> bool {
    let header = match frames.get(1) {
        Some(f) if f.is_empty() => frames.get(2),
        other => other,
    };
    header.is_some_and(|h| headers.contains(&h.as_slice()))
}

/// Warns (at most every 10 s) about peers on the wrong endpoint: Majordomo
/// puts clients and workers on one socket, zmws on two, and a stock worker
/// pointed at the client endpoint would otherwise wait in silence forever.
#[derive(Default)]
struct Misdirected {
    last: Option<Instant>,
}

impl Misdirected {
    fn warn(&mut self, who: &str, endpoint: &str, right: &str) {
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return;
        }
        self.last = Some(Instant::now());
        tracing::warn!("{who} sent its messages to the {endpoint} endpoint and they are dropped: point it at {right}");
    }
}

fn router(ctx: &zmq::Context, endpoint: &str, config: &BrokerConfig) -> Result<zmq::Socket> {
    let s = ctx.socket(zmq::ROUTER)?;
    s.set_router_mandatory(true)?;
    s.set_sndhwm(config.hwm)?;
    s.set_rcvhwm(config.hwm)?;
    s.set_linger(1000)?;
    let max = config.engine.max_payload.min(1 << 40) as i64;
    s.set_maxmsgsize(max.saturating_mul(2).max(max.saturating_add(1 << 20)))?;
    // TCP keepalive (set before bind: accepted connections copy the
    // options then). A stock Majordomo worker is silent while busy, so the
    // broker finds one whose host vanished (no FIN ever comes) by the kernel
    // closing the dead connection: the next heartbeat to it is undeliverable
    // and it is purged. 10 s idle, then 3 probes 5 s apart. Other
    // transports ignore it.
    s.set_tcp_keepalive(1)?;
    s.set_tcp_keepalive_idle(10)?;
    s.set_tcp_keepalive_intvl(5)?;
    s.set_tcp_keepalive_cnt(3)?;
    s.bind(&normalize_bind(endpoint)).map_err(|e| Error::Io(format!("cannot bind {endpoint}: {e}")))?;
    Ok(s)
}

impl Broker {
    /// Creates the sockets and binds them. Bind errors (port in use, bad
    /// endpoint) are reported here, before any thread starts.
    pub fn bind(config: BrokerConfig) -> Result<Broker> {
        // Open the store first: a corrupt or unwritable file stops the start.
        let store = match &config.data_dir {
            Some(dir) => Some(ProcessBound::new(Store::open(dir)?)),
            None => None,
        };
        let ctx = ProcessBound::new(zmq::Context::new());
        let clients = ProcessBound::new(router(&ctx, &config.client_endpoint, &config)?);
        let workers = ProcessBound::new(router(&ctx, &config.worker_endpoint, &config)?);
        let news = match &config.news_endpoint {
            Some(ep) => {
                // XPUB: we see subscriptions, so events are only built while
                // someone listens.
                let s = ctx.socket(zmq::XPUB)?;
                s.set_sndhwm(config.hwm)?;
                s.set_linger(0)?;
                s.bind(&normalize_bind(ep)).map_err(|e| Error::Io(format!("cannot bind {ep}: {e}")))?;
                Some(ProcessBound::new(s))
            }
            None => None,
        };
        let endpoints = Endpoints {
            client: bound(&clients)?,
            worker: bound(&workers)?,
            news: news.as_deref().map(bound).transpose()?,
        };
        Ok(Broker { config, _ctx: ctx, clients, workers, news, endpoints, store })
    }

    /// The endpoints actually bound.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Runs the loop on this thread until `stop` becomes true.
    pub fn run(mut self, stop: &AtomicBool) -> Result<()> {
        self.clients.check("Broker")?;
        let mut engine_cfg = self.config.engine.clone();
        engine_cfg.emit_events = false; // switched on while the news socket has subscribers
        let mut topics: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        engine_cfg.persist = self.store.is_some();
        let clock = Clock::new();
        let mut engine = Engine::new(engine_cfg, clock.now_ms());
        let store = match self.store.take() {
            Some(mut st) => {
                engine.restore(st.load()?, clock.now_ms());
                Some(Committer::start(&self._ctx, st.into_inner())?)
            }
            None => None,
        };
        let mut io = Io {
            client_backlog: Backlog::default(),
            worker_backlog: Backlog::default(),
            out: Vec::new(),
            spare: Vec::new(),
            store,
            gathering: Vec::new(),
            held: VecDeque::new(),
            batch: 0,
            in_flight: None,
            last_probe: Instant::now(),
        };
        io.flush(&self, &mut engine, &clock);
        io.finish_commits(&self, &mut engine, &clock, Duration::from_secs(30));
        tracing::info!(clients = %self.endpoints.client, workers = %self.endpoints.worker, news = ?self.endpoints.news, "broker running");
        const BATCH: usize = 512;
        let spin = Duration::from_micros(self.config.spin_us.min(MAX_SPIN_US) as u64);
        // When a message was last handled, while spinning.
        let mut last_busy: Option<Instant> = None;
        const BACKLOG_PAUSE: usize = 100_000;
        let mut misdirected = Misdirected::default();
        while !stop.load(Ordering::Relaxed) {
            let now = clock.now_ms();
            if now >= engine.next_wakeup() {
                engine.tick(now, &mut io.out);
                io.commit(&mut engine, &clock);
                io.flush(&self, &mut engine, &clock);
            }
            // A ROUTER reports POLLOUT while *any* peer has room, so a parked
            // message is retried on a short timer instead.
            let parked = !io.client_backlog.is_empty() || !io.worker_backlog.is_empty();
            let cap = if parked { 5 } else { 100 };
            let mut wait = engine.next_wakeup().saturating_sub(clock.now_ms()).clamp(0, cap) as i64;
            if let Some(since) = last_busy {
                if since.elapsed() < spin {
                    // Spinning: look again without sleeping, but let any
                    // other thread ready on this CPU (libzmq's I/O thread
                    // bringing the next message) run first.
                    std::thread::yield_now();
                    wait = 0;
                } else {
                    last_busy = None;
                }
            }
            let client_in = io.client_backlog.total < BACKLOG_PAUSE;
            let mut items = [
                self.workers.as_poll_item(zmq::POLLIN),
                self.clients.as_poll_item(if client_in { zmq::POLLIN } else { zmq::PollEvents::empty() }),
                io.store.as_ref().map(|c| c.wake_socket()).unwrap_or(&*self.workers).as_poll_item(zmq::POLLIN),
                self.news.as_deref().unwrap_or(&*self.workers).as_poll_item(zmq::POLLIN),
            ];
            // Without a store (news socket) the third (fourth) item is left out.
            let mut polled = 2;
            if io.store.is_some() {
                polled = 3;
            } else {
                items.swap(2, 3);
            }
            let news_at = polled;
            if self.news.is_some() {
                polled += 1;
            }
            match zmq::poll(&mut items[..polled], wait) {
                Ok(n) => {
                    if n > 0 && !spin.is_zero() {
                        last_busy = Some(Instant::now());
                    }
                }
                Err(zmq::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let committed = io.store.is_some() && items[2].is_readable();
            if polled > news_at && items[news_at].is_readable() {
                if let Some(news) = &self.news {
                    while let Ok(sub) = news.recv_bytes(zmq::DONTWAIT) {
                        match sub.split_first() {
                            Some((1, topic)) => {
                                topics.insert(topic.to_vec());
                            }
                            Some((0, topic)) => {
                                topics.remove(topic);
                            }
                            _ => {}
                        }
                    }
                    engine.set_emit_events(!topics.is_empty());
                }
            }
            let (worker_ready, client_ready) = (items[0].is_readable(), items[1].is_readable());
            if committed {
                io.commit_ended(&self, &mut engine, &clock);
            }
            io.start_commit(&engine);
            if parked {
                io.retry_backlogs(&self, &mut engine, &clock);
            }
            if worker_ready {
                for _ in 0..BATCH {
                    match self.workers.recv_multipart(zmq::DONTWAIT) {
                        Ok(frames) => {
                            if speaks(&frames, &[b"MDPC01", b"MDPC02"]) {
                                misdirected.warn("a client", "worker", &self.endpoints.client);
                            }
                            match decode_worker(frames) {
                                Ok(msg) => engine.on_worker(msg, clock.now_ms(), &mut io.out),
                                Err(e) => tracing::debug!(reason = %e.reason, "malformed worker message dropped"),
                            }
                        }
                        Err(zmq::Error::EAGAIN) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                io.flush(&self, &mut engine, &clock);
            }
            if client_ready {
                for _ in 0..BATCH {
                    match self.clients.recv_multipart(zmq::DONTWAIT) {
                        Ok(frames) => {
                            if speaks(&frames, &[b"MDPW01", b"MDPW02"]) {
                                misdirected.warn("a worker", "client", &self.endpoints.worker);
                            }
                            match decode_client(frames) {
                                Ok(req) => engine.on_client(req, clock.now_ms(), &mut io.out),
                                Err(e) => tracing::debug!(reason = %e.reason, "malformed client message dropped"),
                            }
                        }
                        Err(zmq::Error::EAGAIN) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                io.flush(&self, &mut engine, &clock);
            }
        }
        // Graceful end: tell the workers (they move to their next broker at
        // once), finish the commits (their acknowledgements go out), deliver
        // what is pending (bounded), then close.
        engine.farewell(&mut io.out);
        io.flush(&self, &mut engine, &clock);
        io.finish_commits(&self, &mut engine, &clock, Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_millis(500);
        while (!io.client_backlog.is_empty() || !io.worker_backlog.is_empty()) && Instant::now() < deadline {
            io.retry_backlogs(&self, &mut engine, &clock);
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::info!("broker stopped");
        Ok(())
    }

    /// Runs the loop on a background thread.
    pub fn start(self) -> Result<BrokerHandle> {
        self.clients.check("Broker")?;
        let stop = Arc::new(AtomicBool::new(false));
        let endpoints = self.endpoints.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("zmws-broker".into())
            .spawn(move || self.run(&flag))
            .map_err(|e| Error::Io(format!("cannot start broker thread: {e}")))?;
        Ok(BrokerHandle { stop, thread: Some(thread), endpoints, origin: Origin::here() })
    }
}

/// Messages parked because their peer's queue was full, per peer, in order.
#[derive(Default)]
struct Backlog {
    peers: HashMap<Frame, VecDeque<Vec<Frame>>>,
    total: usize,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        self.total == 0
    }
    fn holds(&self, peer: &[u8]) -> bool {
        self.peers.contains_key(peer)
    }
    fn park(&mut self, frames: Vec<Frame>) {
        let peer = frames.first().cloned().unwrap_or_default();
        self.peers.entry(peer).or_default().push_back(frames);
        self.total += 1;
    }
    /// Sends what each peer can take now; returns peers found unreachable.
    fn retry(&mut self, sock: &zmq::Socket) -> Vec<Frame> {
        let mut gone = Vec::new();
        let mut total = 0;
        self.peers.retain(|peer, queue| {
            while let Some(frames) = queue.pop_front() {
                match send_frames(sock, frames) {
                    Ok(SendOutcome::Sent) => {}
                    Ok(SendOutcome::Full(f)) => {
                        queue.push_front(f);
                        break;
                    }
                    Ok(SendOutcome::Unreachable) => {
                        gone.push(peer.clone());
                        queue.clear();
                    }
                    Err(e) => tracing::warn!(error = %e, "send failed"),
                }
            }
            total += queue.len();
            !queue.is_empty()
        });
        self.total = total;
        gone
    }
}

struct Io {
    client_backlog: Backlog,
    worker_backlog: Backlog,
    out: Vec<Output>,
    /// The previous batch's buffer, reused so `out` keeps its capacity.
    spare: Vec<Output>,
    /// The store's commit thread, when persisting.
    store: Option<Committer>,
    /// Journal ops gathered for the next commit.
    gathering: Vec<JournalOp>,
    /// Acknowledgements waiting for a commit: (batch number, reply).
    held: VecDeque<(u64, Output)>,
    /// Number of the batch being gathered.
    batch: u64,
    /// Number of the batch being committed.
    in_flight: Option<u64>,
    /// When a failing store was last probed.
    last_probe: Instant,
}

enum SendOutcome {
    Sent,
    Full(Vec<Frame>),
    Unreachable,
}

fn send_frames(sock: &zmq::Socket, frames: Vec<Frame>) -> std::result::Result<SendOutcome, zmq::Error> {
    // Try the first frame alone: with ROUTER_MANDATORY that is where EAGAIN
    // and EHOSTUNREACH are reported, and we still own the rest to retry.
    let n = frames.len();
    let mut it = frames.into_iter();
    let first = it.next().unwrap_or_default();
    match sock.send(&first[..], zmq::SNDMORE | zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => {
            let mut back = Vec::with_capacity(n);
            back.push(first);
            back.extend(it);
            return Ok(SendOutcome::Full(back));
        }
        Err(zmq::Error::EHOSTUNREACH) => return Ok(SendOutcome::Unreachable),
        Err(e) => return Err(e),
    }
    let mut rest = it.peekable();
    while let Some(f) = rest.next() {
        let flags = if rest.peek().is_some() { zmq::SNDMORE } else { 0 };
        // Small frames are cheaper copied (libzmq keeps them inline) than
        // handed over, which costs an allocation for the ownership record.
        if f.len() < 1024 {
            sock.send(&f[..], flags)?;
        } else {
            sock.send(f, flags)?;
        }
    }
    Ok(SendOutcome::Sent)
}

impl Io {
    /// Gathers this turn's journal into the batch for the next commit.
    fn commit(&mut self, engine: &mut Engine, _clock: &Clock) {
        if self.store.is_none() {
            return;
        }
        let ops = engine.take_journal();
        if self.gathering.is_empty() {
            self.gathering = ops;
        } else {
            self.gathering.extend(ops);
        }
    }

    /// Hands the gathered batch to the store thread unless a commit is
    /// running (then it keeps gathering); probes a failing store when idle.
    fn start_commit(&mut self, engine: &Engine) {
        let Some(store) = &self.store else { return };
        if self.in_flight.is_some() {
            return;
        }
        if engine.store_failing() {
            // A failing store (a full disk) is tried ten times a second, with
            // what is gathered (ops written again after the failure) or empty.
            if self.last_probe.elapsed() < Duration::from_millis(100) {
                return;
            }
            self.last_probe = Instant::now();
        } else if self.gathering.is_empty() {
            return;
        }
        store.submit(std::mem::take(&mut self.gathering));
        self.in_flight = Some(self.batch);
        self.batch += 1;
    }

    /// A commit ended: release (or, on failure, refuse) the replies that
    /// waited for it, and start the next one.
    fn commit_ended(&mut self, b: &Broker, engine: &mut Engine, clock: &Clock) {
        let Some(outcome) = self.store.as_ref().and_then(|s| s.try_outcome()) else { return };
        self.settle_commit(outcome, engine, clock);
        self.flush(b, engine, clock);
    }

    fn settle_commit(&mut self, (ops, result): crate::committer::Outcome, engine: &mut Engine, clock: &Clock) {
        let Some(batch) = self.in_flight.take() else { return };
        let mut replies = Vec::new();
        while self.held.front().is_some_and(|(n, _)| *n <= batch) {
            if let Some((_, o)) = self.held.pop_front() {
                replies.push(o);
            }
        }
        match result {
            Ok(()) => engine.store_recovered(),
            Err(e) if ops.is_empty() => tracing::debug!(error = %e, "job store still refuses writes"),
            Err(e) => {
                // What the batch held for jobs already on disk goes first
                // into the next batch.
                let mut again = engine.store_failed(ops, e.to_string(), clock.now_ms(), &mut replies);
                again.append(&mut self.gathering);
                self.gathering = again;
            }
        }
        for o in replies {
            self.out.push(match o {
                Output::Durable { ok, .. } => Output::Send(Socket::Client, ok),
                other => other,
            });
        }
    }

    /// Waits (up to `limit`) until every gathered op is committed and its
    /// replies are sent: at start-up and at the end.
    fn finish_commits(&mut self, b: &Broker, engine: &mut Engine, clock: &Clock, limit: Duration) {
        let deadline = Instant::now() + limit;
        // A failing store (full disk) gets a few more tries, 100 ms apart,
        // not the whole `limit` of back-to-back attempts.
        let mut tries_while_failing = 0;
        while self.store.is_some() && (self.in_flight.is_some() || !self.gathering.is_empty() || !self.held.is_empty())
        {
            if self.in_flight.is_none() {
                if engine.store_failing() {
                    tries_while_failing += 1;
                    if tries_while_failing > 3 {
                        tracing::error!(
                            ops = self.gathering.len(),
                            "the job store still refuses writes: stopping without them"
                        );
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                self.last_probe = Instant::now().checked_sub(Duration::from_secs(1)).unwrap_or_else(Instant::now);
                self.start_commit(engine);
                if self.in_flight.is_none() {
                    break;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(outcome) = self.store.as_ref().and_then(|s| s.wait_outcome(left)) else {
                tracing::error!("the job store did not finish its last commit in time");
                break;
            };
            self.settle_commit(outcome, engine, clock);
            self.flush(b, engine, clock);
        }
    }

    fn flush(&mut self, b: &Broker, engine: &mut Engine, clock: &Clock) {
        // Sending may purge a worker, which may produce more output: loop.
        let mut guard = 0;
        while !self.out.is_empty() && guard < 1000 {
            guard += 1;
            self.commit(engine, clock);
            let mut batch = std::mem::replace(&mut self.out, std::mem::take(&mut self.spare));
            for o in batch.drain(..) {
                let o = match o {
                    // Sent once the batch holding this turn's ops is committed.
                    durable @ Output::Durable { .. } => {
                        self.held.push_back((self.batch, durable));
                        continue;
                    }
                    other => other,
                };
                match o {
                    Output::Send(Socket::Client, frames) => {
                        if self.client_backlog.holds(frames.first().map(|f| f.as_slice()).unwrap_or_default()) {
                            self.client_backlog.park(frames); // keep this peer's order
                            continue;
                        }
                        match send_frames(&b.clients, frames) {
                            Ok(SendOutcome::Sent) => {}
                            Ok(SendOutcome::Full(f)) => self.client_backlog.park(f),
                            Ok(SendOutcome::Unreachable) => {
                                tracing::debug!("client vanished before its reply; the result stays queryable")
                            }
                            Err(e) => tracing::warn!(error = %e, "send to client failed"),
                        }
                    }
                    Output::Send(Socket::Worker, frames) => {
                        if self.worker_backlog.holds(frames.first().map(|f| f.as_slice()).unwrap_or_default()) {
                            self.worker_backlog.park(frames);
                            continue;
                        }
                        let peer = frames.first().cloned().unwrap_or_default();
                        match send_frames(&b.workers, frames) {
                            Ok(SendOutcome::Sent) => {}
                            Ok(SendOutcome::Full(f)) => self.worker_backlog.park(f),
                            Ok(SendOutcome::Unreachable) => {
                                engine.worker_unreachable(&peer, clock.now_ms(), &mut self.out)
                            }
                            Err(e) => tracing::warn!(error = %e, "send to worker failed"),
                        }
                    }
                    Output::Durable { .. } => unreachable!("held above"),
                    Output::Event(ev) => {
                        if let Some(news) = &b.news {
                            let json = ev.to_json(clock.now_ms());
                            let _ = news.send(ev.service.as_bytes(), zmq::SNDMORE | zmq::DONTWAIT);
                            let _ = news.send(json.as_bytes(), zmq::DONTWAIT);
                        }
                    }
                }
            }
            self.spare = batch; // empty, capacity kept
        }
        // What this turn journaled without sending anything (a completion
        // nobody waits for) is committed now too, not at the next tick.
        self.commit(engine, clock);
        self.start_commit(engine);
    }

    fn retry_backlogs(&mut self, b: &Broker, engine: &mut Engine, clock: &Clock) {
        for _peer in self.client_backlog.retry(&b.clients) {
            tracing::debug!("client vanished before its replies; the results stay queryable");
        }
        for peer in self.worker_backlog.retry(&b.workers) {
            engine.worker_unreachable(&peer, clock.now_ms(), &mut self.out);
        }
        if !self.out.is_empty() {
            self.flush(b, engine, clock);
        }
    }
}

/// A broker running on a background thread. Dropping it stops the broker.
pub struct BrokerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
    endpoints: Endpoints,
    /// The process the broker thread runs in (see `fork`).
    origin: Origin,
}

impl BrokerHandle {
    /// The endpoints the broker bound.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Whether the broker loop is still running (false once it ended, by
    /// `stop` or because of an error that `stop` will return).
    pub fn is_running(&self) -> bool {
        if self.origin.is_forked_child() {
            return false; // the thread runs in the parent only
        }
        self.thread.as_ref().map(|t| !t.is_finished()).unwrap_or(false)
    }

    /// Asks the loop to end, waits for it, and returns its result.
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        if let Err(e) = self.origin.check("Broker") {
            // The broker thread runs in the parent only: leave it alone.
            std::mem::forget(self.thread.take());
            return Err(e);
        }
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| Error::Internal("broker thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_on_the_wrong_endpoint_are_recognised() {
        let f = |s: &str| s.as_bytes().to_vec();
        let workers: &[&[u8]] = &[b"MDPW01", b"MDPW02"];
        // A stock worker's READY on the client socket: [identity, "", MDPW01, 0x01, service].
        assert!(speaks(&[f("id"), f(""), f("MDPW01"), vec![1], f("echo")], workers));
        assert!(speaks(&[f("id"), f("MDPW02"), vec![1], f("echo")], workers));
        // Clients are not workers; short or empty messages are nothing.
        assert!(!speaks(&[f("id"), f("MDPC01"), f("echo")], workers));
        assert!(!speaks(&[f("id")], workers));
        assert!(!speaks(&[f("id"), f("")], workers));
    }
}
