//! Conversions between Python values and the bytes the core sends, timeouts
//! in float seconds, and the panic boundary.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PyString};

use crate::errors::invalid;

/// The longest interval a setting accepts, in milliseconds (about 31
/// years; the C API's `MAX_MS`): deadline arithmetic cannot overflow.
pub const MAX_MS: u64 = 1_000_000_000_000;

/// An integer argument in `min..=max`; anything else raises `InvalidArgument`
/// naming the argument and the value (`TypeError` for a non-integer).
pub fn int_in(obj: &Bound<'_, PyAny>, what: &str, min: u64, max: u64) -> PyResult<u64> {
    let py = obj.py();
    let bad = || {
        let shown = obj.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into());
        invalid(format!("{what} must be between {min} and {max}, not {shown}"))
    };
    match obj.extract::<i128>() {
        Ok(v) if v >= min as i128 && v <= max as i128 => Ok(v as u64),
        Ok(_) => Err(bad()),
        Err(e) if e.is_instance_of::<PyOverflowError>(py) => Err(bad()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{what} must be an integer, not {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
        ))),
    }
}

/// The longest wait we hand to the core (a year): larger values, and `None`,
/// mean "wait as long as it takes" without overflowing `Instant + Duration`.
pub const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long one GIL-free wait may last before we look at signals again.
pub const SLICE: Duration = Duration::from_millis(100);

static JSON_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `json.dumps` in its compact form, as UTF-8 bytes. NaN and infinities,
/// which JSON has no words for, raise `InvalidArgument`.
pub fn json_dumps(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let py = obj.py();
    let dumps = JSON_DUMPS.import(py, "json", "dumps")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("separators", (",", ":"))?;
    kwargs.set_item("ensure_ascii", false)?;
    kwargs.set_item("allow_nan", false)?;
    let text = dumps.call((obj,), Some(&kwargs)).map_err(|e| {
        if e.is_instance_of::<PyValueError>(py) {
            // json's only ValueErrors: NaN/Infinity and circular references.
            invalid(format!("cannot JSON-encode the payload: {}", e.value(py)))
        } else {
            e
        }
    })?;
    Ok(text.cast::<PyString>()?.to_cow()?.as_bytes().to_vec())
}

/// `json.loads` of text or bytes.
pub fn json_loads<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let loads = JSON_LOADS.import(py, "json", "loads")?;
    loads.call1((PyBytes::new(py, data),))
}

/// The bytes of a payload, partial or result: bytes-like objects pass
/// through, `str` is UTF-8, `None` is empty, anything else (dict, list,
/// numbers, booleans) is JSON-encoded.
pub fn to_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if obj.is_none() {
        return Ok(Vec::new());
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    if obj.cast::<PyMemoryView>().is_ok() {
        let b = obj.py().import("builtins")?.getattr("bytes")?.call1((obj,))?;
        return Ok(b.cast::<PyBytes>()?.as_bytes().to_vec());
    }
    json_dumps(obj)
}

/// What `work()` receives: a JSON object payload as a dict, anything else as bytes.
pub fn to_param<'py>(py: Python<'py>, payload: &[u8]) -> Bound<'py, PyAny> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        if let Ok(v) = json_loads(py, payload) {
            if v.cast::<PyDict>().is_ok() {
                return v;
            }
        }
    }
    PyBytes::new(py, payload).into_any()
}

/// A timeout in float seconds (`None` = no limit) as a `Duration`.
pub fn timeout(seconds: Option<f64>, what: &str) -> PyResult<Duration> {
    match seconds {
        None => Ok(FOREVER),
        Some(s) if s.is_nan() || s < 0.0 => Err(invalid(format!("{what} must be a number of seconds >= 0, not {s}"))),
        Some(s) if s >= FOREVER.as_secs_f64() => Ok(FOREVER),
        Some(s) => Ok(Duration::from_secs_f64(s)),
    }
}

/// Runs core code, turning a panic into `zmws::Error::Internal` so it never
/// crosses into Python (where `PanicException` would escape `except Exception`).
pub fn guard<T>(what: &str, f: impl FnOnce() -> zmws::Result<T>) -> zmws::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let detail = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(zmws::Error::Internal(format!("panic in {what}: {detail}")))
        }
    }
}

/// Blocks every signal on the calling (helper) thread, so that signals are
/// delivered to the Python main thread, where the waiting caller turns them
/// into Python signal handlers (KeyboardInterrupt, …).
pub fn block_signals() {
    #[cfg(unix)]
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Endpoints given as one string (comma or space separated) or a sequence of strings.
pub fn endpoints(obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let list: Vec<String> = if let Ok(s) = obj.cast::<PyString>() {
        zmws::client::split_endpoints(&s.to_cow()?)
    } else {
        let mut out = Vec::new();
        for item in obj.try_iter()? {
            let item = item?;
            let s = item.cast::<PyString>().map_err(|_| invalid("endpoints must be strings"))?;
            out.extend(zmws::client::split_endpoints(&s.to_cow()?));
        }
        out
    };
    if list.is_empty() {
        return Err(invalid("no endpoint given"));
    }
    Ok(list)
}
