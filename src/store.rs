//! The durable job store: SQLite (bundled, WAL mode) under the broker's data
//! directory. The engine journals what matters ([`JournalOp`]); the broker loop
//! commits everything one loop turn produced in one transaction (group
//! commit) *before* it sends any reply of that turn, so a job id is never
//! returned for a job that is not on disk.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::job::{IdHash, JobId, JobState};
use crate::protocol::Frame;

/// Frames in one buffer, as the store keeps them: one frame as is
/// (`nframes` 1), several as u32-LE length + bytes each.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PackedFrames {
    /// How many frames `data` holds.
    pub nframes: u32,
    /// The frame bytes.
    pub data: Box<[u8]>,
}

impl From<Vec<Frame>> for PackedFrames {
    fn from(frames: Vec<Frame>) -> Self {
        let (n, data) = pack(&frames);
        PackedFrames { nframes: n as u32, data: data.into_owned().into_boxed_slice() }
    }
}

/// One change to write.
#[derive(Clone, Debug, PartialEq)]
pub enum JournalOp {
    /// A service was offered for the first time.
    Service(String),
    /// An async job was accepted.
    Insert {
        /// The job.
        id: JobId,
        /// Its service (shared by all its jobs' ops: no copy per job).
        service: std::sync::Arc<str>,
        /// Payload frames, packed as the store keeps them.
        payload: PackedFrames,
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

/// An exclusive `flock` on `DIR/zmws.lock`, held while the store is open:
/// two brokers on one job store would each run its queued jobs.
struct DataDirLock {
    file: std::fs::File,
    /// Whether the fd is registered to be closed in forked children.
    registered: bool,
}

impl DataDirLock {
    /// Takes the lock, or names the broker holding it.
    fn acquire(dir: &Path) -> Result<DataDirLock> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let path = dir.join("zmws.lock");
        // Rust opens files close-on-exec: programs the broker's process
        // starts do not inherit the lock.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::Io(format!("cannot open {}: {e}", path.display())))?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
                return Err(Error::Io(format!(
                    "job store {} is in use by another broker{who}: give each broker its own data directory",
                    dir.display()
                )));
            }
            return Err(Error::Io(format!("cannot lock {}: {err}", path.display())));
        }
        // Who holds it, for the message above (best effort).
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "{}", std::process::id());
        // A child forked without exec shares the lock: it closes its copy
        // (fork.rs), so the lock ends with this process's store.
        let registered = crate::fork::close_in_child(file.as_raw_fd());
        Ok(DataDirLock { file, registered })
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        if self.registered {
            crate::fork::keep_in_child(self.file.as_raw_fd());
        }
    }
}

/// The open database.
pub struct Store {
    /// Held as long as the store is open; released when it is dropped.
    _lock: DataDirLock,
    conn: Connection,
    path: PathBuf,
    /// Jobs whose latest start is only in `starts` rows: (attempt, time).
    started: HashMap<JobId, (u32, u64), IdHash>,
    /// `starts` rows written since the last fold.
    start_rows: usize,
    last_fold: std::time::Instant,
    /// Jobs whose finish is only in `finishes` rows (and whose row exists).
    finished: HashSet<JobId, IdHash>,
    /// `finishes` rows and their bytes since the last fold.
    finish_rows: usize,
    finish_bytes: usize,
    /// The new rows of the last commit, packed as in its `inserts` row: the
    /// next commit folds its own changes to them in and writes them into
    /// `jobs` (so an acknowledgement waits for one blob, not for row inserts).
    carried: Vec<u8>,
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

/// Fold the `finishes` rows into the job rows once there are this many rows,
/// this many bytes, or this many finished jobs waiting; otherwise at load.
/// Most finished jobs are deleted (result TTL, `max_finished`) before a fold
/// comes, and then never cost a row update at all.
const FINISH_ROWS_PER_FOLD: usize = 4096;
const FINISH_BYTES_PER_FOLD: usize = 64 << 20;
const FINISHED_JOBS_PER_FOLD: usize = 1_000_000;
/// Marks an absent result or failure in a finish record.
const ABSENT: u32 = u32::MAX;

/// Appends one finish record: 16-byte id, state code, u32-LE attempts,
/// u64-LE time, u32-LE result frame count (or `ABSENT`), u32-LE result length
/// + bytes, u32-LE failure length (or `ABSENT`) + UTF-8 bytes.
#[allow(clippy::too_many_arguments)]
fn encode_finish(
    out: &mut Vec<u8>,
    id: JobId,
    state: JobState,
    attempts: u32,
    at_ms: u64,
    result: Option<&[Frame]>,
    failure: Option<&str>,
) {
    out.extend_from_slice(&id_bytes(id));
    out.push(state_code(state) as u8);
    out.extend_from_slice(&attempts.to_le_bytes());
    out.extend_from_slice(&at_ms.to_le_bytes());
    match result.map(pack) {
        Some((n, blob)) => {
            out.extend_from_slice(&(n as u32).to_le_bytes());
            out.extend_from_slice(&(blob.len() as u32).to_le_bytes());
            out.extend_from_slice(&blob);
        }
        None => {
            out.extend_from_slice(&ABSENT.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
    }
    put_optional(out, failure.map(str::as_bytes));
}

/// One decoded finish record.
struct FinishRecord<'a> {
    id: JobId,
    state: i64,
    attempts: u32,
    at_ms: u64,
    /// (frame count, packed frames).
    result: Option<(i64, &'a [u8])>,
    failure: Option<&'a str>,
}

/// Reads the little-endian fields of packed records.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn id(&mut self) -> Option<JobId> {
        Some(JobId(u128::from_be_bytes(self.take(16)?.try_into().ok()?)))
    }
    /// u32 length (or `ABSENT`) + bytes.
    fn optional(&mut self) -> Option<Option<&'a [u8]>> {
        match self.u32()? {
            ABSENT => Some(None),
            n => Some(Some(self.take(n as usize)?)),
        }
    }
    fn optional_str(&mut self) -> Option<Option<&'a str>> {
        match self.optional()? {
            None => Some(None),
            Some(b) => Some(Some(std::str::from_utf8(b).ok()?)),
        }
    }
}

/// Appends u32 length (or `ABSENT`) + bytes.
fn put_optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// The finish records of one `finishes` row; decoding stops at a malformed tail.
fn decode_finishes(blob: &[u8]) -> impl Iterator<Item = FinishRecord<'_>> + '_ {
    let mut r = Bytes(blob);
    std::iter::from_fn(move || {
        let id = r.id()?;
        let state = r.u8()? as i64;
        let attempts = r.u32()?;
        let at_ms = r.u64()?;
        let rframes = r.u32()?;
        let rlen = r.u32()? as usize;
        let rblob = r.take(rlen)?;
        let failure = r.optional_str()?;
        Some(FinishRecord {
            id,
            state,
            attempts,
            at_ms,
            result: (rframes != ABSENT).then_some((rframes as i64, rblob)),
            failure,
        })
    })
}

/// Appends a whole new job row (see [`decode_new_rows`]).
fn encode_new_row(out: &mut Vec<u8>, row: &NewRow<'_>) {
    out.extend_from_slice(&id_bytes(row.id));
    out.push(row.state as u8);
    out.push(row.emptied as u8);
    out.extend_from_slice(&row.attempts.to_le_bytes());
    out.extend_from_slice(&row.created_ms.to_le_bytes());
    out.extend_from_slice(&row.started_ms.to_le_bytes());
    out.extend_from_slice(&row.finished_ms.to_le_bytes());
    out.extend_from_slice(&(row.payload.0 as u32).to_le_bytes());
    put_optional(out, Some(if row.emptied { &[] } else { row.payload.1 }));
    put_optional(out, Some(row.service.as_bytes()));
    match &row.result {
        Some((n, blob)) => {
            out.extend_from_slice(&(*n as u32).to_le_bytes());
            put_optional(out, Some(blob));
        }
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
    put_optional(out, row.failure.map(str::as_bytes));
    put_optional(out, row.unique_key.map(str::as_bytes));
}

/// The new rows of one `inserts` row (in order; decoding stops at a
/// malformed tail).
fn decode_new_rows(blob: &[u8]) -> Vec<NewRow<'_>> {
    let mut r = Bytes(blob);
    let mut rows = Vec::new();
    let mut next = || -> Option<NewRow<'_>> {
        let id = r.id()?;
        let state = r.u8()? as i64;
        let emptied = r.u8()? != 0;
        let attempts = r.u32()?;
        let (created_ms, started_ms, finished_ms) = (r.u64()?, r.u64()?, r.u64()?);
        let nframes = r.u32()? as i64;
        let payload = r.optional()?.unwrap_or_default();
        let service = r.optional_str()?.unwrap_or_default();
        let result = match r.u32()? {
            ABSENT => None,
            n => Some((n as i64, std::borrow::Cow::Borrowed(r.optional()?.unwrap_or_default()))),
        };
        Some(NewRow {
            id,
            service,
            payload: (nframes, payload),
            state,
            attempts,
            created_ms,
            started_ms,
            finished_ms,
            result,
            failure: r.optional_str()?,
            unique_key: r.optional_str()?,
            emptied,
        })
    };
    while let Some(row) = next() {
        rows.push(row);
    }
    rows
}

/// The row of a job inserted in the batch being committed, with the batch's
/// later changes to it folded in.
struct NewRow<'a> {
    id: JobId,
    service: &'a str,
    payload: (i64, &'a [u8]),
    state: i64,
    attempts: u32,
    created_ms: u64,
    started_ms: u64,
    finished_ms: u64,
    /// (frame count, packed frames).
    result: Option<(i64, std::borrow::Cow<'a, [u8]>)>,
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
                self.result = result.as_deref().map(pack);
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

/// New job rows written by one statement run.
const INSERT_ROWS: usize = 32;

/// `INSERT OR REPLACE INTO jobs … VALUES (…), (…)` for `rows` rows of 13 columns.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT OR REPLACE INTO jobs (id, service, nframes, payload, state, attempts, created_ms, started_ms, \
         finished_ms, rframes, result, failure, unique_key) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 1..=13 {
            if c > 1 {
                sql.push(',');
            }
            sql.push_str(&format!("?{}", r * 13 + c));
        }
        sql.push(')');
    }
    sql
}

/// Binds `row` to parameters `at + 1 ..= at + 13` of an [`insert_sql`] statement.
fn bind_new_row(st: &mut rusqlite::CachedStatement<'_>, at: usize, row: &NewRow<'_>) -> rusqlite::Result<()> {
    let (n, blob): (i64, &[u8]) = if row.emptied { (1, &[]) } else { row.payload };
    let (rn, rblob) = match &row.result {
        Some((n, b)) => (Some(*n), Some(&b[..])),
        None => (None, None),
    };
    st.raw_bind_parameter(at + 1, &id_bytes(row.id)[..])?;
    st.raw_bind_parameter(at + 2, row.service)?;
    st.raw_bind_parameter(at + 3, n)?;
    st.raw_bind_parameter(at + 4, blob)?;
    st.raw_bind_parameter(at + 5, row.state)?;
    st.raw_bind_parameter(at + 6, row.attempts as i64)?;
    st.raw_bind_parameter(at + 7, row.created_ms as i64)?;
    st.raw_bind_parameter(at + 8, row.started_ms as i64)?;
    st.raw_bind_parameter(at + 9, row.finished_ms as i64)?;
    st.raw_bind_parameter(at + 10, rn)?;
    st.raw_bind_parameter(at + 11, rblob)?;
    st.raw_bind_parameter(at + 12, row.failure)?;
    st.raw_bind_parameter(at + 13, row.unique_key)?;
    Ok(())
}

/// Writes the finish records of every `finishes` row, then those of
/// `pending` (not yet written), into the job rows, in order, and empties
/// `finishes`. With `only`, records of jobs not in it are skipped (their
/// rows were deleted since).
fn fold_finishes(
    tx: &rusqlite::Transaction<'_>,
    only: Option<&HashSet<JobId, IdHash>>,
    pending: &[u8],
) -> rusqlite::Result<()> {
    let blobs: Vec<Vec<u8>> = tx
        .prepare("SELECT records FROM finishes ORDER BY seq")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = tx.prepare_cached(
        "UPDATE jobs SET state = ?2, rframes = ?3, result = ?4, failure = ?5, finished_ms = ?6,
         payload = x'', nframes = 1, attempts = MAX(attempts, ?7) WHERE id = ?1",
    )?;
    for blob in blobs.iter().map(Vec::as_slice).chain(std::iter::once(pending)) {
        for rec in decode_finishes(blob) {
            if only.is_some_and(|set| !set.contains(&rec.id)) {
                continue;
            }
            let (rn, rblob) = match rec.result {
                Some((n, b)) => (Some(n), Some(b)),
                None => (None, None),
            };
            update.execute(params![
                &id_bytes(rec.id)[..],
                rec.state,
                rn,
                rblob,
                rec.failure,
                rec.at_ms as i64,
                rec.attempts as i64
            ])?;
        }
    }
    tx.execute("DELETE FROM finishes", [])?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) `DIR/zmws.db`. A file that is not a zmws
    /// database, is corrupt, or cannot be written is an error naming the file.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Io(format!("cannot create data directory {}: {e}", dir.display())))?;
        let lock = DataDirLock::acquire(dir)?;
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
        // 16 KiB pages (SQLite's default is 4 KiB) for a new file: a job row
        // with a 100-byte payload and result is ~250 bytes, and larger pages
        // make the per-job inserts and updates ~20 % cheaper (store_cost
        // below). A file made with other pages keeps them.
        conn.pragma_update(None, "page_size", 16384).map_err(named)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(named)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(named)?;
        // A 16 MiB page cache (default 2 MiB) keeps a large backlog's B-tree
        // pages in memory for the per-job updates.
        conn.pragma_update(None, "cache_size", -16384).map_err(named)?;
        // Checkpoint the WAL every 64 MiB instead of every 4 MiB: a page
        // rewritten many times between checkpoints is copied back once, and
        // checkpoints (run inside a commit) are rarer. The WAL file on disk
        // stays at most about this size.
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(named)?;
        conn.pragma_update(None, "wal_autocheckpoint", (64 << 20) / page_size.max(512)).map_err(named)?;
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
             CREATE TABLE IF NOT EXISTS finishes (seq INTEGER PRIMARY KEY, records BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS inserts (seq INTEGER PRIMARY KEY, records BLOB NOT NULL);
             INSERT OR IGNORE INTO meta (k, v) VALUES ('schema', '2');",
        )
        .map_err(named)?;
        let schema: String =
            conn.query_row("SELECT v FROM meta WHERE k = 'schema'", [], |r| r.get(0)).map_err(named)?;
        match schema.as_str() {
            "2" => {}
            // Version 1 had no `finishes` and `inserts` tables (created above): nothing else changed.
            "1" => {
                conn.execute("UPDATE meta SET v = '2' WHERE k = 'schema'", []).map_err(named)?;
            }
            _ => return Err(Error::Io(format!("job store {} has unknown schema version {schema}", path.display()))),
        }
        Ok(Store {
            _lock: lock,
            conn,
            path,
            started: HashMap::default(),
            start_rows: 0,
            last_fold: std::time::Instant::now(),
            finished: HashSet::default(),
            finish_rows: 0,
            finish_bytes: 0,
            carried: Vec::new(),
        })
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

    /// At start-up: writes the new rows still packed in `inserts` into
    /// `jobs`, moves the attempts recorded in `starts` into the job rows
    /// (a job still queued or active then counts as active in that attempt),
    /// then the outcomes recorded in `finishes`.
    fn fold_start_rows_at_load(&mut self) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            // First the rows of the last commit still packed in `inserts`.
            let blobs: Vec<Vec<u8>> = tx
                .prepare("SELECT records FROM inserts ORDER BY seq")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut insert = tx.prepare_cached(&insert_sql(1))?;
            for blob in &blobs {
                for row in decode_new_rows(blob) {
                    bind_new_row(&mut insert, 0, &row)?;
                    insert.raw_execute()?;
                }
            }
            tx.execute("DELETE FROM inserts", [])?;
        }
        self.carried.clear();
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
        // Then the finishes (a finish always comes after the job's starts).
        fold_finishes(&tx, None, &[])?;
        tx.commit()?;
        self.started.clear();
        self.start_rows = 0;
        self.finished.clear();
        self.finish_rows = 0;
        self.finish_bytes = 0;
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
        let carried = std::mem::take(&mut self.carried);
        match self.commit_carrying(ops, &carried) {
            Ok(next) => {
                self.carried = next;
                Ok(())
            }
            Err(e) => {
                // Rolled back: the carried rows are still in `inserts`.
                self.carried = carried;
                Err(e)
            }
        }
    }

    /// [`Store::commit`] given the rows carried from the last commit; returns
    /// this commit's new rows, packed, to carry to the next.
    fn commit_carrying(&mut self, ops: &[JournalOp], carried: &[u8]) -> Result<Vec<u8>> {
        let path = self.path.clone();
        let named = move |e: rusqlite::Error| Error::Io(format!("job store {}: {e}", path.display()));
        // Rows of jobs inserted in this batch, with everything after folded in.
        let mut fresh: Vec<Option<NewRow<'_>>> = Vec::new();
        let mut fresh_index: HashMap<JobId, usize, IdHash> = HashMap::default();
        // Jobs (not inserted here) whose Started is superseded by a later Finished.
        let mut finished_later: HashMap<JobId, usize, IdHash> = HashMap::default();
        // The last commit's new rows come first: this batch's changes to
        // them fold in like changes to its own new rows.
        for row in decode_new_rows(carried) {
            fresh_index.insert(row.id, fresh.len());
            fresh.push(Some(row));
        }
        let n_carried = fresh.len();
        for (i, op) in ops.iter().enumerate() {
            match op {
                JournalOp::Insert { id, service, payload, created_ms, unique_key } => {
                    fresh_index.insert(*id, fresh.len());
                    fresh.push(Some(NewRow {
                        id: *id,
                        service,
                        payload: (payload.nframes as i64, &payload.data[..]),
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
        let mut finish_records = Vec::new();
        let mut next = Vec::new();
        let mut folded = false;
        let mut finish_folded = false;
        let tx = self.conn.transaction().map_err(&named)?;
        {
            let mut insert = tx.prepare_cached(&insert_sql(1)).map_err(&named)?;
            let mut started = tx
                .prepare_cached("UPDATE jobs SET state = 1, attempts = ?2, started_ms = ?3 WHERE id = ?1")
                .map_err(&named)?;
            let mut requeued = tx
                .prepare_cached("UPDATE jobs SET state = 0, attempts = MAX(attempts, ?2) WHERE id = ?1")
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
                    JournalOp::Started { id, .. } | JournalOp::Requeued { id, .. } if self.finished.contains(id) => {
                        // Never sent by the engine (a finish is final), but if
                        // it comes, the packed finish must not be applied after
                        // it: fold the finishes into the rows first.
                        fold_finishes(&tx, Some(&self.finished), &finish_records).map_err(&named)?;
                        finish_records.clear();
                        self.finished.clear();
                        finish_folded = true;
                        if let JournalOp::Requeued { id, attempts } = op {
                            requeued.execute(params![&id_bytes(*id)[..], *attempts as i64]).map_err(&named)?;
                        } else if let JournalOp::Started { id, attempt, at_ms } = op {
                            encode_start(&mut start_records, *id, *attempt, *at_ms);
                            self.started.insert(*id, (*attempt, *at_ms));
                        }
                    }
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
                        // Packed with the batch's other finishes into one row of
                        // `finishes`; written into the job's row only if the job
                        // is still kept at the next fold (or at load).
                        self.started.remove(id);
                        encode_finish(
                            &mut finish_records,
                            *id,
                            *state,
                            *attempts,
                            *at_ms,
                            result.as_deref(),
                            failure.as_deref(),
                        );
                        self.finished.insert(*id);
                    }
                    JournalOp::Delete { id } => {
                        self.started.remove(id);
                        self.finished.remove(id);
                        delete.execute(params![&id_bytes(*id)[..]]).map_err(&named)?;
                    }
                }
            }
            if !start_records.is_empty() {
                tx.execute("INSERT INTO starts (records) VALUES (?1)", params![&start_records]).map_err(&named)?;
                self.start_rows += 1;
            }
            if !finish_records.is_empty() {
                tx.execute("INSERT INTO finishes (records) VALUES (?1)", params![&finish_records]).map_err(&named)?;
                self.finish_rows += 1;
                self.finish_bytes += finish_records.len();
            }
            if self.finish_rows >= FINISH_ROWS_PER_FOLD
                || self.finish_bytes >= FINISH_BYTES_PER_FOLD
                || self.finished.len() >= FINISHED_JOBS_PER_FOLD
            {
                fold_finishes(&tx, Some(&self.finished), &[]).map_err(&named)?;
                finish_folded = true;
            }
            // Fold the start rows away now and then: only jobs still running
            // by then cost a row update; the rest finished meanwhile.
            if self.start_rows >= START_ROWS_PER_FOLD
                || (self.start_rows > 0 && self.last_fold.elapsed() >= START_FOLD_EVERY)
            {
                for (id, &(attempt, at_ms)) in &self.started {
                    started.execute(params![&id_bytes(*id)[..], attempt as i64, at_ms as i64]).map_err(&named)?;
                }
                tx.execute("DELETE FROM starts", []).map_err(&named)?;
                folded = true;
            }
            // The carried rows go into `jobs`, INSERT_ROWS at a time (one
            // statement run per group rather than per row), the rest one by
            // one; this batch's new rows go into one `inserts` row.
            let rows: Vec<&NewRow<'_>> = fresh[..n_carried].iter().flatten().collect();
            let mut groups = rows.chunks_exact(INSERT_ROWS);
            if groups.len() > 0 {
                let mut many = tx.prepare_cached(&insert_sql(INSERT_ROWS)).map_err(&named)?;
                for group in groups.by_ref() {
                    for (k, row) in group.iter().enumerate() {
                        bind_new_row(&mut many, k * 13, row).map_err(&named)?;
                    }
                    many.raw_execute().map_err(&named)?;
                }
            }
            for row in groups.remainder() {
                bind_new_row(&mut insert, 0, row).map_err(&named)?;
                insert.raw_execute().map_err(&named)?;
            }
            if !carried.is_empty() {
                tx.execute("DELETE FROM inserts", []).map_err(&named)?;
            }
            for row in fresh[n_carried..].iter().flatten() {
                encode_new_row(&mut next, row);
            }
            if !next.is_empty() {
                tx.execute("INSERT INTO inserts (records) VALUES (?1)", params![&next]).map_err(&named)?;
            }
        }
        tx.commit().map_err(&named)?;
        if finish_folded {
            self.finished.clear();
            self.finish_rows = 0;
            self.finish_bytes = 0;
        }
        if folded {
            self.started.clear();
            self.start_rows = 0;
            self.last_fold = std::time::Instant::now();
        }
        Ok(next)
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
    fn a_data_directory_serves_one_store_at_a_time() {
        let dir = std::env::temp_dir().join(format!("zmws-store-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = Store::open(&dir).unwrap();
        let err = Store::open(&dir).err().expect("a second store on the same directory must be refused").to_string();
        assert!(err.contains("in use by another broker"), "{err}");
        assert!(err.contains(&format!("(pid {})", std::process::id())), "{err}");
        assert!(err.contains(&dir.display().to_string()), "{err}");
        drop(first);
        let again = Store::open(&dir).expect("the lock goes with the store");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn round_trip_and_corrupt_file() {
        let dir = std::env::temp_dir().join(format!("zmws-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Store::open(&dir).unwrap();
        let id = JobId::generate(1_700_000_000_000);
        s.commit(&[
            JournalOp::Service("S".into()),
            JournalOp::Insert {
                id,
                service: "S".into(),
                payload: vec![b"a".to_vec(), b"bc".to_vec()].into(),
                created_ms: 5,
                unique_key: Some("k".into()),
            },
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

/// A commit with nothing new, for tests: the rows carried from the last
/// commit go into `jobs`.
#[cfg(test)]
fn flush(st: &mut Store) {
    st.commit(&[JournalOp::Service("s".into())]).unwrap();
}

/// A job of service "s" with payload "p", for tests.
#[cfg(test)]
fn ins(id: JobId) -> JournalOp {
    JournalOp::Insert { id, service: "s".into(), payload: vec![b"p".to_vec()].into(), created_ms: 1, unique_key: None }
}

/// The rows of `table`, for tests.
#[cfg(test)]
fn count(st: &Store, table: &str) -> i64 {
    st.conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

#[cfg(test)]
mod start_rows {
    use super::*;

    #[test]
    fn a_start_in_a_start_row_survives_a_crash_and_a_fold_keeps_running_jobs() {
        let dir = std::env::temp_dir().join(format!("zmws-start-rows-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b, c) = (JobId(1 << 80), JobId(2 << 80), JobId(3 << 80));
        {
            let mut st = Store::open(&dir).unwrap();
            st.commit(&[JournalOp::Service("s".into()), ins(a), ins(b), ins(c)]).unwrap();
            flush(&mut st);
            // Started in later batches: packed into start rows, not the job rows.
            st.commit(&[
                JournalOp::Started { id: a, attempt: 1, at_ms: 5 },
                JournalOp::Started { id: b, attempt: 1, at_ms: 5 },
            ])
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
            st.commit(&[
                JournalOp::Started { id: c, attempt: 2, at_ms: 7 },
                JournalOp::Requeued { id: c, attempts: 2 },
            ])
            .unwrap();
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
        flush(&mut st);
        st.commit(&[JournalOp::Started { id: d, attempt: 1, at_ms: 9 }]).unwrap();
        for _ in 0..START_ROWS_PER_FOLD {
            st.commit(&[JournalOp::Started { id: a, attempt: 2, at_ms: 10 }]).unwrap();
        }
        let rows: i64 = st.conn.query_row("SELECT COUNT(*) FROM starts", [], |r| r.get(0)).unwrap();
        assert!(rows < START_ROWS_PER_FOLD as i64, "folded: {rows} rows left");
        let (state, attempts): (i64, i64) = st
            .conn
            .query_row("SELECT state, attempts FROM jobs WHERE id = ?1", params![&id_bytes(d)[..]], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((state, attempts), (1, 1));
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod finish_rows {
    use super::*;

    fn fin(id: JobId, state: JobState, result: Option<Vec<Frame>>, failure: Option<&str>) -> JournalOp {
        JournalOp::Finished { id, state, result, failure: failure.map(str::to_string), at_ms: 8, attempts: 3 }
    }

    fn row_state(st: &Store, id: JobId) -> Option<(i64, i64, Vec<u8>)> {
        st.conn
            .query_row("SELECT state, attempts, payload FROM jobs WHERE id = ?1", params![&id_bytes(id)[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .ok()
    }

    #[test]
    fn finish_records_round_trip_and_a_torn_tail_is_ignored() {
        let mut blob = Vec::new();
        let (a, b) = (JobId(0xabc << 64 | 7), JobId(u128::MAX));
        encode_finish(&mut blob, a, JobState::Complete, 2, 99, Some(&[b"x".to_vec(), b"yz".to_vec()]), None);
        encode_finish(&mut blob, b, JobState::Failed, 1, 100, None, Some("it broke: ü"));
        let recs: Vec<FinishRecord<'_>> = decode_finishes(&blob).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].id, recs[0].state, recs[0].attempts, recs[0].at_ms), (a, 2, 2, 99));
        assert_eq!(recs[0].result.map(|(n, r)| unpack(n, r.to_vec())), Some(vec![b"x".to_vec(), b"yz".to_vec()]));
        assert_eq!(recs[0].failure, None);
        assert_eq!((recs[1].id, recs[1].state, recs[1].result.is_none()), (b, 3, true));
        assert_eq!(recs[1].failure, Some("it broke: ü"));
        for cut in 1..blob.len() {
            let n = decode_finishes(&blob[..cut]).count();
            assert!(n <= 1, "a record cut at {cut} bytes must not decode");
        }
    }

    #[test]
    fn finishes_are_packed_kept_across_a_crash_and_skipped_once_deleted() {
        let dir = std::env::temp_dir().join(format!("zmws-finish-rows-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b, c, d) = (JobId(1 << 80), JobId(2 << 80), JobId(3 << 80), JobId(4 << 80));
        {
            let mut st = Store::open(&dir).unwrap();
            st.commit(&[JournalOp::Service("s".into()), ins(a), ins(b), ins(c), ins(d)]).unwrap();
            flush(&mut st);
            st.commit(&[
                fin(a, JobState::Complete, Some(vec![b"ra".to_vec(), b"rb".to_vec()]), None),
                fin(b, JobState::Failed, None, Some("no luck")),
                fin(c, JobState::Cancelled, None, Some("cancelled")),
            ])
            .unwrap();
            // The rows are untouched: the outcomes sit in one `finishes` row.
            assert_eq!(row_state(&st, a).unwrap().0, 0);
            assert_eq!(count(&st, "finishes"), 1);
            st.commit(&[JournalOp::Delete { id: c }]).unwrap();
            assert!(row_state(&st, c).is_none());
            // dropped without any further write: a crash
        }
        let mut st = Store::open(&dir).unwrap();
        let loaded = st.load().unwrap();
        let get = |id: JobId| loaded.jobs.iter().find(|j| j.id == id).cloned();
        let ja = get(a).unwrap();
        assert_eq!((ja.state, ja.attempts, ja.finished_ms), (JobState::Complete, 3, 8));
        assert_eq!(ja.result, Some(vec![b"ra".to_vec(), b"rb".to_vec()]));
        assert_eq!(ja.payload, vec![Vec::<u8>::new()], "a finished job's payload is not kept");
        let jb = get(b).unwrap();
        assert_eq!((jb.state, jb.failure.as_deref(), jb.result.is_none()), (JobState::Failed, Some("no luck"), true));
        assert!(get(c).is_none(), "deleted after its finish was packed: stays deleted");
        assert_eq!(get(d).unwrap().state, JobState::Queued);
        assert_eq!(count(&st, "finishes"), 0, "folded into the rows at load");
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn finish_rows_fold_into_the_job_rows_after_enough_commits() {
        let dir = std::env::temp_dir().join(format!("zmws-finish-fold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut st = Store::open(&dir).unwrap();
        let keep = JobId(1 << 80);
        st.commit(&[JournalOp::Service("s".into()), ins(keep)]).unwrap();
        flush(&mut st);
        st.commit(&[fin(keep, JobState::Complete, Some(vec![b"kept".to_vec()]), None)]).unwrap();
        for i in 0..FINISH_ROWS_PER_FOLD as u128 {
            let id = JobId((10 + i) << 80);
            st.commit(&[ins(id)]).unwrap();
            flush(&mut st);
            st.commit(&[fin(id, JobState::Complete, Some(vec![b"r".to_vec()]), None)]).unwrap();
            st.commit(&[JournalOp::Delete { id }]).unwrap();
        }
        assert!(count(&st, "finishes") < FINISH_ROWS_PER_FOLD as i64);
        let (state, attempts, payload) = row_state(&st, keep).unwrap();
        assert_eq!((state, attempts, payload.len()), (2, 3, 0), "written into its row by the fold");
        assert_eq!(count(&st, "jobs"), 1);
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_requeue_after_a_packed_finish_wins_and_version_1_files_are_upgraded() {
        let dir = std::env::temp_dir().join(format!("zmws-finish-requeue-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = JobId(1 << 80);
        {
            let mut st = Store::open(&dir).unwrap();
            st.commit(&[JournalOp::Service("s".into()), ins(a)]).unwrap();
            flush(&mut st);
            st.commit(&[fin(a, JobState::Failed, None, Some("x"))]).unwrap();
            st.commit(&[JournalOp::Requeued { id: a, attempts: 4 }]).unwrap();
            assert_eq!(row_state(&st, a).unwrap().0, 0, "the later requeue is what the row holds");
            st.conn.execute("UPDATE meta SET v = '1' WHERE k = 'schema'", []).unwrap();
        }
        let mut st = Store::open(&dir).unwrap();
        let loaded = st.load().unwrap();
        assert_eq!((loaded.jobs[0].state, loaded.jobs[0].attempts), (JobState::Queued, 4));
        let v: String = st.conn.query_row("SELECT v FROM meta WHERE k = 'schema'", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "2");
        st.conn.execute("UPDATE meta SET v = '9' WHERE k = 'schema'", []).unwrap();
        drop(st);
        let err = Store::open(&dir).err().expect("an unknown schema must be refused");
        assert!(err.to_string().contains("schema version 9"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod carried_rows {
    use super::*;

    fn ins(id: JobId, key: Option<&str>) -> JournalOp {
        JournalOp::Insert {
            id,
            service: "s".into(),
            payload: vec![b"p1".to_vec(), b"p2".to_vec()].into(),
            created_ms: 1,
            unique_key: key.map(str::to_string),
        }
    }

    #[test]
    fn a_commit_s_new_rows_are_one_blob_then_rows_with_the_next_commit_s_changes() {
        let dir = std::env::temp_dir().join(format!("zmws-carried-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b, c) = (JobId(1 << 80), JobId(2 << 80), JobId(3 << 80));
        let mut st = Store::open(&dir).unwrap();
        st.commit(&[JournalOp::Service("s".into()), ins(a, Some("ka")), ins(b, None), ins(c, None)]).unwrap();
        assert_eq!((count(&st, "jobs"), count(&st, "inserts")), (0, 1), "acknowledged on one packed row");
        // The next commit writes them, with its own changes folded in.
        st.commit(&[
            JournalOp::Started { id: a, attempt: 1, at_ms: 5 },
            JournalOp::Finished {
                id: a,
                state: JobState::Complete,
                result: Some(vec![b"r".to_vec()]),
                failure: None,
                at_ms: 6,
                attempts: 1,
            },
            JournalOp::Delete { id: b },
        ])
        .unwrap();
        assert_eq!(
            (count(&st, "jobs"), count(&st, "inserts"), count(&st, "finishes"), count(&st, "starts")),
            (2, 0, 0, 0)
        );
        drop(st);
        let mut st = Store::open(&dir).unwrap();
        let loaded = st.load().unwrap();
        assert_eq!(loaded.jobs.len(), 2);
        let ja = &loaded.jobs[0];
        assert_eq!((ja.id, ja.state, ja.attempts, ja.started_ms, ja.finished_ms), (a, JobState::Complete, 1, 5, 6));
        assert_eq!((ja.result.clone(), ja.unique_key.as_deref()), (Some(vec![b"r".to_vec()]), Some("ka")));
        let jc = &loaded.jobs[1];
        assert_eq!((jc.id, jc.state, jc.payload.clone()), (c, JobState::Queued, vec![b"p1".to_vec(), b"p2".to_vec()]));
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn packed_new_rows_survive_a_crash_and_a_failed_commit_keeps_carrying_them() {
        let dir = std::env::temp_dir().join(format!("zmws-carried-crash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b) = (JobId(1 << 80), JobId(2 << 80));
        {
            let mut st = Store::open(&dir).unwrap();
            st.commit(&[JournalOp::Service("s".into()), ins(a, None)]).unwrap();
            // A commit that fails (a read-only moment) rolls back; the rows
            // it carried are still to be written by the next one.
            st.conn.pragma_update(None, "query_only", true).unwrap();
            assert!(st.commit(&[ins(b, None)]).is_err());
            st.conn.pragma_update(None, "query_only", false).unwrap();
            assert_eq!(count(&st, "inserts"), 1);
            st.commit(&[JournalOp::Started { id: a, attempt: 1, at_ms: 3 }]).unwrap();
            assert_eq!((count(&st, "jobs"), count(&st, "inserts")), (1, 0));
            st.commit(&[ins(b, Some("kb"))]).unwrap();
            // dropped with b only in `inserts`: a crash
        }
        let mut st = Store::open(&dir).unwrap();
        let loaded = st.load().unwrap();
        let states: Vec<(JobId, JobState, u32)> = loaded.jobs.iter().map(|j| (j.id, j.state, j.attempts)).collect();
        assert_eq!(states, vec![(a, JobState::Active, 1), (b, JobState::Queued, 0)]);
        assert_eq!(loaded.jobs[1].unique_key.as_deref(), Some("kb"));
        assert_eq!(count(&st, "inserts"), 0, "written into `jobs` at load");
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn new_row_records_round_trip_and_a_torn_tail_is_ignored() {
        let mut blob = Vec::new();
        let frames = [b"x".to_vec()];
        let result = pack(&frames);
        let row = NewRow {
            id: JobId(42),
            service: "svc",
            payload: (2, b"\x01\0\0\0a\x01\0\0\0b"),
            state: 2,
            attempts: 3,
            created_ms: 4,
            started_ms: 5,
            finished_ms: 6,
            result: Some(result),
            failure: Some("é"),
            unique_key: None,
            emptied: true,
        };
        encode_new_row(&mut blob, &row);
        encode_new_row(
            &mut blob,
            &NewRow { id: JobId(43), result: None, failure: None, unique_key: Some("k"), emptied: false, ..row },
        );
        let rows = decode_new_rows(&blob);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].id, rows[0].state, rows[0].attempts, rows[0].finished_ms, rows[0].emptied),
            (JobId(42), 2, 3, 6, true)
        );
        assert_eq!(
            (rows[0].payload.1.len(), rows[0].service, rows[0].failure),
            (0, "svc", Some("é")),
            "an emptied payload is not kept"
        );
        assert_eq!(rows[0].result.as_ref().map(|(n, b)| (*n, b.to_vec())), Some((1, b"x".to_vec())));
        assert_eq!(
            (rows[1].id, rows[1].payload.0, rows[1].payload.1.len(), rows[1].unique_key),
            (JobId(43), 2, 10, Some("k"))
        );
        assert!(rows[1].result.is_none());
        for cut in 1..blob.len() {
            assert!(decode_new_rows(&blob[..cut]).len() <= 1, "a record cut at {cut} bytes must not decode");
        }
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
        let ins = |id: JobId| JournalOp::Insert {
            id,
            service: "bench".into(),
            payload: vec![vec![7u8; 100]].into(),
            created_ms: 1,
            unique_key: None,
        };
        let fin = |id: JobId| JournalOp::Finished {
            id,
            state: JobState::Complete,
            result: Some(vec![vec![8u8; 100]]),
            failure: None,
            at_ms: 2,
            attempts: 1,
        };
        let start = |id: JobId| JournalOp::Started { id, attempt: 1, at_ms: 2 };
        let time = |st: &mut Store, what: &str, batches: Vec<Vec<JournalOp>>| {
            let t = std::time::Instant::now();
            for b in &batches {
                st.commit(b).unwrap();
            }
            eprintln!("{what}: {:.2} µs per job", t.elapsed().as_secs_f64() * 1e6 / n as f64);
        };
        time(
            &mut st,
            "insert only (batches of 10,000)",
            ids.chunks(10_000).map(|c| c.iter().map(|&i| ins(i)).collect()).collect(),
        );
        time(&mut st, "start update", ids.chunks(10_000).map(|c| c.iter().map(|&i| start(i)).collect()).collect());
        time(&mut st, "finish update", ids.chunks(10_000).map(|c| c.iter().map(|&i| fin(i)).collect()).collect());
        time(
            &mut st,
            "delete",
            ids.chunks(10_000).map(|c| c.iter().map(|&i| JournalOp::Delete { id: i }).collect()).collect(),
        );
        time(
            &mut st,
            "insert+start+finish folded",
            ids.chunks(10_000).map(|c| c.iter().flat_map(|&i| [ins(i), start(i), fin(i)]).collect()).collect(),
        );
        // As in pipe_w4_cap256 --persist: every commit inserts a group of
        // new jobs and starts and finishes the group of the commit before.
        let later: Vec<JobId> = (0..n).map(|i| JobId((2u128 << 100) + i * 7919)).collect();
        let groups: Vec<&[JobId]> = later.chunks(2_000).collect();
        let batches = (0..=groups.len())
            .map(|g| {
                let mut b: Vec<JournalOp> =
                    groups.get(g).map(|c| c.iter().map(|&i| ins(i)).collect()).unwrap_or_default();
                if g > 0 {
                    b.extend(groups[g - 1].iter().flat_map(|&i| [start(i), fin(i)]));
                }
                b
            })
            .collect();
        time(&mut st, "pipelined: insert, then start+finish one commit later (groups of 2,000)", batches);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
