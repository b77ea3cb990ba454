//! `zmws_broker`: configure, start and stop a broker from C.

use std::os::raw::{c_char, c_int};

use parking_lot::Mutex;

use super::{c_str, c_str_opt, check_out, handle, in_range, new_c_string, FfiError, FfiResult, MAX_MS};
use crate::broker::{Broker, BrokerConfig, BrokerHandle};

/// A broker: its configuration and, once started, the thread running it.
///
/// Create with `zmws_broker_new`, adjust with the `zmws_broker_set_*`
/// functions, run with `zmws_broker_start`, end with `zmws_broker_stop` and
/// release with `zmws_broker_free`.
///
/// Thread-safety: every function may be called from any thread, also
/// concurrently (calls on one broker are serialised by an internal lock).
/// Only `zmws_broker_free` must not race with other calls on the same broker.
pub struct zmws_broker {
    state: Mutex<State>,
}

struct State {
    config: BrokerConfig,
    running: Option<BrokerHandle>,
}

/// Runs `f` on the configuration of a broker that is not running.
unsafe fn configure(broker: *const zmws_broker, f: impl FnOnce(&mut BrokerConfig) -> FfiResult<()>) -> FfiResult<()> {
    let broker = handle(broker, "broker")?;
    let mut state = broker.state.lock();
    if state.running.is_some() {
        return Err(FfiError::invalid("the broker is running: stop it before changing its configuration"));
    }
    f(&mut state.config)
}

/// Largest byte or job count accepted by the size setters.
const MAX_COUNT: u64 = 1 << 40;

/// Creates a broker with the default configuration: clients on
/// `tcp://127.0.0.1:5555`, workers on `tcp://127.0.0.1:5556`, job events on
/// `tcp://127.0.0.1:5557`, heartbeat 1000 ms × 3, job timeout 60 s,
/// 3 attempts, 16 MiB payloads, 1,000,000 queued jobs, results kept 1 hour,
/// history of 100. Nothing is bound until `zmws_broker_start`.
///
/// On success `*broker_out` receives a new broker owned by the caller, to be
/// released with `zmws_broker_free`.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_new(broker_out: *mut *mut zmws_broker) -> c_int {
    ffi_guard!({
        check_out(broker_out, "broker_out")?;
        let broker =
            Box::new(zmws_broker { state: Mutex::new(State { config: BrokerConfig::default(), running: None }) });
        broker_out.write(Box::into_raw(broker));
        Ok(())
    })
}

/// Stops the broker if it runs (as `zmws_broker_stop`) and releases it.
/// NULL is a no-op. The handle is invalid afterwards.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_free(broker: *mut zmws_broker) {
    ffi_guard_value!((), {
        if !broker.is_null() {
            drop(Box::from_raw(broker));
        }
    })
}

/// Sets the endpoint clients connect to, e.g. `"tcp://127.0.0.1:5555"` or
/// `"tcp://127.0.0.1:*"` (any free port; read it back with
/// `zmws_broker_client_endpoint` after start). Only while not running. The
/// string is copied.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_client_endpoint(broker: *mut zmws_broker, endpoint: *const c_char) -> c_int {
    ffi_guard!({
        let endpoint = c_str(endpoint, "endpoint")?;
        configure(broker, |c| {
            c.client_endpoint = endpoint.to_string();
            Ok(())
        })
    })
}

/// Sets the endpoint workers connect to (see
/// `zmws_broker_set_client_endpoint`). Only while not running. The string is
/// copied.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_worker_endpoint(broker: *mut zmws_broker, endpoint: *const c_char) -> c_int {
    ffi_guard!({
        let endpoint = c_str(endpoint, "endpoint")?;
        configure(broker, |c| {
            c.worker_endpoint = endpoint.to_string();
            Ok(())
        })
    })
}

/// Sets the endpoint where job events are published (a PUB socket); NULL
/// or `""` turns publishing off. Only while not running. The string is
/// copied.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_news_endpoint(broker: *mut zmws_broker, endpoint: *const c_char) -> c_int {
    ffi_guard!({
        let endpoint = c_str_opt(endpoint, "endpoint")?;
        configure(broker, |c| {
            c.news_endpoint = endpoint.filter(|e| !e.is_empty()).map(str::to_string);
            Ok(())
        })
    })
}

/// Sets the heartbeat interval in milliseconds (1 to 10^12; workers must use
/// the same value). Only while not running.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_heartbeat_ms(broker: *mut zmws_broker, heartbeat_ms: u64) -> c_int {
    ffi_guard!({
        in_range(heartbeat_ms, MAX_MS, "heartbeat_ms")?;
        configure(broker, |c| {
            c.engine.heartbeat_ms = heartbeat_ms;
            Ok(())
        })
    })
}

/// Sets how many heartbeats a worker may miss before it is purged and its
/// jobs requeued (at least 1). Only while not running.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_liveness(broker: *mut zmws_broker, liveness: u32) -> c_int {
    ffi_guard!({
        in_range(liveness as u64, u32::MAX as u64, "liveness")?;
        configure(broker, |c| {
            c.engine.liveness = liveness;
            Ok(())
        })
    })
}

/// Sets how long one attempt of a job may run before it is given to another
/// worker, in milliseconds (1 to 10^12). Only while not running.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_job_timeout_ms(broker: *mut zmws_broker, job_timeout_ms: u64) -> c_int {
    ffi_guard!({
        in_range(job_timeout_ms, MAX_MS, "job_timeout_ms")?;
        configure(broker, |c| {
            c.engine.job_timeout_ms = job_timeout_ms;
            Ok(())
        })
    })
}

/// Sets how many attempts a job gets before it fails (at least 1). Only
/// while not running.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_max_attempts(broker: *mut zmws_broker, max_attempts: u32) -> c_int {
    ffi_guard!({
        in_range(max_attempts as u64, u32::MAX as u64, "max_attempts")?;
        configure(broker, |c| {
            c.engine.max_attempts = max_attempts;
            Ok(())
        })
    })
}

/// Sets the largest accepted payload in bytes (1 to 2^40); larger ones get
/// `ZMWS_TOO_LARGE`. Only while not running.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_max_payload(broker: *mut zmws_broker, max_payload: usize) -> c_int {
    ffi_guard!({
        in_range(max_payload as u64, MAX_COUNT, "max_payload")?;
        configure(broker, |c| {
            c.engine.max_payload = max_payload;
            Ok(())
        })
    })
}

/// Sets how many jobs may wait in the queues at once over all services (1
/// to 2^40); further submissions get `ZMWS_QUEUE_FULL`. Only while not
/// running.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_max_queued(broker: *mut zmws_broker, max_queued: usize) -> c_int {
    ffi_guard!({
        in_range(max_queued as u64, MAX_COUNT, "max_queued")?;
        configure(broker, |c| {
            c.engine.max_queued = max_queued;
            Ok(())
        })
    })
}

/// Sets how long finished jobs stay queryable, in milliseconds (1 to 10^12).
/// Only while not running.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_result_ttl_ms(broker: *mut zmws_broker, result_ttl_ms: u64) -> c_int {
    ffi_guard!({
        in_range(result_ttl_ms, MAX_MS, "result_ttl_ms")?;
        configure(broker, |c| {
            c.engine.result_ttl_ms = result_ttl_ms;
            Ok(())
        })
    })
}

/// Sets the length of the finished-jobs history listing (0 allowed). Only
/// while not running.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_history_len(broker: *mut zmws_broker, history_len: usize) -> c_int {
    ffi_guard!({
        configure(broker, |c| {
            c.engine.history_len = history_len;
            Ok(())
        })
    })
}

/// Sets the directory of the durable job store (created if missing): async
/// jobs are committed there before their id is returned and are restored
/// when a broker starts on the same directory. NULL or `""` keeps jobs in
/// memory only (the default). Only while not running. The string is copied;
/// an unusable directory is reported by `zmws_broker_start`.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_data_dir(broker: *mut zmws_broker, path: *const c_char) -> c_int {
    ffi_guard!({
        let path = c_str_opt(path, "path")?;
        configure(broker, |c| {
            c.data_dir = path.filter(|p| !p.is_empty()).map(std::path::PathBuf::from);
            Ok(())
        })
    })
}

/// Sets the send and receive high-water mark of the broker's sockets, in
/// messages (at least 1). Only while not running.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_hwm(broker: *mut zmws_broker, hwm: c_int) -> c_int {
    ffi_guard!({
        if hwm < 1 {
            return Err(FfiError::invalid("hwm must be at least 1"));
        }
        configure(broker, |c| {
            c.hwm = hwm;
            Ok(())
        })
    })
}

/// Sets how long (µs, at most 10,000; 0 = never, the default) the broker
/// keeps polling after each message before it sleeps. A message that comes
/// meanwhile skips a thread wake-up: lower latency for capacity-1 round
/// trips, paid in CPU time while traffic is light. Only while not running.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_set_spin_us(broker: *mut zmws_broker, spin_us: u32) -> c_int {
    ffi_guard!({
        if spin_us > crate::broker::MAX_SPIN_US {
            return Err(FfiError::invalid(format!("spin_us must be at most {}", crate::broker::MAX_SPIN_US)));
        }
        configure(broker, |c| {
            c.spin_us = spin_us;
            Ok(())
        })
    })
}

/// Opens the job store (if any), binds the sockets and runs the broker on a
/// background thread. Bind errors (port in use, bad endpoint) and store
/// errors are reported here (`ZMWS_IO`).
/// Calling it on a running broker gives `ZMWS_INVALID_ARGUMENT`; a stopped
/// broker may be started again.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_start(broker: *mut zmws_broker) -> c_int {
    ffi_guard!({
        let broker = handle(broker, "broker")?;
        let mut state = broker.state.lock();
        if state.running.is_some() {
            return Err(FfiError::invalid("the broker is already running"));
        }
        let running = Broker::bind(state.config.clone())?.start()?;
        state.running = Some(running);
        Ok(())
    })
}

/// Stops a running broker gracefully: the loop ends, pending replies are
/// flushed (bounded to half a second), the thread is joined and the sockets
/// are closed. A broker that is not running gives `ZMWS_OK`. Returns the
/// loop's own error if it had failed.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_stop(broker: *mut zmws_broker) -> c_int {
    ffi_guard!({
        let broker = handle(broker, "broker")?;
        // The state stays locked until the broker is down (and its job store
        // closed): a start on another thread meanwhile waits, then opens it.
        let mut state = broker.state.lock();
        match state.running.take() {
            Some(running) => running.stop().map_err(FfiError::from),
            None => Ok(()),
        }
    })
}

/// Writes whether the broker runs into `*running_out`.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_is_running(broker: *const zmws_broker, running_out: *mut bool) -> c_int {
    ffi_guard!({
        check_out(running_out, "running_out")?;
        let broker = handle(broker, "broker")?;
        running_out.write(broker.state.lock().running.is_some());
        Ok(())
    })
}

#[derive(Clone, Copy)]
enum Which {
    Client,
    Worker,
    News,
}

unsafe fn endpoint(broker: *const zmws_broker, which: Which, out: *mut *mut c_char) -> FfiResult<()> {
    check_out(out, "endpoint_out")?;
    let broker = handle(broker, "broker")?;
    let state = broker.state.lock();
    let running = state.running.as_ref().ok_or_else(|| {
        FfiError::new(super::zmws_code::ZMWS_CLOSED, "the broker is not running: start it to learn its endpoints")
    })?;
    let eps = running.endpoints();
    let text = match which {
        Which::Client => eps.client.as_str(),
        Which::Worker => eps.worker.as_str(),
        Which::News => eps
            .news
            .as_deref()
            .ok_or_else(|| FfiError::new(super::zmws_code::ZMWS_NOT_FOUND, "job event publishing is turned off"))?,
    };
    out.write(new_c_string(text)?);
    Ok(())
}

/// Writes the endpoint the running broker bound for clients (ports
/// resolved, e.g. `"tcp://127.0.0.1:40123"`) into `*endpoint_out`, a new
/// string the caller frees with `zmws_string_free`. `ZMWS_CLOSED` when not
/// running.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_client_endpoint(
    broker: *const zmws_broker,
    endpoint_out: *mut *mut c_char,
) -> c_int {
    ffi_guard!({ endpoint(broker, Which::Client, endpoint_out) })
}

/// Like `zmws_broker_client_endpoint`, for the worker endpoint.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_worker_endpoint(
    broker: *const zmws_broker,
    endpoint_out: *mut *mut c_char,
) -> c_int {
    ffi_guard!({ endpoint(broker, Which::Worker, endpoint_out) })
}

/// Like `zmws_broker_client_endpoint`, for the job-event (PUB) endpoint;
/// `ZMWS_NOT_FOUND` when publishing is off.
#[no_mangle]
pub unsafe extern "C" fn zmws_broker_news_endpoint(
    broker: *const zmws_broker,
    endpoint_out: *mut *mut c_char,
) -> c_int {
    ffi_guard!({ endpoint(broker, Which::News, endpoint_out) })
}
