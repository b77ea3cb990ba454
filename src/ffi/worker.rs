//! `zmws_worker`: offer a service and run jobs from C, by polling
//! (`zmws_worker_next_job`) or with a callback loop (`zmws_worker_run`).

use std::os::raw::{c_char, c_int, c_void};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::zmws_job;
use super::{
    c_str, check_out, code_name, handle, millis, zmws_code, FfiError, FfiResult, INVALID_ARGUMENT, MAX_MS, OK,
};
use crate::error::Error;
use crate::worker::{StopHandle, Worker, WorkerConfig, WorkerEvent};

/// A worker connection offering one service.
///
/// Create with `zmws_worker_new`, take jobs with `zmws_worker_next_job` /
/// `zmws_worker_next_event` or hand them to a callback with
/// `zmws_worker_run`, end with `zmws_worker_stop`, release with
/// `zmws_worker_free`. A background thread keeps the broker connection alive
/// (heartbeats, reconnects with failover) while jobs run.
///
/// Thread-safety: every function may be called from any thread, also
/// concurrently (waits for jobs are serialised); `zmws_worker_stop` is also
/// async-signal-safe. Only `zmws_worker_free` must not race with other
/// calls on the same worker.
pub struct zmws_worker {
    inner: Arc<Worker>,
    stop: StopHandle,
}

/// Called by `zmws_worker_run` for each job, on the thread that called
/// `zmws_worker_run`, with its `user_data`. Answer the job with
/// `zmws_job_complete` or `zmws_job_fail` (and send partials with
/// `zmws_job_partial`). If the handler returns without answering, the loop
/// completes the job with an empty result when it returned `ZMWS_OK` (0),
/// and fails it (not retryable) otherwise. The job belongs to the loop and
/// is valid only during the call: never free it or keep it.
pub type zmws_job_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, job: *mut zmws_job) -> c_int>;

unsafe fn connect(
    endpoints: *const c_char,
    service: *const c_char,
    capacity: u32,
    heartbeat_ms: u64,
    liveness: u32,
    worker_out: *mut *mut zmws_worker,
) -> FfiResult<()> {
    check_out(worker_out, "worker_out")?;
    let endpoints = c_str(endpoints, "endpoints")?;
    let service = c_str(service, "service")?;
    if heartbeat_ms > MAX_MS {
        return Err(FfiError::invalid(format!("heartbeat_ms must be at most {MAX_MS}")));
    }
    let mut config = WorkerConfig::new(endpoints, service);
    config.capacity = capacity;
    if heartbeat_ms > 0 {
        config.heartbeat_ms = heartbeat_ms;
    }
    if liveness > 0 {
        config.liveness = liveness;
    }
    let inner = Arc::new(Worker::with_config(config)?);
    let stop = inner.stop_handle();
    worker_out.write(Box::into_raw(Box::new(zmws_worker { inner, stop })));
    Ok(())
}

/// Connects a worker offering `service` (UTF-8, 1 to 255 bytes) to the
/// broker's worker endpoint; `endpoints` may be a comma-separated list, the
/// next one being used when a broker goes silent. `capacity` (at least 1) is
/// how many jobs the broker may hand it at once. Heartbeat 1000 ms × 3 (the
/// broker's defaults). The strings are copied.
///
/// On success `*worker_out` receives a new worker owned by the caller, to be
/// released with `zmws_worker_free`.
#[no_mangle]
pub unsafe extern "C" fn zmws_worker_new(
    endpoints: *const c_char,
    service: *const c_char,
    capacity: u32,
    worker_out: *mut *mut zmws_worker,
) -> c_int {
    ffi_guard!({ connect(endpoints, service, capacity, 0, 0, worker_out) })
}

/// Like `zmws_worker_new` with the heartbeat interval in milliseconds (must
/// match the broker's `zmws_broker_set_heartbeat_ms`) and the number of
/// missed broker heartbeats before reconnecting; 0 keeps the default of
/// either (1000 ms, 3). `heartbeat_ms` is at most 10^12.
#[no_mangle]
pub unsafe extern "C" fn zmws_worker_new_with_heartbeat(
    endpoints: *const c_char,
    service: *const c_char,
    capacity: u32,
    heartbeat_ms: u64,
    liveness: u32,
    worker_out: *mut *mut zmws_worker,
) -> c_int {
    ffi_guard!({ connect(endpoints, service, capacity, heartbeat_ms, liveness, worker_out) })
}

/// Closes the connection and releases the worker: replies already given are
/// flushed, the broker is told to requeue jobs not answered yet, the
/// background thread is joined. Jobs still held may be freed afterwards (but
/// no longer answered: `ZMWS_CLOSED`). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn zmws_worker_free(worker: *mut zmws_worker) {
    ffi_guard_value!((), {
        if !worker.is_null() {
            drop(Box::from_raw(worker));
        }
    })
}

/// Whether an error is a poll interrupted by a signal (EINTR). The core
/// reports it as an I/O error; the worker functions wait again instead, so
/// a signal handler calling `zmws_worker_stop` (or any unrelated signal)
/// does not turn into `ZMWS_IO`.
fn interrupted(e: &Error) -> bool {
    matches!(e, Error::Io(m) if m.contains("Interrupted system call"))
}

/// `Worker::next_event` that waits again after EINTR, within the same deadline.
fn next_event(worker: &zmws_worker, timeout: Duration) -> crate::Result<WorkerEvent> {
    let deadline = Instant::now() + timeout;
    loop {
        match worker.inner.next_event(deadline.saturating_duration_since(Instant::now())) {
            Err(e) if interrupted(&e) => continue, // a stop shows up as Closed on the next round
            other => return other,
        }
    }
}

/// One wait's outcome as the C API reports it: a job, `ZMWS_IDLE` or `ZMWS_TIMEOUT`.
fn into_job(worker: &zmws_worker, event: WorkerEvent, timeout_ms: u64) -> FfiResult<Box<zmws_job>> {
    match event {
        WorkerEvent::Job(job) => Ok(Box::new(zmws_job::new(job, &worker.inner))),
        WorkerEvent::Idle => {
            Err(FfiError::new(zmws_code::ZMWS_IDLE, "no job for several heartbeats (a good moment for housekeeping)"))
        }
        WorkerEvent::Timeout => Err(FfiError::new(zmws_code::ZMWS_TIMEOUT, format!("no job within {timeout_ms} ms"))),
    }
}

/// Waits up to `timeout_ms` for a job. `ZMWS_OK`: `*job_out` receives a new
/// job owned by the caller (answer it, then release it with
/// `zmws_job_free`). `ZMWS_TIMEOUT`: no job came (not an error; the output
/// is untouched). `ZMWS_CLOSED`: the worker was stopped.
#[no_mangle]
pub unsafe extern "C" fn zmws_worker_next_job(
    worker: *mut zmws_worker,
    timeout_ms: u64,
    job_out: *mut *mut zmws_job,
) -> c_int {
    ffi_guard!({
        check_out(job_out, "job_out")?;
        let w = handle(worker as *const zmws_worker, "worker")?;
        let deadline = Instant::now() + millis(timeout_ms);
        loop {
            let event = next_event(w, deadline.saturating_duration_since(Instant::now()))?;
            if event != WorkerEvent::Idle {
                job_out.write(Box::into_raw(into_job(w, event, timeout_ms)?));
                return Ok(());
            }
        }
    })
}

/// Like `zmws_worker_next_job`, but also reports quiet spells: `ZMWS_IDLE`
/// when no job came for several heartbeats (at most once per spell), a hint
/// for housekeeping. The output is untouched unless `ZMWS_OK`.
#[no_mangle]
pub unsafe extern "C" fn zmws_worker_next_event(
    worker: *mut zmws_worker,
    timeout_ms: u64,
    job_out: *mut *mut zmws_job,
) -> c_int {
    ffi_guard!({
        check_out(job_out, "job_out")?;
        let w = handle(worker as *const zmws_worker, "worker")?;
        let event = next_event(w, millis(timeout_ms))?;
        job_out.write(Box::into_raw(into_job(w, event, timeout_ms)?));
        Ok(())
    })
}

/// Runs jobs through `handler` (see `zmws_job_fn`) until `zmws_worker_stop`
/// is called, then returns `ZMWS_OK` after the current job. Returns an error
/// code if the connection fails. A stopped worker stays stopped: free it
/// and connect a new one to work again.
#[no_mangle]
pub unsafe extern "C" fn zmws_worker_run(
    worker: *mut zmws_worker,
    handler: zmws_job_fn,
    user_data: *mut c_void,
) -> c_int {
    ffi_guard!({
        let w = handle(worker as *const zmws_worker, "worker")?;
        let handler = handler.ok_or_else(|| FfiError::invalid("handler is NULL"))?;
        loop {
            let event = match next_event(w, millis(200)) {
                Ok(event) => event,
                Err(Error::Closed(_)) if w.stop.is_stopped() => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let WorkerEvent::Job(job) = event else { continue };
            let mut job = zmws_job::new(job, &w.inner);
            let rc = handler(user_data, &mut job as *mut zmws_job);
            if job.is_answered() {
                continue;
            }
            let answered = if rc == OK {
                job.answer(|w, id| w.complete(id, &[]))
            } else {
                let reason = format!("the job handler returned {rc} ({}) without answering the job", code_name(rc));
                job.answer(|w, id| w.fail(id, &reason, false))
            };
            match answered {
                Ok(()) => {}
                Err(_) if w.stop.is_stopped() => return Ok(()),
                Err(e) if e.code() == INVALID_ARGUMENT => {} // answered meanwhile by another thread
                Err(e) => return Err(e),
            }
        }
    })
}

/// Asks the worker to stop: a running `zmws_worker_run` returns after its
/// current job, waits in `zmws_worker_next_job` end with `ZMWS_CLOSED`.
/// Stopping is final. Callable from any thread and from a signal handler (it
/// is one atomic store); it never touches `zmws_last_error()`. Returns
/// `ZMWS_INVALID_ARGUMENT` for NULL.
#[no_mangle]
pub unsafe extern "C" fn zmws_worker_stop(worker: *mut zmws_worker) -> c_int {
    ffi_guard_quiet!(super::INTERNAL, {
        match worker.as_ref() {
            Some(w) => {
                w.stop.stop();
                OK
            }
            None => INVALID_ARGUMENT,
        }
    })
}

/// Writes how many jobs this worker has answered (completed or failed) into
/// `*jobs_done_out`.
#[no_mangle]
pub unsafe extern "C" fn zmws_worker_jobs_done(worker: *const zmws_worker, jobs_done_out: *mut u64) -> c_int {
    ffi_guard!({
        check_out(jobs_done_out, "jobs_done_out")?;
        jobs_done_out.write(handle(worker, "worker")?.inner.jobs_done());
        Ok(())
    })
}
