//! Helpers shared by the integration tests: a broker on ephemeral loopback
//! ports, in-process workers on threads, raw Majordomo clients and workers
//! written from the RFC text (RFC 7 = MDP/0.1, RFC 18 = MDP/0.2), bounded
//! polling, and guards for child processes.
//!
//! Every wait here is bounded in time; nothing sleeps longer than a polling
//! step.

#![allow(dead_code)]

use std::process::Child;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zmws::{Broker, BrokerConfig, BrokerHandle, Client, Job, Worker, WorkerConfig, WorkerInfo};

/// One multipart message.
pub type Frames = Vec<Vec<u8>>;

/// Generous bound for "eventually" checks: passing runs poll often and
/// finish far sooner; a loaded machine still has room.
pub const LONG: Duration = Duration::from_secs(10);

/// Short heartbeat used by the tests that exercise liveness.
pub const FAST_HB_MS: u64 = 100;

// ------------------------------------------------------------------ polling

/// Calls `f` until it returns `Some`, polling quickly at first, and panics
/// with `what` when `limit` passes.
pub fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// True for a 32-character hexadecimal job id (the Titanic UUID form).
pub fn is_job_id(bytes: &[u8]) -> bool {
    bytes.len() == 32 && bytes.iter().all(u8::is_ascii_hexdigit)
}

/// Lowercase hex of bytes (how the broker shows worker identities).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Text of a frame, for assertions and messages.
pub fn text(frame: &[u8]) -> String {
    String::from_utf8_lossy(frame).into_owned()
}

// ------------------------------------------------------------------ broker

/// A broker running on a background thread, bound to free loopback ports.
pub struct TestBroker {
    handle: Option<BrokerHandle>,
    /// Where clients connect.
    pub client_ep: String,
    /// Where workers connect.
    pub worker_ep: String,
    /// Where event subscribers connect.
    pub news_ep: Option<String>,
    /// The heartbeat interval the broker uses (workers must match it).
    pub heartbeat_ms: u64,
    /// Heartbeats a worker may miss before the broker purges it.
    pub liveness: u32,
}

/// The default test configuration: every socket on an ephemeral port.
pub fn config() -> BrokerConfig {
    BrokerConfig::ephemeral()
}

/// A configuration with a short heartbeat (100 ms × liveness 3), for tests
/// that time a purge.
pub fn fast_config() -> BrokerConfig {
    BrokerConfig::ephemeral().heartbeat(Duration::from_millis(FAST_HB_MS)).liveness(3)
}

/// A short heartbeat with some slack (200 ms × liveness 5 = 1 s), for tests
/// whose in-process workers must not be taken for dead on a loaded machine.
pub fn quick_config() -> BrokerConfig {
    BrokerConfig::ephemeral().heartbeat(Duration::from_millis(200)).liveness(5)
}

/// Binds and starts a broker with `cfg`.
pub fn start_broker(cfg: BrokerConfig) -> TestBroker {
    let (heartbeat_ms, liveness) = (cfg.engine.heartbeat_ms, cfg.engine.liveness);
    let broker = Broker::bind(cfg).expect("broker binds ephemeral loopback ports");
    let handle = broker.start().expect("broker thread starts");
    let ep = handle.endpoints().clone();
    assert!(ep.client.starts_with("tcp://127.0.0.1:"), "client endpoint {}", ep.client);
    assert!(ep.worker.starts_with("tcp://127.0.0.1:"), "worker endpoint {}", ep.worker);
    TestBroker {
        client_ep: ep.client,
        worker_ep: ep.worker,
        news_ep: ep.news,
        heartbeat_ms,
        liveness,
        handle: Some(handle),
    }
}

impl TestBroker {
    /// A zmws client connected to this broker.
    pub fn client(&self) -> Client {
        Client::connect(&self.client_ep).expect("client connects")
    }

    /// A worker configuration for `service` whose heartbeat and liveness
    /// match the broker's.
    pub fn worker_config(&self, service: &str) -> WorkerConfig {
        let mut c = WorkerConfig::new(&self.worker_ep, service);
        c.heartbeat_ms = self.heartbeat_ms;
        c.liveness = self.liveness;
        c
    }

    /// Starts an in-process worker for `service` running `handler` on a thread.
    pub fn spawn_worker<F>(&self, service: &str, handler: F) -> TestWorker
    where
        F: FnMut(&Job) -> Result<Vec<u8>, String> + Send + 'static,
    {
        TestWorker::spawn(self.worker_config(service), handler)
    }

    /// Stops the broker and returns how its loop ended (Err if it panicked
    /// or failed).
    pub fn stop(mut self) -> zmws::Result<()> {
        self.handle.take().expect("running").stop()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.stop();
        }
    }
}

/// Polls `zmws.workers` until exactly `n` live workers offer `service`.
pub fn wait_workers(client: &mut Client, service: &str, n: usize) -> Vec<WorkerInfo> {
    eventually(&format!("{n} live worker(s) for '{service}'"), LONG, || {
        let ws: Vec<WorkerInfo> = client.workers().ok()?.into_iter().filter(|w| w.service == service).collect();
        (ws.len() == n).then_some(ws)
    })
}

// ------------------------------------------------------------------ in-process workers

/// A zmws::Worker running a handler on its own thread; stopped and joined on drop.
pub struct TestWorker {
    /// The worker (shared with its thread).
    pub worker: Arc<Worker>,
    thread: Option<JoinHandle<()>>,
}

impl TestWorker {
    /// Connects a worker with `cfg` and runs `handler` for every job.
    pub fn spawn<F>(cfg: WorkerConfig, handler: F) -> TestWorker
    where
        F: FnMut(&Job) -> Result<Vec<u8>, String> + Send + 'static,
    {
        let worker = Arc::new(Worker::with_config(cfg).expect("worker connects"));
        let w = worker.clone();
        let thread = std::thread::Builder::new()
            .name("test-worker".into())
            .spawn(move || {
                w.run(handler).expect("worker loop ends cleanly");
            })
            .expect("spawn worker thread");
        TestWorker { worker, thread: Some(thread) }
    }

    /// Jobs this worker answered so far.
    pub fn jobs_done(&self) -> u64 {
        self.worker.jobs_done()
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.worker.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------ raw MDP peers

/// One ZeroMQ context for the raw sockets of a test binary.
pub fn ctx() -> &'static zmq::Context {
    static CTX: OnceLock<zmq::Context> = OnceLock::new();
    CTX.get_or_init(zmq::Context::new)
}

/// Majordomo protocol version of a raw peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mdp {
    /// RFC 7.
    V1,
    /// RFC 18.
    V2,
}

fn recv_within(sock: &zmq::Socket, timeout: Duration) -> Option<Frames> {
    let ms = timeout.as_millis().min(i64::MAX as u128) as i64;
    if sock.poll(zmq::POLLIN, ms).expect("poll") == 0 {
        return None;
    }
    Some(sock.recv_multipart(0).expect("recv"))
}

/// A reply as seen by a raw MDP client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientReply {
    /// False for an MDP/0.2 PARTIAL.
    pub is_final: bool,
    /// The service frame.
    pub service: Vec<u8>,
    /// The body frames.
    pub body: Frames,
}

/// An MDP client built from the RFC text on a plain libzmq socket.
pub struct RawClient {
    /// The socket (REQ or DEALER).
    pub sock: zmq::Socket,
    /// Protocol version it speaks.
    pub version: Mdp,
    req: bool,
}

impl RawClient {
    fn open(endpoint: &str, kind: zmq::SocketType, version: Mdp) -> RawClient {
        let sock = ctx().socket(kind).expect("socket");
        sock.set_linger(0).unwrap();
        sock.connect(endpoint).expect("connect");
        RawClient { sock, version, req: kind == zmq::REQ }
    }

    /// MDP/0.1 client on a REQ socket, as RFC 7 recommends (REQ adds and
    /// strips the empty frame 0).
    pub fn v1_req(endpoint: &str) -> RawClient {
        RawClient::open(endpoint, zmq::REQ, Mdp::V1)
    }

    /// MDP/0.1 client on a DEALER socket (must write the empty frame itself).
    pub fn v1_dealer(endpoint: &str) -> RawClient {
        RawClient::open(endpoint, zmq::DEALER, Mdp::V1)
    }

    /// MDP/0.2 framing sent through a REQ socket (REQ adds the empty frame;
    /// the broker accepts it and answers with the empty frame too).
    pub fn v2_req(endpoint: &str) -> RawClient {
        RawClient::open(endpoint, zmq::REQ, Mdp::V2)
    }

    /// MDP/0.2 client on a DEALER socket, as RFC 18 requires.
    pub fn v2(endpoint: &str) -> RawClient {
        RawClient::open(endpoint, zmq::DEALER, Mdp::V2)
    }

    /// Sends one REQUEST.
    pub fn send<B: AsRef<[u8]>>(&self, service: impl AsRef<[u8]>, body: &[B]) {
        let service = service.as_ref();
        let mut frames: Vec<&[u8]> = Vec::new();
        match self.version {
            Mdp::V1 => {
                if !self.req {
                    frames.push(b"");
                }
                frames.push(b"MDPC01");
            }
            Mdp::V2 => {
                frames.push(b"MDPC02");
                frames.push(&[0x01]);
            }
        }
        frames.push(service);
        frames.extend(body.iter().map(|b| b.as_ref()));
        self.sock.send_multipart(frames, 0).expect("send request");
    }

    /// Receives one reply and checks its framing against the RFC.
    pub fn recv(&self, timeout: Duration) -> Option<ClientReply> {
        let mut frames = recv_within(&self.sock, timeout)?;
        if self.version == Mdp::V1 && !self.req {
            assert!(
                !frames.is_empty() && frames[0].is_empty(),
                "MDP/0.1 reply on DEALER must start with an empty frame: {frames:?}"
            );
            frames.remove(0);
        }
        let (is_final, rest) = match self.version {
            Mdp::V1 => {
                assert!(frames.len() >= 3, "RFC 7 REPLY has 4+ frames (with the empty one): {frames:?}");
                assert_eq!(frames[0], b"MDPC01", "RFC 7 REPLY header");
                (true, frames.split_off(1))
            }
            Mdp::V2 => {
                assert!(frames.len() >= 4, "RFC 18 PARTIAL/FINAL has 4+ frames: {frames:?}");
                assert_eq!(frames[0], b"MDPC02", "RFC 18 reply header");
                let cmd = frames[1].clone();
                assert!(cmd == [0x02] || cmd == [0x03], "RFC 18 reply command must be PARTIAL or FINAL: {cmd:?}");
                (cmd == [0x03], frames.split_off(2))
            }
        };
        let mut rest = rest;
        let body = rest.split_off(1);
        Some(ClientReply { is_final, service: rest.pop().expect("service frame"), body })
    }

    /// Sends a request and waits (up to [`LONG`]) for the FINAL, returning
    /// the partial bodies seen before it and the final body.
    pub fn request_with_partials<B: AsRef<[u8]>>(
        &self,
        service: impl AsRef<[u8]>,
        body: &[B],
    ) -> (Vec<Frames>, Frames) {
        let service = service.as_ref();
        self.send(service, body);
        let mut partials = Vec::new();
        let deadline = Instant::now() + LONG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.recv(left).unwrap_or_else(|| panic!("no reply to '{}' within {LONG:?}", text(service)));
            assert_eq!(r.service, service, "the reply names the service as requested");
            if r.is_final {
                return (partials, r.body);
            }
            partials.push(r.body);
        }
    }

    /// Sends a request and returns the final reply body.
    pub fn request<B: AsRef<[u8]>>(&self, service: impl AsRef<[u8]>, body: &[B]) -> Frames {
        self.request_with_partials(service, body).1
    }

    /// Convenience: a request whose frames are all text.
    pub fn request_str(&self, service: &str, body: &[&str]) -> Frames {
        self.request(service, body)
    }
}

/// What a raw worker received from the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToWorker {
    /// REQUEST: client address envelope and body.
    Request(Vec<u8>, Frames),
    /// HEARTBEAT.
    Heartbeat,
    /// DISCONNECT.
    Disconnect,
}

/// An MDP worker built from the RFC text on a DEALER socket.
pub struct RawWorker {
    /// The socket.
    pub sock: zmq::Socket,
    /// Protocol version it speaks.
    pub version: Mdp,
    /// Its routing identity (set explicitly, so listings can be matched).
    pub identity: Vec<u8>,
    /// Heartbeat interval it keeps while waiting.
    pub heartbeat: Duration,
    last_sent: Instant,
}

impl RawWorker {
    /// Connects a worker socket with a fixed, unique identity.
    pub fn connect(endpoint: &str, version: Mdp, heartbeat: Duration) -> RawWorker {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let identity = format!("raw-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)).into_bytes();
        let sock = ctx().socket(zmq::DEALER).expect("socket");
        sock.set_linger(0).unwrap();
        sock.set_identity(&identity).unwrap();
        sock.connect(endpoint).expect("connect");
        RawWorker { sock, version, identity, heartbeat, last_sent: Instant::now() }
    }

    fn cmd(&self, v1: u8, v2: u8) -> u8 {
        match self.version {
            Mdp::V1 => v1,
            Mdp::V2 => v2,
        }
    }

    /// Sends a command with the version's header: RFC 7 `"" MDPW01 cmd …`,
    /// RFC 18 `MDPW02 cmd …`.
    pub fn send_cmd(&mut self, cmd: u8, rest: &[&[u8]]) {
        let c = [cmd];
        let mut frames: Vec<&[u8]> = Vec::new();
        match self.version {
            Mdp::V1 => {
                frames.push(b"");
                frames.push(b"MDPW01");
            }
            Mdp::V2 => frames.push(b"MDPW02"),
        }
        frames.push(&c);
        frames.extend_from_slice(rest);
        self.sock.send_multipart(frames, 0).expect("send worker command");
        self.last_sent = Instant::now();
    }

    /// READY for `service`.
    pub fn ready(&mut self, service: &str) {
        self.send_cmd(0x01, &[service.as_bytes()]);
    }

    /// HEARTBEAT (0x04 in MDP/0.1, 0x05 in MDP/0.2).
    pub fn heartbeat(&mut self) {
        let c = self.cmd(0x04, 0x05);
        self.send_cmd(c, &[]);
    }

    /// DISCONNECT (0x05 in MDP/0.1, 0x06 in MDP/0.2).
    pub fn disconnect(&mut self) {
        let c = self.cmd(0x05, 0x06);
        self.send_cmd(c, &[]);
    }

    /// The final reply: REPLY 0x03 (0.1) or FINAL 0x04 (0.2).
    pub fn reply<B: AsRef<[u8]>>(&mut self, address: &[u8], body: &[B]) {
        let c = self.cmd(0x03, 0x04);
        let mut rest: Vec<&[u8]> = vec![address, b""];
        rest.extend(body.iter().map(|b| b.as_ref()));
        self.send_cmd(c, &rest);
    }

    /// MDP/0.2 PARTIAL (0x03).
    pub fn partial<B: AsRef<[u8]>>(&mut self, address: &[u8], body: &[B]) {
        assert_eq!(self.version, Mdp::V2, "PARTIAL exists only in MDP/0.2");
        let mut rest: Vec<&[u8]> = vec![address, b""];
        rest.extend(body.iter().map(|b| b.as_ref()));
        self.send_cmd(0x03, &rest);
    }

    /// Receives one broker command, checking its framing against the RFC.
    pub fn recv(&self, timeout: Duration) -> Option<ToWorker> {
        let mut frames = recv_within(&self.sock, timeout)?;
        let rest = match self.version {
            Mdp::V1 => {
                assert!(frames.len() >= 3, "RFC 7 worker command has 3+ frames: {frames:?}");
                assert!(frames[0].is_empty(), "RFC 7 worker command starts with an empty frame: {frames:?}");
                assert_eq!(frames[1], b"MDPW01", "RFC 7 worker header");
                frames.split_off(2)
            }
            Mdp::V2 => {
                assert!(frames.len() >= 2, "RFC 18 worker command has 2+ frames: {frames:?}");
                assert_eq!(frames[0], b"MDPW02", "RFC 18 worker header");
                frames.split_off(1)
            }
        };
        let mut rest = rest;
        assert_eq!(rest[0].len(), 1, "command frame is one byte: {rest:?}");
        let cmd = rest[0][0];
        let (hb, dis) = (self.cmd(0x04, 0x05), self.cmd(0x05, 0x06));
        Some(if cmd == 0x02 {
            assert!(rest.len() >= 4, "REQUEST has address, empty delimiter and a body: {rest:?}");
            assert!(rest[2].is_empty(), "REQUEST address is followed by an empty frame: {rest:?}");
            let body = rest.split_off(3);
            ToWorker::Request(rest.swap_remove(1), body)
        } else if cmd == hb {
            assert_eq!(rest.len(), 1, "HEARTBEAT has no more frames");
            ToWorker::Heartbeat
        } else if cmd == dis {
            assert_eq!(rest.len(), 1, "DISCONNECT has no more frames");
            ToWorker::Disconnect
        } else {
            panic!("broker sent an unknown worker command 0x{cmd:02x}: {rest:?}")
        })
    }

    /// Waits up to `timeout` for a REQUEST, heartbeating on schedule
    /// meanwhile and skipping broker heartbeats. Panics on DISCONNECT.
    pub fn next_request(&mut self, timeout: Duration) -> Option<(Vec<u8>, Frames)> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            if now.duration_since(self.last_sent) >= self.heartbeat {
                self.heartbeat();
            }
            let slice = (self.last_sent + self.heartbeat)
                .saturating_duration_since(Instant::now())
                .min(deadline.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(1));
            match self.recv(slice) {
                Some(ToWorker::Request(a, b)) => return Some((a, b)),
                Some(ToWorker::Heartbeat) | None => {}
                Some(ToWorker::Disconnect) => panic!("broker disconnected worker {}", text(&self.identity)),
            }
        }
    }

    /// Like [`RawWorker::next_request`] but panics when nothing comes within [`LONG`].
    pub fn expect_request(&mut self) -> (Vec<u8>, Frames) {
        self.next_request(LONG)
            .unwrap_or_else(|| panic!("no REQUEST for worker {} within {LONG:?}", text(&self.identity)))
    }

    /// Waits for DISCONNECT (skipping heartbeats); false if none within `timeout`.
    pub fn wait_disconnect(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Some(ToWorker::Disconnect) => return true,
                Some(ToWorker::Heartbeat) => continue,
                Some(ToWorker::Request(a, _)) => panic!("unexpected REQUEST {} while waiting for DISCONNECT", text(&a)),
                None => return false,
            }
        }
    }
}

// ------------------------------------------------------------------ processes

/// A child process that is killed (SIGKILL, by its own pid) and reaped on drop.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Wraps a spawned child.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard(Some(child))
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().expect("child").id()
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Waits up to `timeout` for the child to exit; returns its status.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.0.as_mut().expect("child");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

#[path = "../ports/mod.rs"]
mod ports;
#[allow(unused_imports)] // not every test crate starts servers on chosen ports
pub use ports::free_port;

/// The path of the `zmws` binary Cargo built for these tests.
pub fn zmws_bin() -> &'static str {
    env!("CARGO_BIN_EXE_zmws")
}
