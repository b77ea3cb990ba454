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

static ID_STATE: once_cell::sync::Lazy<Mutex<IdState>> = once_cell::sync::Lazy::new(|| {
    Mutex::new(IdState { rng: StdRng::from_entropy(), last_ms: 0, seq: 0 })
});

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
        if text.len() != 32 {
            return None;
        }
        let mut v: u128 = 0;
        for &c in text {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return None,
            };
            v = (v << 4) | d as u128;
        }
        Some(JobId(v))
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
}
