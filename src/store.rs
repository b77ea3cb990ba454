//! The durable job store: SQLite (bundled, WAL mode) under the broker's data
//! directory. The engine journals what matters ([`JournalOp`]); the broker loop
//! commits everything one loop turn produced in one transaction (group
//! commit) *before* it sends any reply of that turn, so a job id is never
//! returned for a job that is not on disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::job::{JobId, JobState};
use crate::protocol::Frame;

/// One change to write.
#[derive(Clone, Debug, PartialEq)]
pub enum JournalOp {
    /// A service was offered for the first time.
    Service(String),
    /// An async job was accepted.
    Insert {
        /// The job.
        id: JobId,
        /// Its service.
        service: String,
        /// Payload frames.
        payload: Vec<Frame>,
        /// Acceptance time (Unix ms).
        created_ms: u64,
        /// Idempotency key, if the submit carried one.
        unique_key: Option<String>,
    },
    /// An attempt started.
    Started {
        /// The job.
        id: JobId,
        /// Attempt number.
        attempt: u32,
        /// Start time.
        at_ms: u64,
    },
    /// The job went back to its queue.
    Requeued {
        /// The job.
        id: JobId,
        /// Attempts made so far.
        attempts: u32,
    },
    /// The job reached a final state.
    Finished {
        /// The job.
        id: JobId,
        /// Complete, failed or cancelled.
        state: JobState,
        /// Result frames when complete.
        result: Option<Vec<Frame>>,
        /// Reason when failed or cancelled.
        failure: Option<String>,
        /// Finish time.
        at_ms: u64,
        /// Attempts made (the last Started may be folded into this op).
        attempts: u32,
    },
    /// The record expired or was closed.
    Delete {
        /// The job.
        id: JobId,
    },
}

/// A job read back at start-up.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredJob {
    /// The job.
    pub id: JobId,
    /// Its service.
    pub service: String,
    /// Payload frames.
    pub payload: Vec<Frame>,
    /// State on disk (active means "was running when the broker stopped").
    pub state: JobState,
    /// Attempts started.
    pub attempts: u32,
    /// Acceptance time.
    pub created_ms: u64,
    /// Last start time.
    pub started_ms: u64,
    /// Finish time.
    pub finished_ms: u64,
    /// Result frames.
    pub result: Option<Vec<Frame>>,
    /// Failure reason.
    pub failure: Option<String>,
    /// Idempotency key.
    pub unique_key: Option<String>,
}

/// Everything read back at start-up.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// Services ever offered.
    pub services: Vec<String>,
    /// Jobs in creation order.
    pub jobs: Vec<StoredJob>,
}

/// The open database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Jobs whose latest start is only in `starts` rows: (attempt, time).
    started: HashMap<JobId, (u32, u64)>,
    /// `starts` rows written since the last fold.
    start_rows: usize,
    last_fold: std::time::Instant,
}

fn state_code(s: JobState) -> i64 {
    match s {
        JobState::Queued => 0,
        JobState::Active => 1,
        JobState::Complete => 2,
        JobState::Failed => 3,
        JobState::Cancelled => 4,
    }
}

fn state_from(code: i64) -> JobState {
    match code {
        1 => JobState::Active,
        2 => JobState::Complete,
        3 => JobState::Failed,
        4 => JobState::Cancelled,
        _ => JobState::Queued,
    }
}

/// Frames as one blob: a single frame is stored raw (`nframes` = 1); several
/// are stored as u32-LE length + bytes each.
/// Start rows gathered before they are folded into the job rows.
const START_ROWS_PER_FOLD: usize = 64;
/// Longest time between folds of the start rows.
const START_FOLD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Appends one start record: 16-byte id, u32-LE attempt, u64-LE time.
fn encode_start(out: &mut Vec<u8>, id: JobId, attempt: u32, at_ms: u64) {
    out.extend_from_slice(&id_bytes(id));
    out.extend_from_slice(&attempt.to_le_bytes());
    out.extend_from_slice(&at_ms.to_le_bytes());
}

/// The start records of one `starts` row (a truncated tail is ignored).
fn decode_starts(blob: &[u8]) -> impl Iterator<Item = (JobId, u32, u64)> + '_ {
    blob.chunks_exact(28).map(|c| {
        let mut id = [0u8; 16];
        id.copy_from_slice(&c[..16]);
        let attempt = u32::from_le_bytes([c[16], c[17], c[18], c[19]]);
        let mut at = [0u8; 8];
        at.copy_from_slice(&c[20..28]);
        (JobId(u128::from_be_bytes(id)), attempt, u64::from_le_bytes(at))
    })
}

/// The row of a job inserted in the batch being committed, with the batch's
/// later changes to it folded in.
struct NewRow<'a> {
    id: JobId,
    service: &'a str,
    payload: (i64, std::borrow::Cow<'a, [u8]>),
    state: i64,
    attempts: u32,
    created_ms: u64,
    started_ms: u64,
    finished_ms: u64,
    result: Option<&'a Vec<Frame>>,
    failure: Option<&'a str>,
    unique_key: Option<&'a str>,
    /// Finished: the payload is no longer kept.
    emptied: bool,
}

impl<'a> NewRow<'a> {
    fn apply(&mut self, op: &'a JournalOp) {
        match op {
            JournalOp::Started { attempt, at_ms, .. } => {
                self.state = 1;
                self.attempts = *attempt;
                self.started_ms = *at_ms;
            }
            JournalOp::Requeued { .. } => self.state = 0,
            JournalOp::Finished { state, result, failure, at_ms, attempts, .. } => {
                self.state = state_code(*state);
                self.result = result.as_ref();
                self.failure = failure.as_deref();
                self.finished_ms = *at_ms;
                self.attempts = self.attempts.max(*attempts);
                self.emptied = true;
            }
            JournalOp::Service(_) | JournalOp::Insert { .. } | JournalOp::Delete { .. } => {}
        }
    }
}

/// Frames as one blob: a single frame as is (borrowed, no copy), several as
/// u32-LE length + bytes each.
fn pack(frames: &[Frame]) -> (i64, std::borrow::Cow<'_, [u8]>) {
    if frames.len() == 1 {
        return (1, std::borrow::Cow::Borrowed(&frames[0][..]));
    }
    let mut out = Vec::new();
    for f in frames {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    (frames.len() as i64, std::borrow::Cow::Owned(out))
}

fn unpack(n: i64, blob: Vec<u8>) -> Vec<Frame> {
    if n == 1 {
        return vec![blob];
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= blob.len() {
        let len = u32::from_le_bytes([blob[i], blob[i + 1], blob[i + 2], blob[i + 3]]) as usize;
        i += 4;
        let end = (i + len).min(blob.len());
        out.push(blob[i..end].to_vec());
        i = end;
    }
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}

fn id_bytes(id: JobId) -> [u8; 16] {
    id.0.to_be_bytes()
}

impl Store {
    /// Opens (creating if needed) `DIR/zmws.db`. A file that is not a zmws
    /// database, is corrupt, or cannot be written is an error naming the file.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("cannot create data directory {}: {e}", dir.display())))?;
        let path = dir.join("zmws.db");
        let named = |e: rusqlite::Error| Error::Io(format!("job store {}: {e}", path.display()));
        // NO_MUTEX: the connection is used by one thread at a time (the
        // broker loop), so SQLite's per-call locking would only cost time.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(named)?;
        conn.busy_timeout(std::time::Duration::from_secs(2)).map_err(named)?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(named)?;
        if check != "ok" {
            return Err(Error::Io(format!("job store {} is corrupt: {check}", path.display())));
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(named)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(named)?;
        // A 16 MiB page cache (default 2 MiB) keeps a large backlog's B-tree
        // pages in memory for the per-job updates.
        conn.pragma_update(None, "cache_size", -16384).map_err(named)?;
        // Checkpoint the WAL every 16 MiB instead of every 4 MiB: a page
        // rewritten many times between checkpoints is copied back once.
        conn.pragma_update(None, "wal_autocheckpoint", 4096).map_err(named)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS services (name TEXT PRIMARY KEY);
             CREATE TABLE IF NOT EXISTS jobs (
                 id BLOB PRIMARY KEY,
                 service TEXT NOT NULL,
                 nframes INTEGER NOT NULL,
                 payload BLOB NOT NULL,
                 state INTEGER NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 created_ms INTEGER NOT NULL,
                 started_ms INTEGER NOT NULL DEFAULT 0,
                 finished_ms INTEGER NOT NULL DEFAULT 0,
                 rframes INTEGER,
                 result BLOB,
                 failure TEXT,
                 unique_key TEXT
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS starts (seq INTEGER PRIMARY KEY, records BLOB NOT NULL);
             INSERT OR IGNORE INTO meta (k, v) VALUES ('schema', '1');",
        )
        .map_err(named)?;
        let schema: String = conn.query_row("SELECT v FROM meta WHERE k = 'schema'", [], |r| r.get(0)).map_err(named)?;
        if schema != "1" {
            return Err(Error::Io(format!("job store {} has unknown schema version {schema}", path.display())));
        }
        Ok(Store { conn, path, started: HashMap::new(), start_rows: 0, last_fold: std::time::Instant::now() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads back every service and job, jobs in creation order.
    pub fn load(&mut self) -> Result<Loaded> {
        let path = self.path.clone();
        self.fold_start_rows_at_load().map_err(|e| Error::Io(format!("job store {}: {e}", path.display())))?;
        let named = |e: rusqlite::Error| Error::Io(format!("job store {}: {e}", self.path.display()));
        let mut loaded = Loaded::default();
        let mut st = self.conn.prepare("SELECT name FROM services ORDER BY name").map_err(named)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(named)?;
        for r in rows {
            loaded.services.push(r.map_err(named)?);
        }
        let mut st = self
            .conn
            .prepare(
                "SELECT id, service, nframes, payload, state, attempts, created_ms, started_ms, finished_ms,
                        rframes, result, failure, unique_key FROM jobs ORDER BY id",
            )
            .map_err(named)?;
        let rows = st
            .query_map([], |r| {
                let id: Vec<u8> = r.get(0)?;
                let mut b = [0u8; 16];
                if id.len() == 16 {
                    b.copy_from_slice(&id);
                }
                let rframes: Option<i64> = r.get(9)?;
                let result: Option<Vec<u8>> = r.get(10)?;
                Ok(StoredJob {
                    id: JobId(u128::from_be_bytes(b)),
                    service: r.get(1)?,
                    payload: unpack(r.get(2)?, r.get(3)?),
                    state: state_from(r.get(4)?),
                    attempts: r.get::<_, i64>(5)? as u32,
                    created_ms: r.get::<_, i64>(6)? as u64,
                    started_ms: r.get::<_, i64>(7)? as u64,
                    finished_ms: r.get::<_, i64>(8)? as u64,
                    result: match (rframes, result) {
                        (Some(n), Some(blob)) => Some(unpack(n, blob)),
                        _ => None,
                    },
                    failure: r.get(11)?,
                    unique_key: r.get(12)?,
                })
            })
            .map_err(named)?;
        for r in rows {
            loaded.jobs.push(r.map_err(named)?);
        }
        Ok(loaded)
    }

    /// At start-up: moves the attempts recorded in `starts` into the job rows
    /// (a job still queued or active then counts as active in that attempt).
    fn fold_start_rows_at_load(&mut self) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut read = tx.prepare("SELECT records FROM starts ORDER BY seq")?;
            let blobs: Vec<Vec<u8>> = read.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            let mut update = tx.prepare(
                // Only a start newer than what the row knows: a job requeued
                // after that attempt has its attempts written by the requeue.
                "UPDATE jobs SET state = 1, attempts = ?2, started_ms = ?3 WHERE id = ?1 AND state IN (0, 1) AND attempts < ?2",
            )?;
            for blob in &blobs {
                for (id, attempt, at_ms) in decode_starts(blob) {
                    update.execute(params![&id_bytes(id)[..], attempt as i64, at_ms as i64])?;
                }
            }
            tx.execute("DELETE FROM starts", [])?;
        }
        tx.commit()?;
        self.started.clear();
        self.start_rows = 0;
        Ok(())
    }

    /// Writes a batch of changes in one transaction.
    ///
    /// Changes to a job inserted in the same batch are folded into its one
    /// INSERT (a job accepted, started and finished within one turn is one
    /// row write; one also deleted is not written at all), and a start
    /// followed by the finish of the same job writes only the finish (which
    /// records the attempt too). What the table holds after the commit is the
    /// same as if every op had run in order.
    pub fn commit(&mut self, ops: &[JournalOp]) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let named = move |e: rusqlite::Error| Error::Io(format!("job store {}: {e}", path.display()));
        // Rows of jobs inserted in this batch, with everything after folded in.
        let mut fresh: Vec<Option<NewRow<'_>>> = Vec::new();
        let mut fresh_index: HashMap<JobId, usize> = HashMap::new();
        // Jobs (not inserted here) whose Started is superseded by a later Finished.
        let mut finished_later: HashMap<JobId, usize> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                JournalOp::Insert { id, service, payload, created_ms, unique_key } => {
                    fresh_index.insert(*id, fresh.len());
                    fresh.push(Some(NewRow {
                        id: *id,
                        service,
                        payload: pack(payload),
                        state: 0,
                        attempts: 0,
                        created_ms: *created_ms,
                        started_ms: 0,
                        finished_ms: 0,
                        result: None,
                        failure: None,
                        unique_key: unique_key.as_deref(),
                        emptied: false,
                    }));
                }
                JournalOp::Finished { id, .. } if !fresh_index.contains_key(id) => {
                    finished_later.insert(*id, i);
                }
                _ => {}
            }
        }
        let mut start_records = Vec::new();
        let mut folded = false;
        let tx = self.conn.transaction().map_err(&named)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO jobs (id, service, nframes, payload, state, attempts, created_ms, started_ms,
                     finished_ms, rframes, result, failure, unique_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .map_err(&named)?;
            let mut started = tx
                .prepare_cached("UPDATE jobs SET state = 1, attempts = ?2, started_ms = ?3 WHERE id = ?1")
                .map_err(&named)?;
            let mut requeued =
                tx.prepare_cached("UPDATE jobs SET state = 0, attempts = MAX(attempts, ?2) WHERE id = ?1").map_err(&named)?;
            let mut finished = tx
                .prepare_cached(
                    "UPDATE jobs SET state = ?2, rframes = ?3, result = ?4, failure = ?5, finished_ms = ?6,
                     payload = x'' , nframes = 1, attempts = MAX(attempts, ?7) WHERE id = ?1",
                )
                .map_err(&named)?;
            let mut delete = tx.prepare_cached("DELETE FROM jobs WHERE id = ?1").map_err(&named)?;
            let mut service = tx.prepare_cached("INSERT OR IGNORE INTO services (name) VALUES (?1)").map_err(&named)?;
            for (i, op) in ops.iter().enumerate() {
                let row = match op {
                    JournalOp::Service(_) | JournalOp::Insert { .. } => None,
                    JournalOp::Started { id, .. }
                    | JournalOp::Requeued { id, .. }
                    | JournalOp::Finished { id, .. }
                    | JournalOp::Delete { id } => fresh_index.get(id).copied(),
                };
                if let Some(r) = row {
                    // A job inserted in this batch: fold the change into its row.
                    match op {
                        JournalOp::Delete { .. } => fresh[r] = None,
                        other => {
                            if let Some(row) = fresh[r].as_mut() {
                                row.apply(other);
                            }
                        }
                    }
                    continue;
                }
                match op {
                    JournalOp::Service(name) => {
                        service.execute(params![name]).map_err(&named)?;
                    }
                    JournalOp::Insert { .. } => {}
                    JournalOp::Started { id, attempt, at_ms } => {
                        if finished_later.get(id).is_some_and(|&f| f > i) {
                            continue; // the finish below records the attempt
                        }
                        // Packed with the batch's other starts into one row of
                        // `starts`; written into the job's row only if it is
                        // still running at the next fold.
                        encode_start(&mut start_records, *id, *attempt, *at_ms);
                        self.started.insert(*id, (*attempt, *at_ms));
                    }
                    JournalOp::Requeued { id, attempts } => {
                        self.started.remove(id);
                        requeued.execute(params![&id_bytes(*id)[..], *attempts as i64]).map_err(&named)?;
                    }
                    JournalOp::Finished { id, state, result, failure, at_ms, attempts } => {
                        self.started.remove(id);
                        let (rn, rblob) = match result {
                            Some(r) => {
                                let (n, b) = pack(r);
                                (Some(n), Some(b))
                            }
                            None => (None, None),
                        };
                        finished
                            .execute(params![
                                &id_bytes(*id)[..],
                                state_code(*state),
                                rn,
                                rblob,
                                failure,
                                *at_ms as i64,
                                *attempts as i64
                            ])
                            .map_err(&named)?;
                    }
                    JournalOp::Delete { id } => {
                        self.started.remove(id);
                        delete.execute(params![&id_bytes(*id)[..]]).map_err(&named)?;
                    }
                }
            }
            if !start_records.is_empty() {
                tx.execute("INSERT INTO starts (records) VALUES (?1)", params![&start_records]).map_err(&named)?;
                self.start_rows += 1;
            }
            // Fold the start rows away now and then: only jobs still running
            // by then cost a row update; the rest finished meanwhile.
            if self.start_rows >= START_ROWS_PER_FOLD || (self.start_rows > 0 && self.last_fold.elapsed() >= START_FOLD_EVERY) {
                for (id, &(attempt, at_ms)) in &self.started {
                    started.execute(params![&id_bytes(*id)[..], attempt as i64, at_ms as i64]).map_err(&named)?;
                }
                tx.execute("DELETE FROM starts", []).map_err(&named)?;
                folded = true;
            }
            for row in fresh.iter().flatten() {
                let (n, blob): (i64, &[u8]) = if row.emptied { (1, &[]) } else { (row.payload.0, &row.payload.1) };
                let (rn, rblob) = match &row.result {
                    Some(r) => {
                        let (n, b) = pack(r);
                        (Some(n), Some(b))
                    }
                    None => (None, None),
                };
                insert
                    .execute(params![
                        &id_bytes(row.id)[..],
                        row.service,
                        n,
                        blob,
                        row.state,
                        row.attempts as i64,
                        row.created_ms as i64,
                        row.started_ms as i64,
                        row.finished_ms as i64,
                        rn,
                        rblob,
                        row.failure,
                        row.unique_key
                    ])
                    .map_err(&named)?;
            }
        }
        tx.commit().map_err(&named)?;
        if folded {
            self.started.clear();
            self.start_rows = 0;
            self.last_fold = std::time::Instant::now();
        }
        Ok(())
    }

    /// A tiny write that tells whether the store accepts writes again.
    pub fn probe(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.conn
            .execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('probe', strftime('%s','now'))", [])
            .map(|_| ())
            .map_err(|e| Error::Io(format!("job store {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt_file() {
        let dir = std::env::temp_dir().join(format!("zmws-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Store::open(&dir).unwrap();
        let id = JobId::generate(1_700_000_000_000);
        s.commit(&[
            JournalOp::Service("S".into()),
            JournalOp::Insert { id, service: "S".into(), payload: vec![b"a".to_vec(), b"bc".to_vec()], created_ms: 5, unique_key: Some("k".into()) },
            JournalOp::Started { id, attempt: 1, at_ms: 6 },
        ])
        .unwrap();
        let l = s.load().unwrap();
        assert_eq!(l.services, vec!["S".to_string()]);
        assert_eq!(l.jobs[0].payload, vec![b"a".to_vec(), b"bc".to_vec()]);
        assert_eq!(l.jobs[0].state, JobState::Active);
        assert_eq!(l.jobs[0].unique_key.as_deref(), Some("k"));
        drop(s);
        let bad = dir.join("bad");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join("zmws.db"), vec![0x5a; 8192]).unwrap();
        let err = Store::open(&bad).err().expect("corrupt file must fail");
        assert!(err.to_string().contains("zmws.db"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod start_rows {
    use super::*;

    fn ins(id: JobId) -> JournalOp {
        JournalOp::Insert { id, service: "s".into(), payload: vec![b"p".to_vec()], created_ms: 1, unique_key: None }
    }

    #[test]
    fn a_start_in_a_start_row_survives_a_crash_and_a_fold_keeps_running_jobs() {
        let dir = std::env::temp_dir().join(format!("zmws-start-rows-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b, c) = (JobId(1 << 80), JobId(2 << 80), JobId(3 << 80));
        {
            let mut st = Store::open(&dir).unwrap();
            st.commit(&[JournalOp::Service("s".into()), ins(a), ins(b), ins(c)]).unwrap();
            // Started in later batches: packed into start rows, not the job rows.
            st.commit(&[JournalOp::Started { id: a, attempt: 1, at_ms: 5 }, JournalOp::Started { id: b, attempt: 1, at_ms: 5 }])
                .unwrap();
            st.commit(&[JournalOp::Finished {
                id: b,
                state: JobState::Complete,
                result: Some(vec![b"r".to_vec()]),
                failure: None,
                at_ms: 6,
                attempts: 1,
            }])
            .unwrap();
            st.commit(&[JournalOp::Started { id: c, attempt: 2, at_ms: 7 }, JournalOp::Requeued { id: c, attempts: 2 }]).unwrap();
            let rows: i64 = st.conn.query_row("SELECT COUNT(*) FROM starts", [], |r| r.get(0)).unwrap();
            assert_eq!(rows, 2);
            // dropped without any further write: a crash
        }
        let mut st = Store::open(&dir).unwrap();
        let loaded = st.load().unwrap();
        let get = |id: JobId| loaded.jobs.iter().find(|j| j.id == id).unwrap().clone();
        assert_eq!((get(a).state, get(a).attempts), (JobState::Active, 1), "running at the crash: its attempt counts");
        assert_eq!((get(b).state, get(b).attempts), (JobState::Complete, 1));
        assert_eq!((get(c).state, get(c).attempts), (JobState::Queued, 2), "requeued after attempt 2");
        let rows: i64 = st.conn.query_row("SELECT COUNT(*) FROM starts", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 0, "folded into the rows at load");
        // A long-running job is written into its row when the start rows fold.
        let d = JobId(4 << 80);
        st.commit(&[ins(d)]).unwrap();
        st.commit(&[JournalOp::Started { id: d, attempt: 1, at_ms: 9 }]).unwrap();
        for _ in 0..START_ROWS_PER_FOLD {
            st.commit(&[JournalOp::Started { id: a, attempt: 2, at_ms: 10 }]).unwrap();
        }
        let rows: i64 = st.conn.query_row("SELECT COUNT(*) FROM starts", [], |r| r.get(0)).unwrap();
        assert!(rows < START_ROWS_PER_FOLD as i64, "folded: {rows} rows left");
        let (state, attempts): (i64, i64) =
            st.conn.query_row("SELECT state, attempts FROM jobs WHERE id = ?1", params![&id_bytes(d)[..]], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((state, attempts), (1, 1));
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Not a test: prints the store's cost per job for the journal shapes
    /// the broker produces. `cargo test --release --lib store_cost -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn store_cost() {
        let dir = std::env::temp_dir().join(format!("zmws-store-speed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut st = Store::open(&dir).unwrap();
        let n = 100_000u128;
        let ids: Vec<JobId> = (0..n).map(|i| JobId((1u128 << 100) + i * 7919)).collect();
        let ins = |id: JobId| JournalOp::Insert { id, service: "bench".into(), payload: vec![vec![7u8; 100]], created_ms: 1, unique_key: None };
        let fin = |id: JobId| JournalOp::Finished { id, state: JobState::Complete, result: Some(vec![vec![8u8; 100]]), failure: None, at_ms: 2, attempts: 1 };
        let start = |id: JobId| JournalOp::Started { id, attempt: 1, at_ms: 2 };
        let time = |st: &mut Store, what: &str, batches: Vec<Vec<JournalOp>>| {
            let t = std::time::Instant::now();
            for b in &batches {
                st.commit(b).unwrap();
            }
            eprintln!("{what}: {:.2} µs per job", t.elapsed().as_secs_f64() * 1e6 / n as f64);
        };
        time(&mut st, "insert only (batches of 10,000)", ids.chunks(10_000).map(|c| c.iter().map(|&i| ins(i)).collect()).collect());
        time(&mut st, "start update", ids.chunks(10_000).map(|c| c.iter().map(|&i| start(i)).collect()).collect());
        time(&mut st, "finish update", ids.chunks(10_000).map(|c| c.iter().map(|&i| fin(i)).collect()).collect());
        time(&mut st, "delete", ids.chunks(10_000).map(|c| c.iter().map(|&i| JournalOp::Delete { id: i }).collect()).collect());
        time(&mut st, "insert+start+finish folded", ids.chunks(10_000).map(|c| c.iter().flat_map(|&i| [ins(i), start(i), fin(i)]).collect()).collect());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
