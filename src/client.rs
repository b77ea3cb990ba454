//! The zmws client: submits jobs, waits for results, asks the broker about
//! jobs and workers. Speaks MDP/0.2 over one DEALER socket and fails over to
//! the next broker endpoint when one does not answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fork::ProcessBound;
use crate::job::{JobId, JobList, JobStatus, WorkerInfo};
use crate::protocol::{Frame, C_FINAL, C_PARTIAL, C_REQUEST, MDPC02};

/// Splits `"tcp://a:1,tcp://b:2"` (or whitespace) into endpoints.
pub fn split_endpoints(list: &str) -> Vec<String> {
    list.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// A connection to one of several brokers. Not `Sync`: use one per thread.
pub struct Client {
    ctx: ProcessBound<zmq::Context>,
    socket: ProcessBound<zmq::Socket>,
    endpoints: Vec<String>,
    current: usize,
    request_timeout: Duration,
    next_tag: u64,
    /// Failback: while on a later endpoint, a probe of the first one (an
    /// `mmi.service <service>` request on a socket of its own), sent at most
    /// every [`FAILBACK_PROBE_INTERVAL`] and looked at when the next submit
    /// or call for the same service starts.
    probe: Option<ProcessBound<zmq::Socket>>,
    /// The service the probe asks about.
    probe_service: String,
    /// When the last probe was sent.
    probed_at: Instant,
    /// A request is visiting the other brokers of the list (no failback
    /// probing meanwhile).
    redirecting: bool,
    /// Sockets to the other endpoints kept open after a visit (by index;
    /// the current one is `socket`), so moving between brokers does not
    /// open a connection each time.
    spare: Vec<Option<ProcessBound<zmq::Socket>>>,
    /// An endpoint that did not take a connection is not visited again
    /// before this.
    down_until: Vec<Instant>,
}

/// Failback: how often a client or worker that failed over probes the first
/// endpoint of its list (while it is in use).
pub const FAILBACK_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Failback: how long the first endpoint must have answered before workers
/// move back to it (and the longest a client's probe answer is trusted).
pub const FAILBACK_SETTLE: Duration = Duration::from_secs(4);
/// With several endpoints, how long a new client waits for the first one
/// to connect before starting on another that has.
const START_WAIT: Duration = Duration::from_secs(1);
/// How long a visit to another broker waits for its connection, and how
/// long one that did not connect is then left out.
const VISIT_CONNECT_WAIT: Duration = Duration::from_secs(1);
const VISIT_DOWN_FOR: Duration = Duration::from_secs(5);
/// How long a submit or call keeps trying the brokers of its list while a
/// service's workers are moving between them (one refuses with 421 "moved",
/// the other does not know them yet).
const MOVING_PATIENCE: Duration = Duration::from_secs(2);

/// Largest number of `batch` calls kept in flight at once.
const BATCH_WINDOW: usize = 2000;

impl Client {
    /// Connects to a broker; `endpoints` is one endpoint or a comma-separated list.
    pub fn connect(endpoints: &str) -> Result<Client> {
        Client::connect_many(&split_endpoints(endpoints))
    }

    /// Connects to the first of several brokers; later ones are failover
    /// targets. Every endpoint must be well formed. With several, this waits
    /// up to 1 s for the first to connect and otherwise starts on the first
    /// later one that has (see [`Client::first_to_connect`]).
    pub fn connect_many<S: AsRef<str>>(endpoints: &[S]) -> Result<Client> {
        let endpoints: Vec<String> =
            endpoints.iter().map(|e| e.as_ref().trim().to_string()).filter(|e| !e.is_empty()).collect();
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument("no broker endpoint given".into()));
        }
        let ctx = ProcessBound::new(zmq::Context::new());
        let request_timeout = Duration::from_secs(5);
        let mut sockets = Vec::with_capacity(endpoints.len());
        for ep in &endpoints {
            sockets.push(Some(ProcessBound::new(Client::open(&ctx, ep, request_timeout)?)));
        }
        let current = Client::first_to_connect(&sockets);
        let socket = sockets[current].take().ok_or_else(|| Error::Closed("no socket".into()))?;
        // Only the socket in use stays open; others are opened when visited.
        let sockets: Vec<Option<ProcessBound<zmq::Socket>>> = sockets.into_iter().map(|_| None).collect();
        let now = Instant::now();
        Ok(Client {
            ctx,
            socket,
            current,
            request_timeout,
            next_tag: 1,
            probe: None,
            probe_service: String::new(),
            probed_at: now,
            redirecting: false,
            spare: sockets,
            down_until: endpoints.iter().map(|_| now).collect(),
            endpoints,
        })
    }

    /// With several endpoints, the one to start on: the first, if it
    /// connects within [`START_WAIT`]; otherwise the first of the others
    /// that has connected by then (so a client whose first broker is down
    /// starts on the second at once instead of after a request timeout);
    /// the first if none has.
    fn first_to_connect(sockets: &[Option<ProcessBound<zmq::Socket>>]) -> usize {
        if sockets.len() < 2 {
            return 0;
        }
        let writable = |i: usize| sockets[i].as_ref().is_some_and(|s| s.poll(zmq::POLLOUT, 0).unwrap_or(0) > 0);
        let deadline = crate::deadline_after(START_WAIT);
        loop {
            if writable(0) {
                return 0;
            }
            if Instant::now() >= deadline {
                return (1..sockets.len()).find(|&i| writable(i)).unwrap_or(0);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn open(ctx: &zmq::Context, endpoint: &str, timeout: Duration) -> Result<zmq::Socket> {
        let s = ctx.socket(zmq::DEALER)?;
        s.set_linger(0)?;
        s.set_sndhwm(100_000)?;
        s.set_rcvhwm(100_000)?;
        s.set_immediate(true)?;
        s.set_sndtimeo(timeout.as_millis().min(i32::MAX as u128) as i32)?;
        // A peer that accepts TCP but never speaks ZMTP must not hold the
        // process at exit for libzmq's default 30 s handshake.
        s.set_handshake_ivl(timeout.as_millis().clamp(100, i32::MAX as u128) as i32)?;
        s.connect(endpoint).map_err(|e| Error::InvalidArgument(format!("cannot connect to '{endpoint}': {e}")))?;
        Ok(s)
    }

    /// How long an administrative request (submit, status, …) waits for the
    /// broker before trying the next endpoint. Default 5 s.
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout.max(Duration::from_millis(1));
        let _ = self.socket.set_sndtimeo(self.request_timeout.as_millis().min(i32::MAX as u128) as i32);
    }

    /// The endpoint in use now.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current]
    }

    fn failover(&mut self) -> Result<()> {
        self.ctx.check("Client")?;
        self.current = (self.current + 1) % self.endpoints.len();
        // A fresh socket: the one left behind did not answer, and one kept
        // from an earlier visit might hold a stale reply.
        self.spare[self.current] = None;
        self.socket = ProcessBound::new(Client::open(&self.ctx, &self.endpoints[self.current], self.request_timeout)?);
        if self.endpoints.len() > 1 {
            tracing::info!(endpoint = %self.endpoints[self.current], "client switched broker endpoint");
        } else {
            tracing::debug!(endpoint = %self.endpoints[self.current], "client reconnecting to its broker");
        }
        // A failover starts a fresh probing cycle for the first endpoint.
        self.probe = None;
        self.probed_at = Instant::now();
        Ok(())
    }

    /// Makes endpoint `index` the current one, keeping the socket of the
    /// one left for a later visit (reuses a kept socket, dropping any reply
    /// still waiting on it).
    fn switch_to(&mut self, index: usize) -> Result<()> {
        self.ctx.check("Client")?;
        if index == self.current {
            return Ok(());
        }
        let next = match self.spare[index].take() {
            Some(s) => {
                while s.recv_msg(zmq::DONTWAIT).is_ok() {}
                let _ = s.set_sndtimeo(self.request_timeout.as_millis().min(i32::MAX as u128) as i32);
                s
            }
            None => ProcessBound::new(Client::open(&self.ctx, &self.endpoints[index], self.request_timeout)?),
        };
        let left = std::mem::replace(&mut self.socket, next);
        self.spare[self.current] = Some(left);
        self.current = index;
        Ok(())
    }

    /// Whether the socket's connection is up within `wait` (with
    /// ZMQ_IMMEDIATE a DEALER is writable only once connected).
    fn connected_within(&self, wait: Duration) -> bool {
        self.socket.poll(zmq::POLLOUT, wait.as_millis().min(i64::MAX as u128) as i64).unwrap_or(0) > 0
    }

    /// Failback, called when a submit or call for `service` starts
    /// (nothing is in flight then). While on a later endpoint of the list,
    /// the first one is asked `mmi.service <service>` on a throw-away socket
    /// every [`FAILBACK_PROBE_INTERVAL`]; a submit or call for that service
    /// that finds the answer `200` (the first broker is back *and* has
    /// workers for it: they move back before clients) moves the client back
    /// first. An answer older than [`FAILBACK_SETTLE`] is not trusted. A
    /// client that calls nothing but the administrative requests does not
    /// move back (nor does it need to).
    fn fail_back(&mut self, service: &str) {
        if self.redirecting {
            return;
        }
        if self.current == 0 || self.ctx.check("Client").is_err() {
            self.probe = None;
            return;
        }
        let now = Instant::now();
        if self.probe.is_some() && now.duration_since(self.probed_at) >= FAILBACK_SETTLE {
            self.probe = None; // too old to trust
        }
        if let Some(probe) = self.probe.as_ref().filter(|_| self.probe_service == service) {
            if let Ok(reply) = probe.recv_multipart(zmq::DONTWAIT) {
                self.probe = None;
                if reply.last().map(|f| f.as_slice()) == Some(b"200") {
                    match self.switch_to(0) {
                        Ok(()) => {
                            tracing::info!(endpoint = %self.endpoints[0], service, "the first broker of the list is back with workers: client moved back")
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot reopen the first broker endpoint"),
                    }
                    return;
                }
            }
        }
        if self.probe.is_none() && now.duration_since(self.probed_at) >= FAILBACK_PROBE_INTERVAL {
            self.probed_at = now;
            self.probe_service = service.to_string();
            self.probe = self.open_probe(service).ok().map(ProcessBound::new);
        }
    }

    /// A throw-away DEALER carrying one `mmi.service <service>` request to the first endpoint.
    fn open_probe(&self, service: &str) -> std::result::Result<zmq::Socket, zmq::Error> {
        let s = self.ctx.socket(zmq::DEALER)?;
        s.set_linger(0)?;
        s.set_handshake_ivl(self.request_timeout.as_millis().clamp(100, i32::MAX as u128) as i32)?;
        s.connect(&self.endpoints[0])?;
        // Queued until the connection is up (no ZMQ_IMMEDIATE here).
        s.send_multipart([MDPC02, &[C_REQUEST], b"mmi.service", service.as_bytes()], zmq::DONTWAIT)?;
        Ok(s)
    }

    /// Runs a submit, call or batch for `service` (each starts with
    /// [`Client::fail_back`]). When the broker refuses it because no worker
    /// for the service is there (404: none ever offered it; 421: they moved
    /// to another broker), it is offered, in list order, to the other
    /// brokers that answer `mmi.service` with 200 (live workers: a broker
    /// that merely knows the service would queue it for nobody). The client
    /// then stays with the broker that took it. While some broker says
    /// "moved" (the workers are between brokers) the round is tried again
    /// for up to [`MOVING_PATIENCE`]. When every broker refuses, the first
    /// refusal is returned and the client stays where it was.
    fn to_a_broker_that_knows<T>(
        &mut self,
        service: &str,
        deadline: Option<Instant>,
        op: impl FnMut(&mut Client) -> Result<T>,
    ) -> Result<T> {
        let refused = |r: &Result<T>| matches!(r, Err(Error::NoSuchService(_)));
        let moved =
            |r: &Result<T>| matches!(r, Err(Error::NoSuchService(m)) if m.ends_with(crate::protocol::MOVED_REFUSAL));
        self.elsewhere_when(refused, moved, Some(service), deadline, op)
    }

    /// Runs a request about one job; a broker that does not know the job
    /// (each broker has its own jobs) sends it to the other brokers of the
    /// list in turn, and the client returns to its broker afterwards.
    fn to_the_broker_of_the_job<T>(&mut self, op: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        self.elsewhere_when(|r: &Result<T>| matches!(r, Err(Error::NotFound(_))), |_: &Result<T>| false, None, None, op)
    }

    /// Runs `op`; when its outcome is `refused`, runs it on the other
    /// endpoints in list order until one is not. With `workers_for`, only
    /// on brokers with live workers for that service, and the client stays
    /// on the one that took it; without, it returns to its broker. While
    /// some outcome is `again` the round is repeated, 20 ms apart, for up to
    /// [`MOVING_PATIENCE`]. When all refuse, the first refusal. No wait of
    /// a visit goes past `deadline` (a call's own).
    fn elsewhere_when<T>(
        &mut self,
        refused: impl Fn(&Result<T>) -> bool,
        again: impl Fn(&Result<T>) -> bool,
        workers_for: Option<&str>,
        deadline: Option<Instant>,
        mut op: impl FnMut(&mut Client) -> Result<T>,
    ) -> Result<T> {
        // (Reset here too: a panic in a caller's partial-reply callback
        // during a visit would have left it set.)
        self.redirecting = false;
        let first = op(self);
        if !refused(&first) || self.endpoints.len() < 2 {
            return first;
        }
        let home = self.current;
        let mut give_up = crate::deadline_after(MOVING_PATIENCE.min(self.request_timeout));
        if let Some(d) = deadline {
            give_up = give_up.min(d);
        }
        let left = |d: Duration| d.min(give_up.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
        let mut any_moved = again(&first);
        let mut outcome = None;
        // Endpoints whose socket may still get a late reply: not kept.
        let mut tainted = Vec::new();
        // No failback probing while the request visits other brokers.
        self.redirecting = true;
        'rounds: loop {
            for index in (0..self.endpoints.len()).filter(|&i| i != home) {
                if Instant::now() >= give_up && deadline.is_some() {
                    break 'rounds;
                }
                if Instant::now() < self.down_until[index] || self.switch_to(index).is_err() {
                    continue;
                }
                // A broker that does not take the connection within a
                // second (down) is left out for a while, not waited for.
                if !self.connected_within(left(VISIT_CONNECT_WAIT.min(self.request_timeout))) {
                    self.down_until[index] = crate::deadline_after(VISIT_DOWN_FOR);
                    continue;
                }
                if let Some(service) = workers_for {
                    let by = Instant::now() + left(VISIT_CONNECT_WAIT.min(self.request_timeout));
                    match self.has_workers_here(service, by) {
                        Some(true) => {}
                        Some(false) => continue,
                        None => {
                            tainted.push(index);
                            continue;
                        }
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break 'rounds; // no time left to send the job
                    }
                }
                let r = op(self);
                if matches!(r, Err(Error::Timeout(_))) {
                    tainted.push(index);
                }
                if !refused(&r) {
                    outcome = Some(r);
                    break 'rounds;
                }
                any_moved |= again(&r);
            }
            if !any_moved || Instant::now() >= give_up {
                break;
            }
            any_moved = false;
            std::thread::sleep(Duration::from_millis(20));
            if self.switch_to(home).is_err() {
                break;
            }
            let r = op(self);
            if matches!(r, Err(Error::Timeout(_))) {
                tainted.push(home);
            }
            if !refused(&r) {
                outcome = Some(r);
                break;
            }
            any_moved |= again(&r);
        }
        self.redirecting = false;
        let taken_here = workers_for.is_some() && outcome.as_ref().is_some_and(|r| r.is_ok());
        if !taken_here {
            let _ = self.switch_to(home);
        }
        for i in tainted {
            if i != self.current {
                self.spare[i] = None;
            } else if let Ok(s) = Client::open(&self.ctx, &self.endpoints[i], self.request_timeout) {
                self.socket = ProcessBound::new(s);
            }
        }
        outcome.unwrap_or(first)
    }

    /// Asks the current broker `mmi.service <service>` (no failover)
    /// whether it has live workers for it; `None` when it did not answer by
    /// `deadline` (its late answer may still come: the socket is not kept).
    fn has_workers_here(&self, service: &str, deadline: Instant) -> Option<bool> {
        self.send(b"mmi.service", &[service.as_bytes()]).ok()?;
        loop {
            match self.recv(deadline) {
                Ok(Some((true, s, body))) if s == b"mmi.service" => {
                    return Some(body.first().map(|f| f.as_slice()) == Some(b"200"))
                }
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    fn send(&self, service: &[u8], body: &[&[u8]]) -> Result<()> {
        self.socket.check("Client")?;
        let mut frames: Vec<&[u8]> = Vec::with_capacity(body.len() + 3);
        frames.push(MDPC02);
        frames.push(&[C_REQUEST]);
        frames.push(service);
        frames.extend_from_slice(body);
        self.socket.send_multipart(frames, 0).map_err(|e| match e {
            zmq::Error::EAGAIN => {
                Error::Timeout(format!("broker at {} is not reachable", self.endpoints[self.current]))
            }
            other => other.into(),
        })
    }

    /// Sends a request, moving to the next endpoint when the current broker
    /// cannot take it within the request timeout (no connection).
    fn send_failover(&mut self, service: &[u8], body: &[&[u8]]) -> Result<()> {
        if self.redirecting {
            // Visiting another broker: its own answer (or silence) counts.
            return self.send(service, body);
        }
        let mut last = None;
        for _ in 0..self.endpoints.len().max(1) {
            match self.send(service, body) {
                Ok(()) => return Ok(()),
                Err(e @ Error::Timeout(_)) => {
                    last = Some(e);
                    self.failover()?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Timeout("no broker reachable".into())))
    }

    /// Receives one MDP/0.2 reply: (is_final, service, body). `None` on timeout.
    fn recv(&self, deadline: Instant) -> Result<Option<(bool, Frame, Vec<Frame>)>> {
        self.socket.check("Client")?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = (left.as_micros().div_ceil(1000)).min(i64::MAX as u128) as i64;
            let ready = match self.socket.poll(zmq::POLLIN, ms) {
                Ok(n) => n,
                Err(zmq::Error::EINTR) => continue, // a signal: keep waiting until the deadline
                Err(e) => return Err(e.into()),
            };
            if ready == 0 {
                if Instant::now() < deadline {
                    continue; // woke a little early (millisecond rounding)
                }
                return Ok(None);
            }
            let mut frames = self.socket.recv_multipart(0)?;
            if frames.len() < 3 || frames[0] != MDPC02 || frames[1].len() != 1 {
                tracing::debug!("malformed reply from broker dropped");
                continue;
            }
            let kind = frames[1][0];
            let body = frames.split_off(3);
            let service = frames.pop().unwrap_or_default();
            match kind {
                C_FINAL => return Ok(Some((true, service, body))),
                C_PARTIAL => return Ok(Some((false, service, body))),
                _ => continue,
            }
        }
    }

    /// Sends a request to a `zmws.*` service and waits for its final reply,
    /// failing over to the next endpoint when the broker does not answer.
    fn request(&mut self, service: &str, body: &[&[u8]]) -> Result<Vec<Frame>> {
        // Visiting another broker (`elsewhere_when`): one try, no failover.
        let tries = if self.redirecting { 1 } else { self.endpoints.len().max(1) };
        let mut last = None;
        for _ in 0..tries {
            match self.send(service.as_bytes(), body) {
                Ok(()) => {
                    let deadline = crate::deadline_after(self.request_timeout);
                    loop {
                        match self.recv(deadline)? {
                            Some((true, s, b)) if s == service.as_bytes() => return Ok(b),
                            Some(_) => continue, // stale reply of an earlier request
                            None => break,
                        }
                    }
                    last = Some(Error::Timeout(format!(
                        "broker at {} did not answer {service} within {} ms",
                        self.endpoints[self.current],
                        self.request_timeout.as_millis()
                    )));
                }
                Err(e) => last = Some(e),
            }
            if self.redirecting {
                break;
            }
            self.failover()?;
        }
        Err(last.unwrap_or_else(|| Error::Timeout("no broker answered".into())))
    }

    /// Turns a `[code, message]` reply into an error; job-id context maps 404 to NotFound.
    fn status_error(body: &[Frame], job_context: bool) -> Error {
        let code = String::from_utf8_lossy(body.first().map(|f| f.as_slice()).unwrap_or(b"500")).into_owned();
        let msg = body.get(1).map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default();
        if job_context && code == "404" {
            return Error::NotFound(msg);
        }
        if code == "409" {
            return Error::InvalidArgument(msg);
        }
        Error::from_status(&code, msg)
    }

    /// The single JSON frame of a listing or status reply.
    fn json_body(body: &[Frame]) -> Result<String> {
        match body.first() {
            Some(f) if !f.is_empty() => Ok(String::from_utf8_lossy(f).into_owned()),
            _ => Err(Error::Protocol("the broker sent an empty reply".into())),
        }
    }

    fn is_error_reply(body: &[Frame]) -> bool {
        body.len() == 2 && body[0].len() == 3 && body[0][0] >= b'3' && body[0].iter().all(u8::is_ascii_digit)
    }

    fn check_service(service: &str) -> Result<()> {
        if service.is_empty() || service.len() > 255 {
            return Err(Error::InvalidArgument("service name must be 1 to 255 bytes".into()));
        }
        Ok(())
    }

    /// Submits an async job; returns its id as soon as the broker accepted it.
    pub fn submit(&mut self, service: &str, payload: &[u8]) -> Result<JobId> {
        Client::check_service(service)?;
        self.to_a_broker_that_knows(service, None, |c| c.submit_once(service, payload))
    }

    fn submit_once(&mut self, service: &str, payload: &[u8]) -> Result<JobId> {
        self.fail_back(service);
        let body = self.request("zmws.submit", &[service.as_bytes(), payload])?;
        if body.len() == 1 {
            if let Some(id) = JobId::parse(&body[0]) {
                return Ok(id);
            }
        }
        Err(Client::status_error(&body, false))
    }

    /// Submits an async job with an idempotency key: while the first job with
    /// that key is queued, running, or within its result TTL, submitting the
    /// same key again returns the same job id instead of a new job.
    pub fn submit_unique(&mut self, service: &str, payload: &[u8], key: &str) -> Result<JobId> {
        Client::check_service(service)?;
        if key.is_empty() || key.len() > 255 {
            return Err(Error::InvalidArgument("idempotency key must be 1 to 255 bytes".into()));
        }
        self.to_a_broker_that_knows(service, None, |c| c.submit_unique_once(service, payload, key))
    }

    fn submit_unique_once(&mut self, service: &str, payload: &[u8], key: &str) -> Result<JobId> {
        self.fail_back(service);
        let body = self.request("zmws.submit.unique", &[key.as_bytes(), service.as_bytes(), payload])?;
        if body.len() == 1 {
            if let Some(id) = JobId::parse(&body[0]) {
                return Ok(id);
            }
        }
        Err(Client::status_error(&body, false))
    }

    /// Submits one async job per payload in a single message
    /// (`zmws.submit.batch`): all are accepted, or none is. Returns the job
    /// ids in input order. At most [`crate::engine::MAX_SUBMIT_BATCH`] payloads.
    pub fn submit_batch<P: AsRef<[u8]>>(&mut self, service: &str, payloads: &[P]) -> Result<Vec<JobId>> {
        Client::check_service(service)?;
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        self.to_a_broker_that_knows(service, None, |c| c.submit_batch_once(service, payloads))
    }

    fn submit_batch_once<P: AsRef<[u8]>>(&mut self, service: &str, payloads: &[P]) -> Result<Vec<JobId>> {
        self.fail_back(service);
        if payloads.len() > crate::engine::MAX_SUBMIT_BATCH {
            return Err(Error::InvalidArgument(format!(
                "a batch holds at most {} jobs; this one has {}",
                crate::engine::MAX_SUBMIT_BATCH,
                payloads.len()
            )));
        }
        let mut body: Vec<&[u8]> = Vec::with_capacity(payloads.len() + 1);
        body.push(service.as_bytes());
        body.extend(payloads.iter().map(|p| p.as_ref()));
        let reply = self.request("zmws.submit.batch", &body)?;
        // `["200", ids]`: the ids in one frame, 32 hex characters each.
        if reply.first().map(|f| f.as_slice()) == Some(b"200") && reply.len() == 2 {
            let packed = &reply[1];
            if packed.len() != payloads.len() * 32 {
                return Err(Error::Protocol(format!(
                    "the broker answered a batch of {} with {} bytes of job ids",
                    payloads.len(),
                    packed.len()
                )));
            }
            let ids: Option<Vec<JobId>> = packed.chunks_exact(32).map(JobId::parse).collect();
            if let Some(ids) = ids {
                return Ok(ids);
            }
            return Err(Error::Protocol("the broker sent a malformed job id in a batch reply".into()));
        }
        if Client::is_error_reply(&reply) {
            return Err(Client::status_error(&reply, false));
        }
        Err(Error::Protocol(format!("the broker answered a batch of {} with {} frames", payloads.len(), reply.len())))
    }

    /// Runs a job and waits up to `timeout` for its result.
    pub fn call(&mut self, service: &str, payload: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        self.call_with_partials(service, payload, timeout, &mut |_| {})
    }

    /// Like [`Client::call`], handing every partial reply to `on_partial` as it arrives.
    pub fn call_with_partials(
        &mut self,
        service: &str,
        payload: &[u8],
        timeout: Duration,
        on_partial: &mut dyn FnMut(&[u8]),
    ) -> Result<Vec<u8>> {
        Client::check_service(service)?;
        // One deadline for the call, wherever it is offered.
        let deadline = crate::deadline_after(timeout);
        self.to_a_broker_that_knows(service, Some(deadline), |c| {
            c.call_once(service, payload, deadline, timeout, &mut *on_partial)
        })
    }

    /// One offer of a call, waiting until `deadline`; `asked` is the caller's
    /// whole timeout, for the message.
    fn call_once(
        &mut self,
        service: &str,
        payload: &[u8],
        deadline: Instant,
        asked: Duration,
        on_partial: &mut dyn FnMut(&[u8]),
    ) -> Result<Vec<u8>> {
        self.fail_back(service);
        let tag = self.next_tag.to_string();
        self.next_tag += 1;
        self.send_failover(b"zmws.call", &[tag.as_bytes(), service.as_bytes(), payload])?;
        loop {
            match self.recv(deadline)? {
                None => {
                    return Err(Error::Timeout(format!(
                        "no result from service '{service}' within {} ms",
                        asked.as_millis()
                    )))
                }
                Some((fin, s, body)) => {
                    if s != b"zmws.call" || body.first().map(|t| t.as_slice()) != Some(tag.as_bytes()) {
                        continue;
                    }
                    if !fin {
                        on_partial(&body[1..].concat());
                        continue;
                    }
                    return Client::call_outcome(&body[1..]);
                }
            }
        }
    }

    /// Decodes `[code, job_id, rest…]` of a `zmws.call` FINAL.
    fn call_outcome(body: &[Frame]) -> Result<Vec<u8>> {
        let code = body.first().map(|f| f.as_slice()).unwrap_or(b"500");
        if code == b"200" {
            return Ok(body.get(2..).map(|r| r.concat()).unwrap_or_default());
        }
        let msg = body.get(2).map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default();
        Err(Error::from_status(&String::from_utf8_lossy(code), msg))
    }

    /// Submits every payload (many in flight) and returns the outcomes in
    /// input order. `timeout` bounds the whole batch.
    pub fn batch<P: AsRef<[u8]>>(
        &mut self,
        service: &str,
        payloads: &[P],
        timeout: Duration,
    ) -> Result<Vec<Result<Vec<u8>>>> {
        Client::check_service(service)?;
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        // A batch every job of which was refused for want of a worker here
        // is offered to the other brokers of the list, like a call.
        let deadline = crate::deadline_after(timeout);
        let outcome = self.to_a_broker_that_knows(service, Some(deadline), |c| {
            let results = c.batch_once(service, payloads, deadline.saturating_duration_since(Instant::now()))?;
            match results.first() {
                Some(Err(e @ Error::NoSuchService(_)))
                    if results.iter().all(|r| matches!(r, Err(Error::NoSuchService(_)))) =>
                {
                    Err(e.clone())
                }
                _ => Ok(results),
            }
        });
        match outcome {
            Err(e @ Error::NoSuchService(_)) => Ok(payloads.iter().map(|_| Err(e.clone())).collect()),
            other => other,
        }
    }

    fn batch_once<P: AsRef<[u8]>>(
        &mut self,
        service: &str,
        payloads: &[P],
        timeout: Duration,
    ) -> Result<Vec<Result<Vec<u8>>>> {
        self.fail_back(service);
        let deadline = crate::deadline_after(timeout);
        let n = payloads.len();
        let mut results: Vec<Option<Result<Vec<u8>>>> = (0..n).map(|_| None).collect();
        let base = self.next_tag;
        self.next_tag += n as u64;
        let mut sent = 0usize;
        let mut done = 0usize;
        let mut tags: HashMap<Vec<u8>, usize> = HashMap::with_capacity(n.min(BATCH_WINDOW * 2));
        let mut limit = n;
        while done < n {
            while sent < limit && sent - done < BATCH_WINDOW {
                let tag = (base + sent as u64).to_string().into_bytes();
                let sending = if sent == 0 {
                    self.send_failover(b"zmws.call", &[&tag, service.as_bytes(), payloads[sent].as_ref()])
                } else {
                    self.send(b"zmws.call", &[&tag, service.as_bytes(), payloads[sent].as_ref()])
                };
                if let Err(e) = sending {
                    if sent == 0 {
                        return Err(e);
                    }
                    // Keep what is in flight; the rest could not be sent.
                    for r in results.iter_mut().skip(sent) {
                        *r = Some(Err(e.clone()));
                    }
                    done += n - sent;
                    limit = sent;
                    break;
                }
                tags.insert(tag, sent);
                sent += 1;
            }
            match self.recv(deadline)? {
                None => {
                    for r in results.iter_mut().filter(|r| r.is_none()) {
                        *r = Some(Err(Error::Timeout("batch deadline passed before this job finished".into())));
                    }
                    break;
                }
                Some((true, s, body)) if s == b"zmws.call" && !body.is_empty() => {
                    if let Some(i) = tags.remove(&body[0]) {
                        results[i] = Some(Client::call_outcome(&body[1..]));
                        done += 1;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or_else(|| Err(Error::Timeout("not finished".into())))).collect())
    }

    /// The status of a job as the broker's JSON text.
    pub fn status_json(&mut self, job_id: &str) -> Result<String> {
        self.to_the_broker_of_the_job(|c| {
            let body = c.request("zmws.status", &[job_id.as_bytes()])?;
            if Client::is_error_reply(&body) {
                return Err(Client::status_error(&body, true));
            }
            Client::json_body(&body)
        })
    }

    /// The status of a job.
    pub fn status(&mut self, job_id: &str) -> Result<JobStatus> {
        let text = self.status_json(job_id)?;
        serde_json::from_str(&text).map_err(|e| Error::Protocol(format!("bad status JSON from broker: {e}")))
    }

    /// The result of a finished job: `Pending` while it runs, `JobFailed`
    /// with the reason if it failed, `NotFound` for unknown ids.
    pub fn result(&mut self, job_id: &str) -> Result<Vec<u8>> {
        self.to_the_broker_of_the_job(|c| {
            let body = c.request("zmws.result", &[job_id.as_bytes()])?;
            match body.first().map(|f| f.as_slice()) {
                Some(b"200") => Ok(body[1..].concat()),
                _ => Err(Client::status_error(&body, true)),
            }
        })
    }

    /// Cancels a queued or running job.
    pub fn cancel(&mut self, job_id: &str) -> Result<()> {
        self.to_the_broker_of_the_job(|c| {
            let body = c.request("zmws.cancel", &[job_id.as_bytes()])?;
            match body.first().map(|f| f.as_slice()) {
                Some(b"200") => Ok(()),
                _ => Err(Client::status_error(&body, true)),
            }
        })
    }

    /// A job listing as the broker's JSON array text.
    pub fn jobs_json(&mut self, kind: JobList) -> Result<String> {
        let body = self.request("zmws.jobs", &[kind.as_str().as_bytes()])?;
        if Client::is_error_reply(&body) {
            return Err(Client::status_error(&body, false));
        }
        Client::json_body(&body)
    }

    /// A job listing.
    pub fn jobs(&mut self, kind: JobList) -> Result<Vec<JobStatus>> {
        let text = self.jobs_json(kind)?;
        serde_json::from_str(&text).map_err(|e| Error::Protocol(format!("bad jobs JSON from broker: {e}")))
    }

    /// The live workers as the broker's JSON array text.
    pub fn workers_json(&mut self) -> Result<String> {
        let body = self.request("zmws.workers", &[b""])?;
        Client::json_body(&body)
    }

    /// The live workers.
    pub fn workers(&mut self) -> Result<Vec<WorkerInfo>> {
        let text = self.workers_json()?;
        serde_json::from_str(&text).map_err(|e| Error::Protocol(format!("bad workers JSON from broker: {e}")))
    }

    /// Every service ever offered, with queue depth and counters, as JSON text.
    pub fn services_json(&mut self) -> Result<String> {
        let body = self.request("zmws.services", &[b""])?;
        Client::json_body(&body)
    }

    /// MMI: whether at least one live worker offers `service`.
    pub fn service_available(&mut self, service: &str) -> Result<bool> {
        let body = self.request("mmi.service", &[service.as_bytes()])?;
        Ok(body.first().map(|f| f.as_slice()) == Some(b"200"))
    }
}
