//! `zmws_client` and `zmws_batch`: submit jobs and collect results from C.

use std::os::raw::{c_char, c_int, c_void};

use parking_lot::Mutex;

use super::{
    bytes, c_str, check_not_in_callback, check_out, handle, in_callback, millis, new_buffer, new_c_string, FfiError,
    FfiResult,
};
use crate::client::Client;
use crate::job::JobList;

/// A connection to one broker, or to several with failover.
///
/// Create with `zmws_client_new`, release with `zmws_client_free`.
///
/// Thread-safety: every function may be called from any thread; calls on
/// one client are serialised by an internal lock, so for parallel requests
/// use one client per thread. Only `zmws_client_free` must not race with
/// other calls on the same client. A partial-reply callback must not call
/// functions of the client it was passed to (`ZMWS_INVALID_ARGUMENT`).
pub struct zmws_client {
    inner: Mutex<Client>,
    /// Checked before the lock: a lock held by another thread at fork()
    /// stays locked in the child.
    origin: crate::fork::Origin,
}

impl zmws_client {
    /// The client, unless this is a forked child (then `ZMWS_CLOSED`).
    fn lock(&self) -> crate::Result<parking_lot::MutexGuard<'_, Client>> {
        self.origin.check("Client")?;
        Ok(self.inner.lock())
    }
}

/// Called by `zmws_client_call` for every partial reply before the final
/// one: `user_data` as given to the call, then the partial's bytes, which
/// are valid only during the callback (copy them to keep them). Runs on the
/// calling thread.
pub type zmws_partial_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, data: *const u8, len: usize)>;

unsafe fn client<'a>(ptr: *mut zmws_client) -> FfiResult<&'a zmws_client> {
    let c = handle(ptr as *const zmws_client, "client")?;
    check_not_in_callback(ptr as usize, "a client")?;
    Ok(c)
}

/// Writes a result buffer to the two output pointers (checked beforehand).
unsafe fn write_buffer(data: &[u8], out: *mut *mut u8, len_out: *mut usize) -> FfiResult<()> {
    let buffer = new_buffer(data)?;
    out.write(buffer);
    len_out.write(data.len());
    Ok(())
}

/// Connects a client. `endpoints` is one broker endpoint or a comma-separated
/// list (`"tcp://10.0.0.1:5555,tcp://10.0.0.2:5555"`): requests go to the
/// first (unless it does not connect within 1 s while a later one does: this
/// call then waits that second), and move on to the next when a broker does
/// not answer within the request timeout (5 s by default, see
/// `zmws_client_set_request_timeout`); the client moves back to the first
/// when it returns (failback, README). Every endpoint must be well formed.
/// The string is copied.
///
/// On success `*client_out` receives a new client owned by the caller, to be
/// released with `zmws_client_free`.
#[no_mangle]
pub unsafe extern "C" fn zmws_client_new(endpoints: *const c_char, client_out: *mut *mut zmws_client) -> c_int {
    ffi_guard!({
        check_out(client_out, "client_out")?;
        let endpoints = c_str(endpoints, "endpoints")?;
        let inner = Client::connect(endpoints)?;
        client_out.write(Box::into_raw(Box::new(zmws_client {
            inner: Mutex::new(inner),
            origin: crate::fork::Origin::here(),
        })));
        Ok(())
    })
}

/// Closes the client and releases it. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn zmws_client_free(client: *mut zmws_client) {
    ffi_guard_value!((), {
        if !client.is_null() {
            drop(Box::from_raw(client));
        }
    })
}

/// Sets how long administrative requests (submit, status, result, cancel,
/// listings) wait for a broker before failing over to the next endpoint, in
/// milliseconds (at least 1).
#[no_mangle]
pub unsafe extern "C" fn zmws_client_set_request_timeout(client: *mut zmws_client, timeout_ms: u64) -> c_int {
    ffi_guard!({
        let c = self::client(client)?;
        if timeout_ms == 0 {
            return Err(FfiError::invalid("timeout_ms must be at least 1"));
        }
        c.lock()?.set_request_timeout(millis(timeout_ms));
        Ok(())
    })
}

/// Writes the broker endpoint in use now into `*endpoint_out`, a new string
/// the caller frees with `zmws_string_free`.
#[no_mangle]
pub unsafe extern "C" fn zmws_client_endpoint(client: *mut zmws_client, endpoint_out: *mut *mut c_char) -> c_int {
    ffi_guard!({
        check_out(endpoint_out, "endpoint_out")?;
        let c = self::client(client)?;
        let text = new_c_string(c.lock()?.endpoint())?;
        endpoint_out.write(text);
        Ok(())
    })
}

/// Submits a job to `service` without waiting for it to run. On success
/// `*job_id_out` receives its id (32 lowercase hex characters), a new string
/// the caller frees with `zmws_string_free`. `payload` may be NULL when
/// `payload_len` is 0; it is copied. Errors: `ZMWS_NO_SUCH_SERVICE`,
/// `ZMWS_TOO_LARGE`, `ZMWS_QUEUE_FULL`, `ZMWS_TIMEOUT` (no broker answered).
#[no_mangle]
pub unsafe extern "C" fn zmws_client_submit(
    client: *mut zmws_client,
    service: *const c_char,
    payload: *const u8,
    payload_len: usize,
    job_id_out: *mut *mut c_char,
) -> c_int {
    ffi_guard!({
        check_out(job_id_out, "job_id_out")?;
        let c = self::client(client)?;
        let service = c_str(service, "service")?;
        let payload = bytes(payload, payload_len, "payload")?;
        let id = c.lock()?.submit(service, payload)?;
        job_id_out.write(new_c_string(&id.to_string())?);
        Ok(())
    })
}

/// Like `zmws_client_submit` with an idempotency `key` (UTF-8, 1 to 255
/// bytes, copied): while a job submitted with the same key is queued,
/// running or within its result TTL, its id is returned instead of a new job
/// being created.
#[no_mangle]
pub unsafe extern "C" fn zmws_client_submit_unique(
    client: *mut zmws_client,
    service: *const c_char,
    payload: *const u8,
    payload_len: usize,
    key: *const c_char,
    job_id_out: *mut *mut c_char,
) -> c_int {
    ffi_guard!({
        check_out(job_id_out, "job_id_out")?;
        let c = self::client(client)?;
        let service = c_str(service, "service")?;
        let payload = bytes(payload, payload_len, "payload")?;
        let key = c_str(key, "key")?;
        let id = c.lock()?.submit_unique(service, payload, key)?;
        job_id_out.write(new_c_string(&id.to_string())?);
        Ok(())
    })
}

/// Bytes one job id takes in the `job_ids_out` buffer of
/// `zmws_client_submit_batch`: 32 lowercase hex characters and a NUL byte.
pub const ZMWS_JOB_ID_SIZE: usize = 33;

/// Most payloads one `zmws_client_submit_batch` call may carry (the
/// broker's limit on one `zmws.submit.batch` message).
pub const ZMWS_MAX_SUBMIT_BATCH: usize = 10000;

/// Submits `count` jobs to `service` in one request, without waiting for
/// them to run: the broker accepts all of them or none (on an error no job
/// was created). `payloads[i]` points to `lens[i]` bytes (NULL allowed when
/// the length is 0); both arrays may be NULL when `count` is 0. Everything
/// passed in is copied, nothing is kept. At most `ZMWS_MAX_SUBMIT_BATCH`
/// payloads.
///
/// `job_ids_out` is a buffer owned by the caller (the library never
/// allocates or frees it; do not pass it to `zmws_string_free`) of
/// `job_ids_size` bytes, at least `count * ZMWS_JOB_ID_SIZE`. On success it
/// holds the ids in input order: id `i` (32 lowercase hex characters, then a
/// NUL byte) starts at `job_ids_out + i * ZMWS_JOB_ID_SIZE`. It is written
/// only on `ZMWS_OK` and may be NULL when `count` is 0. `count` 0 returns
/// `ZMWS_OK` without contacting the broker.
///
/// Errors: `ZMWS_NO_SUCH_SERVICE`, `ZMWS_TOO_LARGE` (a payload above the
/// broker's limit), `ZMWS_QUEUE_FULL` (the whole batch does not fit),
/// `ZMWS_INVALID_ARGUMENT` (NULL or short arguments, more than
/// `ZMWS_MAX_SUBMIT_BATCH` payloads), `ZMWS_TIMEOUT` (no broker answered;
/// the batch may or may not have been accepted).
#[no_mangle]
pub unsafe extern "C" fn zmws_client_submit_batch(
    client: *mut zmws_client,
    service: *const c_char,
    payloads: *const *const u8,
    lens: *const usize,
    count: usize,
    job_ids_out: *mut c_char,
    job_ids_size: usize,
) -> c_int {
    ffi_guard!({
        if count > 0 {
            check_out(job_ids_out, "job_ids_out")?;
            let needed = count
                .checked_mul(ZMWS_JOB_ID_SIZE)
                .ok_or_else(|| FfiError::invalid(format!("count {count} is too large")))?;
            if job_ids_size < needed {
                return Err(FfiError::invalid(format!(
                    "job_ids_size is {job_ids_size} bytes; {count} job ids need {needed} ({count} * ZMWS_JOB_ID_SIZE)"
                )));
            }
        }
        let c = self::client(client)?;
        let service = c_str(service, "service")?;
        let mut items: Vec<&[u8]> = Vec::with_capacity(count.min(ZMWS_MAX_SUBMIT_BATCH + 1));
        if count > 0 {
            if payloads.is_null() || lens.is_null() {
                return Err(FfiError::invalid("payloads and lens must not be NULL when count > 0"));
            }
            if count > ZMWS_MAX_SUBMIT_BATCH {
                return Err(FfiError::invalid(format!(
                    "a batch holds at most {ZMWS_MAX_SUBMIT_BATCH} jobs; this one has {count}"
                )));
            }
            let ptrs = std::slice::from_raw_parts(payloads, count);
            let sizes = std::slice::from_raw_parts(lens, count);
            for (i, (&p, &n)) in ptrs.iter().zip(sizes).enumerate() {
                items.push(bytes(p, n, &format!("payloads[{i}]"))?);
            }
        }
        let ids = c.lock()?.submit_batch(service, &items)?;
        if ids.len() != count {
            return Err(FfiError::new(
                super::zmws_code::ZMWS_INTERNAL,
                format!("{} job ids for a batch of {count}", ids.len()),
            ));
        }
        for (i, id) in ids.iter().enumerate() {
            let hex = id.to_hex();
            let slot = job_ids_out.add(i * ZMWS_JOB_ID_SIZE) as *mut u8;
            std::ptr::copy_nonoverlapping(hex.as_ptr(), slot, hex.len());
            slot.add(hex.len()).write(0);
        }
        Ok(())
    })
}

/// Runs a job on `service` and waits up to `timeout_ms` for its result.
///
/// `on_partial` (may be NULL) is called with `user_data` for every partial
/// reply the worker sends before the result. On success `*result_out`
/// receives a new buffer of `*result_len_out` bytes (plus a NUL byte after
/// them) that the caller frees with `zmws_buffer_free`. `payload` may be
/// NULL when `payload_len` is 0; it is copied. Nothing is kept after the
/// call.
///
/// Errors: `ZMWS_TIMEOUT` (no result in time; the job may still run),
/// `ZMWS_NO_SUCH_SERVICE`, `ZMWS_JOB_FAILED` (the reason is in
/// `zmws_last_error()`), `ZMWS_TOO_LARGE`, `ZMWS_QUEUE_FULL`.
#[no_mangle]
pub unsafe extern "C" fn zmws_client_call(
    client: *mut zmws_client,
    service: *const c_char,
    payload: *const u8,
    payload_len: usize,
    timeout_ms: u64,
    on_partial: zmws_partial_fn,
    user_data: *mut c_void,
    result_out: *mut *mut u8,
    result_len_out: *mut usize,
) -> c_int {
    ffi_guard!({
        check_out(result_out, "result_out")?;
        check_out(result_len_out, "result_len_out")?;
        let c = self::client(client)?;
        let service = c_str(service, "service")?;
        let payload = bytes(payload, payload_len, "payload")?;
        let mut forward = |data: &[u8]| {
            if let Some(cb) = on_partial {
                // SAFETY: the caller promised `cb` is a valid function; the
                // slice outlives the callback.
                in_callback(client as usize, || unsafe { cb(user_data, data.as_ptr(), data.len()) });
            }
        };
        let result = c.lock()?.call_with_partials(service, payload, millis(timeout_ms), &mut forward)?;
        write_buffer(&result, result_out, result_len_out)
    })
}

/// Writes the status of a job as a JSON object into `*json_out`, a new
/// string the caller frees with `zmws_string_free`. Fields: `job_id`,
/// `service`, `state` (`"queued"`, `"active"`, `"complete"`, `"failed"`,
/// `"cancelled"`), `attempts`, `max_attempts`, `worker`, `created_ms`,
/// `started_ms`, `finished_ms`, `failure`, `payload_bytes`, `result_bytes`.
/// `ZMWS_NOT_FOUND` for an unknown id.
#[no_mangle]
pub unsafe extern "C" fn zmws_client_status(
    client: *mut zmws_client,
    job_id: *const c_char,
    json_out: *mut *mut c_char,
) -> c_int {
    ffi_guard!({
        check_out(json_out, "json_out")?;
        let c = self::client(client)?;
        let job_id = c_str(job_id, "job_id")?;
        let json = c.lock()?.status_json(job_id)?;
        json_out.write(new_c_string(&json)?);
        Ok(())
    })
}

/// Fetches the result of a finished job. On success `*result_out` receives a
/// new buffer of `*result_len_out` bytes (plus a NUL byte) that the caller
/// frees with `zmws_buffer_free`. `ZMWS_PENDING` while the job is queued or
/// running, `ZMWS_JOB_FAILED` with the reason if it failed or was
/// cancelled, `ZMWS_NOT_FOUND` for an unknown id.
#[no_mangle]
pub unsafe extern "C" fn zmws_client_result(
    client: *mut zmws_client,
    job_id: *const c_char,
    result_out: *mut *mut u8,
    result_len_out: *mut usize,
) -> c_int {
    ffi_guard!({
        check_out(result_out, "result_out")?;
        check_out(result_len_out, "result_len_out")?;
        let c = self::client(client)?;
        let job_id = c_str(job_id, "job_id")?;
        let result = c.lock()?.result(job_id)?;
        write_buffer(&result, result_out, result_len_out)
    })
}

/// Cancels a queued or running job. Cancelling a cancelled job is
/// `ZMWS_OK`; a finished one gives `ZMWS_INVALID_ARGUMENT`, an unknown id
/// `ZMWS_NOT_FOUND`.
#[no_mangle]
pub unsafe extern "C" fn zmws_client_cancel(client: *mut zmws_client, job_id: *const c_char) -> c_int {
    ffi_guard!({
        let c = self::client(client)?;
        let job_id = c_str(job_id, "job_id")?;
        c.lock()?.cancel(job_id)?;
        Ok(())
    })
}

/// Writes a job listing as a JSON array of status objects (see
/// `zmws_client_status`) into `*json_out`, a new string the caller frees
/// with `zmws_string_free`. `which` is `"queued"`, `"active"` or
/// `"history"` (the most recently finished jobs, newest first).
#[no_mangle]
pub unsafe extern "C" fn zmws_client_jobs(
    client: *mut zmws_client,
    which: *const c_char,
    json_out: *mut *mut c_char,
) -> c_int {
    ffi_guard!({
        check_out(json_out, "json_out")?;
        let c = self::client(client)?;
        let text = c_str(which, "which")?;
        let kind = JobList::parse(text)
            .ok_or_else(|| FfiError::invalid(format!("unknown job listing '{text}': use queued, active or history")))?;
        let json = c.lock()?.jobs_json(kind)?;
        json_out.write(new_c_string(&json)?);
        Ok(())
    })
}

/// Writes the live workers as a JSON array into `*json_out`, a new string
/// the caller frees with `zmws_string_free`. Fields per worker: `worker`,
/// `service`, `state`, `capacity`, `active_jobs`, `jobs_done`, `protocol`,
/// `connected_ms`, `last_seen_ms`.
#[no_mangle]
pub unsafe extern "C" fn zmws_client_workers(client: *mut zmws_client, json_out: *mut *mut c_char) -> c_int {
    ffi_guard!({
        check_out(json_out, "json_out")?;
        let c = self::client(client)?;
        let json = c.lock()?.workers_json()?;
        json_out.write(new_c_string(&json)?);
        Ok(())
    })
}

/// Writes every service ever offered, with its queue depth and counters, as
/// a JSON array into `*json_out`, a new string the caller frees with
/// `zmws_string_free`.
#[no_mangle]
pub unsafe extern "C" fn zmws_client_services(client: *mut zmws_client, json_out: *mut *mut c_char) -> c_int {
    ffi_guard!({
        check_out(json_out, "json_out")?;
        let c = self::client(client)?;
        let json = c.lock()?.services_json()?;
        json_out.write(new_c_string(&json)?);
        Ok(())
    })
}

/// Writes into `*available_out` whether at least one live worker offers
/// `service` now (the MMI `mmi.service` query).
#[no_mangle]
pub unsafe extern "C" fn zmws_client_service_available(
    client: *mut zmws_client,
    service: *const c_char,
    available_out: *mut bool,
) -> c_int {
    ffi_guard!({
        check_out(available_out, "available_out")?;
        let c = self::client(client)?;
        let service = c_str(service, "service")?;
        let available = c.lock()?.service_available(service)?;
        available_out.write(available);
        Ok(())
    })
}

// ------------------------------------------------------------ batch

/// The outcomes of `zmws_client_batch`, one per payload, in input order.
/// Read with `zmws_batch_count` and `zmws_batch_result`, release with
/// `zmws_batch_free`. Immutable: may be read from several threads at once.
pub struct zmws_batch {
    items: Vec<Result<Vec<u8>, FfiError>>,
}

/// Runs `count` jobs on `service` with many in flight at once and gathers
/// their outcomes in input order. `payloads[i]` points to `lens[i]` bytes
/// (NULL allowed when the length is 0); both arrays may be NULL when `count`
/// is 0. Everything is copied. `timeout_ms` bounds the whole batch: jobs not
/// finished by then get `ZMWS_TIMEOUT` in their slot.
///
/// Returns `ZMWS_OK` when the batch ran, even if some jobs failed; each
/// job's own code is read with `zmws_batch_result`. On success
/// `*batch_out` receives a new batch owned by the caller, released with
/// `zmws_batch_free`.
#[no_mangle]
pub unsafe extern "C" fn zmws_client_batch(
    client: *mut zmws_client,
    service: *const c_char,
    payloads: *const *const u8,
    lens: *const usize,
    count: usize,
    timeout_ms: u64,
    batch_out: *mut *mut zmws_batch,
) -> c_int {
    ffi_guard!({
        check_out(batch_out, "batch_out")?;
        let c = self::client(client)?;
        let service = c_str(service, "service")?;
        let mut items: Vec<&[u8]> = Vec::with_capacity(count);
        if count > 0 {
            if payloads.is_null() || lens.is_null() {
                return Err(FfiError::invalid("payloads and lens must not be NULL when count > 0"));
            }
            if count > isize::MAX as usize / std::mem::size_of::<*const u8>() {
                return Err(FfiError::invalid("count is too large"));
            }
            let ptrs = std::slice::from_raw_parts(payloads, count);
            let sizes = std::slice::from_raw_parts(lens, count);
            for (i, (&p, &n)) in ptrs.iter().zip(sizes).enumerate() {
                items.push(bytes(p, n, &format!("payloads[{i}]"))?);
            }
        }
        let outcomes = c.lock()?.batch(service, &items, millis(timeout_ms))?;
        let batch = zmws_batch { items: outcomes.into_iter().map(|r| r.map_err(FfiError::from)).collect() };
        batch_out.write(Box::into_raw(Box::new(batch)));
        Ok(())
    })
}

/// Writes the number of outcomes (the batch's input count) into `*count_out`.
#[no_mangle]
pub unsafe extern "C" fn zmws_batch_count(batch: *const zmws_batch, count_out: *mut usize) -> c_int {
    ffi_guard!({
        check_out(count_out, "count_out")?;
        count_out.write(handle(batch, "batch")?.items.len());
        Ok(())
    })
}

/// Writes how many jobs of the batch did not succeed into `*failed_out`.
#[no_mangle]
pub unsafe extern "C" fn zmws_batch_failed(batch: *const zmws_batch, failed_out: *mut usize) -> c_int {
    ffi_guard!({
        check_out(failed_out, "failed_out")?;
        failed_out.write(handle(batch, "batch")?.items.iter().filter(|r| r.is_err()).count());
        Ok(())
    })
}

/// Returns the code of job `index`: `ZMWS_OK` with `*data_out` and
/// `*len_out` set to its result, or the job's error code (`ZMWS_JOB_FAILED`,
/// `ZMWS_TIMEOUT`, …) with its message in `zmws_last_error()`, the outputs
/// untouched. The result bytes belong to the batch (followed by no NUL
/// byte): valid until `zmws_batch_free`, do not free them. An index out of
/// range gives `ZMWS_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn zmws_batch_result(
    batch: *const zmws_batch,
    index: usize,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> c_int {
    ffi_guard!({
        check_out(data_out, "data_out")?;
        check_out(len_out, "len_out")?;
        let batch = handle(batch, "batch")?;
        let item = batch.items.get(index).ok_or_else(|| {
            FfiError::invalid(format!("index {index} is out of range (batch of {})", batch.items.len()))
        })?;
        match item {
            Ok(data) => {
                data_out.write(data.as_ptr());
                len_out.write(data.len());
                Ok(())
            }
            Err(e) => Err(e.clone()),
        }
    })
}

/// Releases a batch and every result in it. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn zmws_batch_free(batch: *mut zmws_batch) {
    ffi_guard_value!((), {
        if !batch.is_null() {
            drop(Box::from_raw(batch));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_constants_match_the_core() {
        assert_eq!(ZMWS_MAX_SUBMIT_BATCH, crate::engine::MAX_SUBMIT_BATCH);
        assert_eq!(ZMWS_JOB_ID_SIZE, crate::job::JobId(0).to_hex().len() + 1);
    }
}
