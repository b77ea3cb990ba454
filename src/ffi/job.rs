//! `zmws_job`: one job handed to a worker — read it, answer it.

use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use super::{bytes, c_str, check_out, handle, FfiError, FfiResult};
use crate::worker::{Job, Worker};

/// One job received by a worker (`zmws_worker_next_job`,
/// `zmws_worker_next_event` or the `zmws_worker_run` handler).
///
/// Read it with `zmws_job_id`, `zmws_job_attempt`, `zmws_job_payload`;
/// answer it exactly once with `zmws_job_complete` or `zmws_job_fail`
/// (partials with `zmws_job_partial` before that); release it with
/// `zmws_job_free` (jobs from `zmws_worker_run` are released by the loop).
/// Freeing a job does not answer it: an unanswered job is given to another
/// worker after the broker's job timeout, or when this worker disconnects.
///
/// Thread-safety: a job may be read and answered from any thread, also
/// concurrently (a second answer gives `ZMWS_INVALID_ARGUMENT`); only
/// `zmws_job_free` must not race with other calls on the same job. Once its
/// worker has been freed, answering gives `ZMWS_CLOSED`.
pub struct zmws_job {
    id: CString,
    attempt: u32,
    payload: Vec<u8>,
    worker: Weak<Worker>,
    answered: AtomicBool,
}

impl zmws_job {
    pub(crate) fn new(job: Job, worker: &Arc<Worker>) -> zmws_job {
        let id = CString::new(job.id.replace('\0', "")).unwrap_or_default();
        zmws_job {
            id,
            attempt: job.attempt,
            payload: job.payload,
            worker: Arc::downgrade(worker),
            answered: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_answered(&self) -> bool {
        self.answered.load(Ordering::SeqCst)
    }

    fn id_str(&self) -> &str {
        self.id.to_str().unwrap_or("")
    }

    fn worker(&self) -> FfiResult<Arc<Worker>> {
        self.worker
            .upgrade()
            .ok_or_else(|| FfiError::new(super::zmws_code::ZMWS_CLOSED, "the worker of this job was freed"))
    }

    /// Sends the one final answer of the job (a result or a failure).
    pub(crate) fn answer(&self, send: impl FnOnce(&Worker, &str) -> crate::Result<()>) -> FfiResult<()> {
        let worker = self.worker()?;
        if self.answered.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return Err(FfiError::invalid(format!("job {} was already answered", self.id_str())));
        }
        send(&worker, self.id_str()).map_err(|e| {
            self.answered.store(false, Ordering::SeqCst);
            FfiError::from(e)
        })
    }
}

/// Writes the job id (32 hex characters) into `*id_out`. The string belongs
/// to the job: valid until `zmws_job_free`, do not free it.
#[no_mangle]
pub unsafe extern "C" fn zmws_job_id(job: *const zmws_job, id_out: *mut *const c_char) -> c_int {
    ffi_guard!({
        check_out(id_out, "id_out")?;
        id_out.write(handle(job, "job")?.id.as_ptr());
        Ok(())
    })
}

/// Writes the attempt number (1 for the first run, higher when the job is
/// retried) into `*attempt_out`.
#[no_mangle]
pub unsafe extern "C" fn zmws_job_attempt(job: *const zmws_job, attempt_out: *mut u32) -> c_int {
    ffi_guard!({
        check_out(attempt_out, "attempt_out")?;
        attempt_out.write(handle(job, "job")?.attempt);
        Ok(())
    })
}

/// Writes the payload into `*payload_out` and its length into `*len_out`.
/// Binary safe; the bytes are followed by no NUL byte. They belong to the
/// job: valid until `zmws_job_free`, do not free them. An empty payload
/// gives a non-NULL pointer and length 0.
#[no_mangle]
pub unsafe extern "C" fn zmws_job_payload(
    job: *const zmws_job,
    payload_out: *mut *const u8,
    len_out: *mut usize,
) -> c_int {
    ffi_guard!({
        check_out(payload_out, "payload_out")?;
        check_out(len_out, "len_out")?;
        let job = handle(job, "job")?;
        payload_out.write(job.payload.as_ptr());
        len_out.write(job.payload.len());
        Ok(())
    })
}

/// Completes the job with `result` (`result_len` bytes, copied; NULL allowed
/// when the length is 0). A job is answered once: a second answer gives
/// `ZMWS_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn zmws_job_complete(job: *mut zmws_job, result: *const u8, result_len: usize) -> c_int {
    ffi_guard!({
        let job = handle(job as *const zmws_job, "job")?;
        let result = bytes(result, result_len, "result")?;
        job.answer(|w, id| w.complete(id, result))
    })
}

/// Fails the job with `reason` (UTF-8, copied), which clients see in
/// `zmws_last_error()` with `ZMWS_JOB_FAILED`. When `retryable` is true the
/// broker runs the job again if attempts are left; otherwise it fails now.
/// A job is answered once: a second answer gives `ZMWS_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn zmws_job_fail(job: *mut zmws_job, reason: *const c_char, retryable: bool) -> c_int {
    ffi_guard!({
        let job = handle(job as *const zmws_job, "job")?;
        let reason = c_str(reason, "reason")?;
        job.answer(|w, id| w.fail(id, reason, retryable))
    })
}

/// Sends a partial result (progress) to a client waiting on the job with
/// `zmws_client_call`; `data` is copied. Only before the job is answered.
#[no_mangle]
pub unsafe extern "C" fn zmws_job_partial(job: *mut zmws_job, data: *const u8, data_len: usize) -> c_int {
    ffi_guard!({
        let job = handle(job as *const zmws_job, "job")?;
        let data = bytes(data, data_len, "data")?;
        if job.is_answered() {
            return Err(FfiError::invalid(format!("job {} was already answered", job.id_str())));
        }
        job.worker()?.partial(job.id_str(), data)?;
        Ok(())
    })
}

/// Releases a job from `zmws_worker_next_job` or `zmws_worker_next_event`,
/// whether answered or not (freeing does not answer it). NULL is a no-op.
/// Never free the job passed to a `zmws_worker_run` handler.
#[no_mangle]
pub unsafe extern "C" fn zmws_job_free(job: *mut zmws_job) {
    ffi_guard_value!((), {
        if !job.is_null() {
            drop(Box::from_raw(job));
        }
    })
}
