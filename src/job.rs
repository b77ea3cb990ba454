//! Job identifiers, states and the JSON views of jobs and workers.

use std::fmt;
use std::str::FromStr;

use parking_lot::Mutex;
use rand::{rngs::StdRng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A 128-bit job id: 48 bits of Unix milliseconds, 16 bits of a per-millisecond
/// sequence, 64 random bits. Shown as 32 lowercase hex characters (the Titanic
/// UUID form), so ids sort by creation time and cannot be guessed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct JobId(pub u128);

struct IdState {
    rng: StdRng,
    last_ms: u64,
    seq: u16,
}

/// The value of every hex digit byte; 0x80 marks a byte that is not one.
static HEX_VALUE: [u8; 256] = {
    let mut t = [0x80u8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

static ID_STATE: once_cell::sync::Lazy<Mutex<IdState>> =
    once_cell::sync::Lazy::new(|| Mutex::new(IdState { rng: StdRng::from_entropy(), last_ms: 0, seq: 0 }));

impl JobId {
    /// A fresh id for a job created at `now_ms` (Unix milliseconds).
    pub fn generate(now_ms: u64) -> JobId {
        let mut st = ID_STATE.lock();
        let mut ms = now_ms & 0xFFFF_FFFF_FFFF;
        if ms < st.last_ms {
            ms = st.last_ms; // clock went backwards: stay monotonic
        }
        if ms == st.last_ms {
            if st.seq == u16::MAX {
                ms += 1;
                st.seq = 0;
            } else {
                st.seq += 1;
            }
        } else {
            st.seq = 0;
        }
        st.last_ms = ms;
        let random = st.rng.next_u64();
        JobId(((ms as u128) << 80) | ((st.seq as u128) << 64) | random as u128)
    }

    /// Creation time in Unix milliseconds encoded in the id.
    pub fn created_ms(&self) -> u64 {
        (self.0 >> 80) as u64
    }

    /// Parses 32 hex characters (either case).
    pub fn parse(text: &[u8]) -> Option<JobId> {
        let text: &[u8; 32] = text.try_into().ok()?;
        // Table lookups into two u64 halves, validity checked once at the
        // end: this runs for every job in the client, broker and worker.
        let (mut hi, mut lo, mut bad) = (0u64, 0u64, 0u8);
        for i in 0..16 {
            let (a, b) = (HEX_VALUE[text[i] as usize], HEX_VALUE[text[i + 16] as usize]);
            bad |= a | b;
            hi = (hi << 4) | (a & 15) as u64;
            lo = (lo << 4) | (b & 15) as u64;
        }
        (bad & 0x80 == 0).then_some(JobId(((hi as u128) << 64) | lo as u128))
    }

    /// Writes the 32-character lowercase hex form into a fixed buffer.
    pub fn to_hex(&self) -> [u8; 32] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        // Two digits per byte: this runs twice for every job on the hot path.
        for (i, b) in self.0.to_be_bytes().iter().enumerate() {
            out[2 * i] = HEX[(b >> 4) as usize];
            out[2 * i + 1] = HEX[(b & 15) as usize];
        }
        out
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        f.write_str(std::str::from_utf8(&hex).expect("hex is ascii"))
    }
}

impl FromStr for JobId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        JobId::parse(s.as_bytes())
            .ok_or_else(|| Error::InvalidArgument(format!("'{s}' is not a job id (32 hex characters)")))
    }
}

/// A hasher for maps keyed by [`JobId`]: the ids' last 64 bits are random
/// (chosen by the broker), so hashing them again would only cost time.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 ^= v as u64; // the random half of a zmws job id
    }
}

/// `BuildHasher` of [`IdHasher`], for `HashMap<JobId, _, IdHash>`.
pub(crate) type IdHash = std::hash::BuildHasherDefault<IdHasher>;

/// Where a job is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting in its service's queue for an idle worker.
    Queued,
    /// Handed to a worker; the attempt is running.
    Active,
    /// Finished with a result.
    Complete,
    /// Finished without a result (worker FAIL, attempts exhausted).
    Failed,
    /// Cancelled by a client before it finished.
    Cancelled,
}

impl JobState {
    /// The lowercase name used in JSON and events.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Active => "active",
            JobState::Complete => "complete",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// True once the job can no longer change.
    pub fn is_final(&self) -> bool {
        matches!(self, JobState::Complete | JobState::Failed | JobState::Cancelled)
    }
}

/// The JSON document `zmws.status` returns (and the element of `zmws.jobs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// 32-hex job id.
    pub job_id: String,
    /// The service the job was submitted to.
    pub service: String,
    /// Current state.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Maximum attempts allowed.
    pub max_attempts: u32,
    /// Hex identity of the worker running (or that last ran) the job.
    pub worker: Option<String>,
    /// Unix milliseconds when the job was accepted.
    pub created_ms: u64,
    /// Unix milliseconds when the current or last attempt started.
    pub started_ms: Option<u64>,
    /// Unix milliseconds when the job finished.
    pub finished_ms: Option<u64>,
    /// Why the job failed or was cancelled.
    pub failure: Option<String>,
    /// Size of the payload in bytes.
    pub payload_bytes: usize,
    /// Size of the result in bytes, once complete.
    pub result_bytes: Option<usize>,
}

/// The JSON document describing one worker in `zmws.workers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Hex of the worker's ZeroMQ routing identity.
    pub worker: String,
    /// The service it offers.
    pub service: String,
    /// `"idle"` (holds no job) or `"busy"`; purged workers are not listed.
    pub state: String,
    /// Jobs it may hold at once.
    pub capacity: u32,
    /// Job ids it holds now.
    pub active_jobs: Vec<String>,
    /// Jobs it finished (completed or failed) since it connected.
    pub jobs_done: u64,
    /// MDP version it speaks: `"0.1"` or `"0.2"`.
    pub protocol: String,
    /// Unix milliseconds of its READY.
    pub connected_ms: u64,
    /// Unix milliseconds of the last message from it.
    pub last_seen_ms: u64,
}

/// Which job listing to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobList {
    /// Jobs waiting for a worker.
    Queued,
    /// Jobs being worked on.
    Active,
    /// The most recently finished jobs, newest first.
    History,
}

impl JobList {
    /// The name used on the wire (`queued`, `active`, `history`).
    pub fn as_str(&self) -> &'static str {
        match self {
            JobList::Queued => "queued",
            JobList::Active => "active",
            JobList::History => "history",
        }
    }

    /// Parses `queued`, `active`, `history` (and `hist`, `recent`).
    pub fn parse(s: &str) -> Option<JobList> {
        match s.to_ascii_lowercase().as_str() {
            "queued" | "queue" | "jobs" => Some(JobList::Queued),
            "active" => Some(JobList::Active),
            "history" | "hist" | "recent" => Some(JobList::History),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort() {
        let a = JobId::generate(1_700_000_000_000);
        let b = JobId::generate(1_700_000_000_000);
        let c = JobId::generate(1_700_000_000_001);
        assert!(a < b && b < c);
        let s = a.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(JobId::parse(s.as_bytes()), Some(a));
        assert_eq!(a.created_ms(), 1_700_000_000_000);
        assert!(JobId::parse(b"xyz").is_none());
        assert!(JobId::parse(&[b'g'; 32]).is_none());
    }

    #[test]
    fn parse_takes_either_case_and_refuses_any_other_byte() {
        let id = JobId(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(JobId::parse(b"0123456789abcdeffedcba9876543210"), Some(id));
        assert_eq!(JobId::parse(b"0123456789ABCDEFFEDCBA9876543210"), Some(id));
        for pos in [0, 15, 16, 31] {
            for bad in [b'g', b'G', b'/', b':', b'@', b'`', b' ', 0u8, 0xff, 0x80 | b'1'] {
                let mut text = *b"0123456789abcdeffedcba9876543210";
                text[pos] = bad;
                assert_eq!(JobId::parse(&text), None, "byte {bad:#x} at {pos}");
            }
        }
        assert_eq!(JobId::parse(&[b'0'; 31]), None);
        assert_eq!(JobId::parse(&[b'0'; 33]), None);
        let max = [b'f'; 32];
        assert_eq!(JobId::parse(&max), Some(JobId(u128::MAX)));
        assert_eq!(JobId::parse(&id.to_hex()), Some(id));
    }
}
