//! Majordomo wire codec: turns ZeroMQ multipart messages into typed commands
//! and back. Pure functions over frames; no sockets, no state.
//!
//! Supports MDP/0.1 (RFC 7) and MDP/0.2 (RFC 18) on the same socket: after
//! the ROUTER identity frame, an empty frame means 0.1 and a protocol header
//! (`MDPC02`/`MDPW02`) means 0.2. zmws worker extensions (capacity in READY,
//! FAIL) are documented in `docs/PROTOCOL.md`.

/// One ZeroMQ message part.
pub type Frame = Vec<u8>;

/// Client protocol header, MDP/0.1.
pub const MDPC01: &[u8] = b"MDPC01";
/// Client protocol header, MDP/0.2.
pub const MDPC02: &[u8] = b"MDPC02";
/// Worker protocol header, MDP/0.1.
pub const MDPW01: &[u8] = b"MDPW01";
/// Worker protocol header, MDP/0.2.
pub const MDPW02: &[u8] = b"MDPW02";

/// MDP/0.2 client command: REQUEST.
pub const C_REQUEST: u8 = 0x01;
/// MDP/0.2 client command: PARTIAL reply.
pub const C_PARTIAL: u8 = 0x02;
/// MDP/0.2 client command: FINAL reply.
pub const C_FINAL: u8 = 0x03;

/// Worker command READY (both versions).
pub const W_READY: u8 = 0x01;
/// Worker command REQUEST (both versions).
pub const W_REQUEST: u8 = 0x02;
/// MDP/0.1 REPLY / MDP/0.2 PARTIAL.
pub const W_REPLY_OR_PARTIAL: u8 = 0x03;
/// MDP/0.1 HEARTBEAT / MDP/0.2 FINAL.
pub const W_HEARTBEAT_OR_FINAL: u8 = 0x04;
/// MDP/0.1 DISCONNECT / MDP/0.2 HEARTBEAT.
pub const W_DISCONNECT_OR_HEARTBEAT: u8 = 0x05;
/// MDP/0.2 DISCONNECT.
pub const W_DISCONNECT_V2: u8 = 0x06;
/// zmws extension: FAIL `[job_id, "", retryable "0"/"1", reason]`.
pub const W_FAIL: u8 = 0x10;
/// zmws extension (workers that announced `batch`): several jobs in one
/// message, `[MDPW02, 0x11, records]`, see [`encode_job_records`].
pub const W_REQUEST_BATCH: u8 = 0x11;
/// zmws extension: several outcomes in one message, `[MDPW02, 0x12, records]`,
/// see [`encode_outcome_record`].
pub const W_REPLY_BATCH: u8 = 0x12;

/// Prefix of the optional READY frame by which a zmws worker announces the
/// extensions (capacity, FAIL, attempt number in REQUEST).
pub const READY_EXTENSION_PREFIX: &[u8] = b"zmws:1";

/// Majordomo protocol version of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// RFC 7, MDP/0.1.
    V01,
    /// RFC 18, MDP/0.2.
    V02,
}

impl Version {
    /// `"0.1"` or `"0.2"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Version::V01 => "0.1",
            Version::V02 => "0.2",
        }
    }
}

/// How to address a reply to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRoute {
    /// ROUTER identity of the client.
    pub peer: Frame,
    /// Protocol the client spoke.
    pub version: Version,
    /// Whether replies start with an empty delimiter frame (always for 0.1;
    /// for 0.2 when a REQ-style client sent one).
    pub delimiter: bool,
}

/// A decoded client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// Where replies go.
    pub route: ClientRoute,
    /// The service name exactly as sent.
    pub service: Frame,
    /// The request body frames (at least one; an absent body is one empty frame).
    pub body: Vec<Frame>,
}

/// A command a worker sent to the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerCommand {
    /// Registers the worker for one service; `extension` is the optional
    /// zmws frame (`zmws:1 capacity=N`).
    Ready {
        /// Service name.
        service: Frame,
        /// Optional zmws extension frame.
        extension: Option<Frame>,
    },
    /// A partial reply (MDP/0.2 PARTIAL).
    Partial {
        /// The job id envelope.
        address: Frame,
        /// Reply body.
        body: Vec<Frame>,
    },
    /// The final reply (MDP/0.1 REPLY, MDP/0.2 FINAL).
    Final {
        /// The job id envelope.
        address: Frame,
        /// Reply body.
        body: Vec<Frame>,
    },
    /// zmws extension: the job failed with a reason.
    Fail {
        /// The job id envelope.
        address: Frame,
        /// Whether another attempt may run it.
        retryable: bool,
        /// Why it failed.
        reason: String,
    },
    /// zmws extension: several outcomes packed in one frame
    /// (see [`decode_outcome_records`]).
    ReplyBatch {
        /// The packed records.
        records: Frame,
    },
    /// Liveness signal.
    Heartbeat,
    /// The worker leaves.
    Disconnect,
    /// zmws extension: a DISCONNECT carrying [`DISCONNECT_MOVING`]. The
    /// worker asks to leave for another broker; the broker answers
    /// DISCONNECT + [`MOVED`] (it is gone) or HEARTBEAT + [`STAY`].
    Moving,
    /// A valid MDPW01/MDPW02 header with an unknown or malformed command
    /// (RFC 7/18: the peer is then treated as invalid and disconnected).
    Invalid {
        /// What was wrong.
        reason: String,
    },
}

/// A decoded worker message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerMessage {
    /// ROUTER identity of the worker.
    pub peer: Frame,
    /// Protocol version it spoke.
    pub version: Version,
    /// What it said.
    pub command: WorkerCommand,
}

/// Why a message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Identity of the sender, when at least that frame was present.
    pub peer: Option<Frame>,
    /// What was wrong.
    pub reason: String,
}

fn bad(peer: Option<&Frame>, reason: impl Into<String>) -> DecodeError {
    DecodeError { peer: peer.cloned(), reason: reason.into() }
}

fn body_or_empty(frames: Vec<Frame>) -> Vec<Frame> {
    if frames.is_empty() {
        vec![Vec::new()]
    } else {
        frames
    }
}

/// Decodes a message received on the client ROUTER socket.
pub fn decode_client(mut frames: Vec<Frame>) -> Result<ClientRequest, DecodeError> {
    if frames.len() < 2 {
        return Err(bad(frames.first(), "client message too short"));
    }
    let mut rest = frames.split_off(1);
    let peer = frames.pop().expect("one frame left");
    let mut delimiter = false;
    if rest[0].is_empty() {
        delimiter = true;
        rest.remove(0);
    }
    if rest.is_empty() {
        return Err(bad(Some(&peer), "client message has no protocol header"));
    }
    let header = rest.remove(0);
    let version = if header == MDPC01 {
        if !delimiter {
            return Err(bad(Some(&peer), "MDP/0.1 client request must start with an empty frame"));
        }
        Version::V01
    } else if header == MDPC02 {
        if rest.is_empty() || rest[0].as_slice() != [C_REQUEST] {
            return Err(bad(Some(&peer), "MDP/0.2 client message is not a REQUEST (0x01)"));
        }
        rest.remove(0);
        Version::V02
    } else {
        return Err(bad(Some(&peer), "unknown client protocol header (expected MDPC01 or MDPC02)"));
    };
    if rest.is_empty() {
        return Err(bad(Some(&peer), "client request has no service frame"));
    }
    let service = rest.remove(0);
    Ok(ClientRequest { route: ClientRoute { peer, version, delimiter }, service, body: body_or_empty(rest) })
}

/// Decodes a message received on the worker ROUTER socket.
pub fn decode_worker(mut frames: Vec<Frame>) -> Result<WorkerMessage, DecodeError> {
    if frames.len() < 3 {
        return Err(bad(frames.first(), "worker message too short"));
    }
    let mut rest = frames.split_off(1);
    let peer = frames.pop().expect("one frame left");
    let version = if rest[0].is_empty() {
        rest.remove(0);
        if rest[0].as_slice() != MDPW01 {
            return Err(bad(Some(&peer), "worker message after empty frame is not MDPW01"));
        }
        Version::V01
    } else if rest[0].as_slice() == MDPW02 {
        Version::V02
    } else {
        return Err(bad(Some(&peer), "unknown worker protocol header (expected MDPW01 or MDPW02)"));
    };
    rest.remove(0);
    let command =
        decode_worker_command(&peer, version, rest).unwrap_or_else(|e| WorkerCommand::Invalid { reason: e.reason });
    Ok(WorkerMessage { peer, version, command })
}

/// The command after a valid worker header; an error becomes
/// [`WorkerCommand::Invalid`].
fn decode_worker_command(peer: &Frame, version: Version, mut rest: Vec<Frame>) -> Result<WorkerCommand, DecodeError> {
    let peer = peer.clone();
    if rest.is_empty() || rest[0].len() != 1 {
        return Err(bad(Some(&peer), "worker command frame must be one byte"));
    }
    let cmd = rest.remove(0)[0];
    let command = match (version, cmd) {
        (_, W_READY) => {
            if rest.is_empty() || rest[0].is_empty() {
                return Err(bad(Some(&peer), "READY without a service name"));
            }
            let service = rest.remove(0);
            let extension = if rest.is_empty() { None } else { Some(rest.remove(0)) };
            WorkerCommand::Ready { service, extension }
        }
        (Version::V01, W_REPLY_OR_PARTIAL) | (Version::V02, W_HEARTBEAT_OR_FINAL) => {
            let (address, body) = split_envelope(&peer, rest)?;
            WorkerCommand::Final { address, body }
        }
        (Version::V02, W_REPLY_OR_PARTIAL) => {
            let (address, body) = split_envelope(&peer, rest)?;
            WorkerCommand::Partial { address, body }
        }
        (Version::V01, W_HEARTBEAT_OR_FINAL) | (Version::V02, W_DISCONNECT_OR_HEARTBEAT) => WorkerCommand::Heartbeat,
        (Version::V02, W_DISCONNECT_V2) if rest.first().is_some_and(|f| f.as_slice() == DISCONNECT_MOVING) => {
            WorkerCommand::Moving
        }
        (Version::V01, W_DISCONNECT_OR_HEARTBEAT) | (Version::V02, W_DISCONNECT_V2) => WorkerCommand::Disconnect,
        (_, W_FAIL) => {
            let (address, body) = split_envelope(&peer, rest)?;
            let retryable = body.first().map(|f| f.as_slice() == b"1").unwrap_or(false);
            let reason = body
                .get(1)
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .unwrap_or_else(|| "worker reported failure".to_string());
            WorkerCommand::Fail { address, retryable, reason }
        }
        (Version::V02, W_REPLY_BATCH) => {
            let records = rest.into_iter().next().unwrap_or_default();
            if decode_outcome_records(&records).is_none() {
                return Err(bad(Some(&peer), "REPLY_BATCH records are malformed"));
            }
            WorkerCommand::ReplyBatch { records }
        }
        (_, other) => return Err(bad(Some(&peer), format!("unknown worker command 0x{other:02x}"))),
    };
    Ok(command)
}

fn split_envelope(peer: &Frame, mut rest: Vec<Frame>) -> Result<(Frame, Vec<Frame>), DecodeError> {
    if rest.len() < 2 {
        return Err(bad(Some(peer), "reply without client address and empty delimiter"));
    }
    let body = rest.split_off(2);
    if !rest[1].is_empty() {
        return Err(bad(Some(peer), "client address must be followed by an empty frame"));
    }
    rest.truncate(1);
    let address = rest.pop().expect("address");
    Ok((address, body_or_empty(body)))
}

/// Kind of reply to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// MDP/0.2 PARTIAL (dropped for 0.1 clients, which cannot receive it).
    Partial,
    /// The final reply (MDP/0.1 REPLY or MDP/0.2 FINAL).
    Final,
}

/// Encodes a reply to a client, identity frame first. Returns `None` for a
/// partial reply to an MDP/0.1 client.
pub fn encode_client_reply(
    route: &ClientRoute,
    service: &[u8],
    kind: ReplyKind,
    body: Vec<Frame>,
) -> Option<Vec<Frame>> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(route.peer.clone());
    if route.delimiter {
        out.push(Vec::new());
    }
    match route.version {
        Version::V01 => {
            if kind == ReplyKind::Partial {
                return None;
            }
            out.push(MDPC01.to_vec());
        }
        Version::V02 => {
            out.push(MDPC02.to_vec());
            out.push(vec![if kind == ReplyKind::Partial { C_PARTIAL } else { C_FINAL }]);
        }
    }
    out.push(service.to_vec());
    out.extend(body_or_empty(body));
    Some(out)
}

/// Encodes a REQUEST to a worker: `address` is the job id; `attempt` is set
/// only for zmws workers that announced the extension.
pub fn encode_worker_request(
    peer: &[u8],
    version: Version,
    address: &[u8],
    attempt: Option<u32>,
    body: &[&[u8]],
) -> Vec<Frame> {
    let mut out = Vec::with_capacity(body.len() + 7);
    out.push(peer.to_vec());
    push_worker_header(&mut out, version);
    out.push(vec![W_REQUEST]);
    out.push(address.to_vec());
    out.push(Vec::new());
    if let Some(a) = attempt {
        out.push(a.to_string().into_bytes());
    }
    if body.is_empty() {
        out.push(Vec::new());
    } else {
        out.extend(body.iter().map(|f| f.to_vec()));
    }
    out
}

fn push_worker_header(out: &mut Vec<Frame>, version: Version) {
    match version {
        Version::V01 => {
            out.push(Vec::new());
            out.push(MDPW01.to_vec());
        }
        Version::V02 => out.push(MDPW02.to_vec()),
    }
}

/// Encodes a HEARTBEAT to a worker.
pub fn encode_worker_heartbeat(peer: &[u8], version: Version) -> Vec<Frame> {
    let mut out = vec![peer.to_vec()];
    push_worker_header(&mut out, version);
    out.push(vec![match version {
        Version::V01 => W_HEARTBEAT_OR_FINAL,
        Version::V02 => W_DISCONNECT_OR_HEARTBEAT,
    }]);
    out
}

/// Encodes a DISCONNECT to a worker.
pub fn encode_worker_disconnect(peer: &[u8], version: Version) -> Vec<Frame> {
    let mut out = vec![peer.to_vec()];
    push_worker_header(&mut out, version);
    out.push(vec![match version {
        Version::V01 => W_DISCONNECT_OR_HEARTBEAT,
        Version::V02 => W_DISCONNECT_V2,
    }]);
    out
}

/// zmws extension frame after a DISCONNECT to a zmws worker: the broker is
/// stopping, so the worker should go to the next broker of its list.
pub const DISCONNECT_STOPPING: &[u8] = b"zmws:1 stopping";

/// zmws extension frame after a worker's DISCONNECT (failback): it asks to
/// leave for the first broker of its list, which is back.
pub const DISCONNECT_MOVING: &[u8] = b"zmws:1 moving";
/// End of the message of a `421` refusal: the service's workers moved to
/// another broker (failback). Clients try the other brokers of their list.
pub const MOVED_REFUSAL: &str = "moved to another broker";
/// Broker's answer to [`DISCONNECT_MOVING`], after a DISCONNECT: the worker
/// was removed and may go.
pub const MOVED: &[u8] = b"zmws:1 moved";
/// Broker's answer to [`DISCONNECT_MOVING`], after a HEARTBEAT: the worker
/// holds jobs, or is the last one of a service with jobs queued; it stays.
pub const STAY: &[u8] = b"zmws:1 stay";

/// What a zmws worker announced in its READY extension frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyExtension {
    /// Jobs it may hold at once (`capacity=N`, default 1).
    pub capacity: u32,
    /// It takes REQUEST_BATCH and may send REPLY_BATCH (`batch`).
    pub batch: bool,
}

/// Parses a READY extension frame (`zmws:1 capacity=4 batch`).
/// Returns `None` when the frame is not a zmws extension frame.
pub fn parse_ready_extension(frame: &[u8]) -> Option<ReadyExtension> {
    if !frame.starts_with(READY_EXTENSION_PREFIX) {
        return None;
    }
    let text = std::str::from_utf8(frame).ok()?;
    let mut ext = ReadyExtension { capacity: 1, batch: false };
    for part in text.split_whitespace().skip(1) {
        if let Some(v) = part.strip_prefix("capacity=") {
            ext.capacity = v.parse::<u32>().ok().filter(|c| *c >= 1).unwrap_or(1);
        } else if part == "batch" {
            ext.batch = true;
        }
    }
    Some(ext)
}

/// Appends one job record of a REQUEST_BATCH frame:
/// `u8 id_len, id, u32-LE attempt, u32-LE payload_len, payload frames concatenated`.
pub fn encode_job_record(out: &mut Vec<u8>, id: &[u8], attempt: u32, payload: &[&[u8]]) {
    let len: usize = payload.iter().map(|f| f.len()).sum();
    out.reserve(id.len() + 9 + len);
    out.push(id.len().min(255) as u8);
    out.extend_from_slice(&id[..id.len().min(255)]);
    out.extend_from_slice(&attempt.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    for f in payload {
        out.extend_from_slice(f);
    }
}

/// One job record of a REQUEST_BATCH frame: `(id, attempt, payload)`.
pub type JobRecord<'a> = (&'a [u8], u32, &'a [u8]);

/// One record of a REPLY_BATCH frame: `(kind, id, data)`.
pub type OutcomeRecord<'a> = (u8, &'a [u8], &'a [u8]);

/// The job records of a REQUEST_BATCH frame; `None` if the frame is malformed.
pub fn decode_job_records(data: &[u8]) -> Option<Vec<JobRecord<'_>>> {
    let mut out = Vec::new();
    let mut r = Reader(data);
    while !r.0.is_empty() {
        let n = r.u8()? as usize;
        let id = r.take(n)?;
        let attempt = r.u32()?;
        let len = r.u32()? as usize;
        out.push((id, attempt, r.take(len)?));
    }
    Some(out)
}

/// Outcome kinds of a REPLY_BATCH record.
pub mod outcome {
    /// Completed; the data is the result.
    pub const COMPLETE: u8 = b'F';
    /// Failed for good; the data is the reason.
    pub const FAIL: u8 = b'X';
    /// Failed, may be retried; the data is the reason.
    pub const FAIL_RETRYABLE: u8 = b'R';
}

/// Appends one record of a REPLY_BATCH frame:
/// `u8 kind ('F' complete, 'X' fail, 'R' retryable fail), u8 id_len, id, u32-LE len, data`.
pub fn encode_outcome_record(out: &mut Vec<u8>, kind: u8, id: &[u8], data: &[u8]) {
    out.reserve(id.len() + 6 + data.len());
    out.push(kind);
    out.push(id.len().min(255) as u8);
    out.extend_from_slice(&id[..id.len().min(255)]);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

/// The records of a REPLY_BATCH frame; `None` if the frame is malformed or a
/// kind is unknown.
pub fn decode_outcome_records(data: &[u8]) -> Option<Vec<OutcomeRecord<'_>>> {
    let mut out = Vec::new();
    let mut r = Reader(data);
    while !r.0.is_empty() {
        let kind = r.u8()?;
        if ![outcome::COMPLETE, outcome::FAIL, outcome::FAIL_RETRYABLE].contains(&kind) {
            return None;
        }
        let n = r.u8()? as usize;
        let id = r.take(n)?;
        let len = r.u32()? as usize;
        out.push((kind, id, r.take(len)?));
    }
    Some(out)
}

/// A cursor over a packed record frame.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Encodes a REQUEST_BATCH message to a worker from packed job records.
pub fn encode_worker_request_batch(peer: &[u8], records: Vec<u8>) -> Vec<Frame> {
    vec![peer.to_vec(), MDPW02.to_vec(), vec![W_REQUEST_BATCH], records]
}

/// Lowercase hex of arbitrary bytes (worker identities in listings).
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Frame {
        s.as_bytes().to_vec()
    }

    #[test]
    fn client_versions() {
        let r = decode_client(vec![f("id"), f(""), f("MDPC01"), f("echo"), f("hi")]).unwrap();
        assert_eq!(r.route.version, Version::V01);
        assert_eq!(r.service, f("echo"));
        let r = decode_client(vec![f("id"), f("MDPC02"), vec![1], f("echo")]).unwrap();
        assert_eq!(r.route.version, Version::V02);
        assert!(!r.route.delimiter);
        assert_eq!(r.body, vec![Vec::<u8>::new()]);
        assert!(decode_client(vec![f("id")]).is_err());
        assert!(decode_client(vec![f("id"), f("junk")]).is_err());
        assert!(decode_client(vec![f("id"), f("MDPC02"), vec![2], f("x")]).is_err());
    }

    #[test]
    fn worker_commands() {
        let m = decode_worker(vec![f("w"), f(""), f("MDPW01"), vec![1], f("echo")]).unwrap();
        assert!(matches!(m.command, WorkerCommand::Ready { .. }));
        let m = decode_worker(vec![f("w"), f("MDPW02"), vec![4], f("job"), f(""), f("r")]).unwrap();
        assert_eq!(m.command, WorkerCommand::Final { address: f("job"), body: vec![f("r")] });
        let m = decode_worker(vec![f("w"), f(""), f("MDPW01"), vec![4]]).unwrap();
        assert_eq!(m.command, WorkerCommand::Heartbeat);
        let m = decode_worker(vec![f("w"), f("MDPW02"), vec![6]]).unwrap();
        assert_eq!(m.command, WorkerCommand::Disconnect);
        // A valid header with a malformed or unknown command: Invalid (the
        // broker disconnects the peer); no valid header at all: an error.
        for bad in [
            vec![f("w"), f("MDPW02"), vec![4], f("job")],
            vec![f("w"), f("MDPW02"), vec![0x7f]],
            vec![f("w"), f("MDPW02"), vec![1]],
            vec![f("w"), f(""), f("MDPW01"), vec![2], f("x"), f(""), f("y")],
            vec![f("w"), f(""), f("MDPW01"), f("two bytes")],
        ] {
            let m = decode_worker(bad.clone()).unwrap();
            assert!(matches!(m.command, WorkerCommand::Invalid { .. }), "{bad:?}: {m:?}");
        }
        assert!(decode_worker(vec![f("w"), f("MDPW03"), vec![1], f("echo")]).is_err());
        assert_eq!(parse_ready_extension(b"zmws:1 capacity=8"), Some(ReadyExtension { capacity: 8, batch: false }));
        assert_eq!(
            parse_ready_extension(b"zmws:1 capacity=16 batch"),
            Some(ReadyExtension { capacity: 16, batch: true })
        );
        assert_eq!(parse_ready_extension(b"other"), None);
    }

    #[test]
    fn encode_reply_drops_partial_for_v01() {
        let route = ClientRoute { peer: f("c"), version: Version::V01, delimiter: true };
        assert!(encode_client_reply(&route, b"s", ReplyKind::Partial, vec![f("x")]).is_none());
        let m = encode_client_reply(&route, b"s", ReplyKind::Final, vec![f("x")]).unwrap();
        assert_eq!(m, vec![f("c"), f(""), f("MDPC01"), f("s"), f("x")]);
    }

    #[test]
    fn job_records_round_trip() {
        let mut buf = Vec::new();
        encode_job_record(&mut buf, b"0123456789abcdef0123456789abcdef", 2, &[b"ab", b"cd"]);
        encode_job_record(&mut buf, b"ffffffffffffffffffffffffffffffff", 1, &[]);
        let recs = decode_job_records(&buf).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0], (&b"0123456789abcdef0123456789abcdef"[..], 2, &b"abcd"[..]));
        assert_eq!(recs[1].2, b"");
        assert!(decode_job_records(&buf[..buf.len() - 1]).is_none());
    }

    #[test]
    fn outcome_records_round_trip_and_reject_garbage() {
        let mut buf = Vec::new();
        encode_outcome_record(&mut buf, outcome::COMPLETE, b"id1", b"result");
        encode_outcome_record(&mut buf, outcome::FAIL_RETRYABLE, b"id2", b"why");
        let recs = decode_outcome_records(&buf).unwrap();
        assert_eq!(recs, vec![(b'F', &b"id1"[..], &b"result"[..]), (b'R', &b"id2"[..], &b"why"[..])]);
        assert!(decode_outcome_records(b"Z\x01a\x00\x00\x00\x00").is_none());
        assert!(decode_outcome_records(&buf[..5]).is_none());
        let msg = vec![b"w1".to_vec(), MDPW02.to_vec(), vec![W_REPLY_BATCH], b"garbage".to_vec()];
        assert!(matches!(decode_worker(msg).unwrap().command, WorkerCommand::Invalid { .. }));
        let msg = vec![b"w1".to_vec(), MDPW02.to_vec(), vec![W_REPLY_BATCH], buf];
        assert!(matches!(decode_worker(msg).unwrap().command, WorkerCommand::ReplyBatch { .. }));
    }
}
