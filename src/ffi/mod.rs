//! The C ABI: opaque handles over the Rust API (issue 3).
//!
//! Layout: this module holds the plumbing every exported function shares — the
//! panic boundary, the thread-local last error, argument checks, the result
//! codes and the allocation helpers for buffers handed to C. One submodule per
//! C "class": [`broker`], [`client`], [`worker`] (with the job handle) and
//! [`job`].
//!
//! Rules every exported function follows (checked by the tests at the end of
//! this file where a test can check them):
//!
//! * its body is one of the `ffi_guard*` macros, which run it inside
//!   `catch_unwind`: a panic becomes `ZMWS_INTERNAL`, never an unwind into C;
//! * it returns a `zmws_code` as a plain `int` (except the `_free` functions,
//!   `zmws_version`, `zmws_last_error` and `zmws_code_name`);
//! * NULL handles, NULL strings and invalid UTF-8 give `ZMWS_INVALID_ARGUMENT`;
//! * output parameters end in `_out` and are written only on success;
//! * nothing the caller passes in is kept after the call returns.
//!
//! The header `include/zmws.h` is generated from these files by cbindgen
//! (see `build.rs`); the doc comments below become its comments.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Code, Error};

/// Runs a body returning `Result<(), FfiError>` behind the panic boundary and
/// turns the outcome into a result code (recording the last error).
macro_rules! ffi_guard {
    ($body:block) => {
        $crate::ffi::guard_code(move || -> ::std::result::Result<(), $crate::ffi::FfiError> { $body })
    };
}

/// Runs a body returning a plain value behind the panic boundary; a panic
/// records `ZMWS_INTERNAL` as the last error and returns `$default`.
macro_rules! ffi_guard_value {
    ($default:expr, $body:block) => {
        $crate::ffi::guard_value(move || $default, move || $body)
    };
}

/// Like `ffi_guard_value!` but never touches the thread-local last error, for
/// functions that must stay async-signal-safe (`zmws_worker_stop`).
macro_rules! ffi_guard_quiet {
    ($default:expr, $body:block) => {
        $crate::ffi::guard_quiet(move || $default, move || $body)
    };
}

pub mod broker;
pub mod client;
pub mod job;
pub mod worker;

// ------------------------------------------------------------ result codes

/// Result codes returned by every `int`-returning zmws function. The numbers
/// are stable and shared with the Rust, PHP and Python bindings; retired
/// numbers stay reserved. `ZMWS_OK` (0) is success; anything else is an
/// error (or, for `ZMWS_TIMEOUT` and `ZMWS_IDLE` from the worker polling
/// functions, "nothing happened") and `zmws_last_error()` describes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum zmws_code {
    /// Success.
    ZMWS_OK = 0,
    /// A wait ran past its deadline (or a worker poll found no job).
    ZMWS_TIMEOUT = 1,
    /// No worker has ever offered the requested service (or, after a
    /// failback, its workers moved to another broker of the list).
    ZMWS_NO_SUCH_SERVICE = 2,
    /// An argument was NULL, empty, not UTF-8 or otherwise unusable.
    ZMWS_INVALID_ARGUMENT = 3,
    /// The job failed (worker failure, cancellation or attempts exhausted);
    /// `zmws_last_error()` carries the reason.
    ZMWS_JOB_FAILED = 4,
    /// The broker refused the job: its queue or a limit is full.
    ZMWS_QUEUE_FULL = 5,
    /// The handle was stopped or closed (or the broker is not running).
    ZMWS_CLOSED = 6,
    /// The job id is unknown (never existed or expired).
    ZMWS_NOT_FOUND = 7,
    /// The job has not finished yet.
    ZMWS_PENDING = 8,
    /// The payload is larger than the broker accepts.
    ZMWS_TOO_LARGE = 9,
    /// A peer sent something that does not follow the protocol.
    ZMWS_PROTOCOL = 10,
    /// A bug: a panic was caught or an invariant broke.
    ZMWS_INTERNAL = 11,
    /// A ZeroMQ or operating-system error.
    ZMWS_IO = 12,
    /// A worker poll saw a quiet spell (no job for several heartbeats).
    ZMWS_IDLE = 13,
}

/// The code numbers as `c_int`, for the Rust side.
pub(crate) const OK: c_int = zmws_code::ZMWS_OK as c_int;
pub(crate) const INTERNAL: c_int = zmws_code::ZMWS_INTERNAL as c_int;
pub(crate) const INVALID_ARGUMENT: c_int = zmws_code::ZMWS_INVALID_ARGUMENT as c_int;

/// The C code of a core [`Code`]. The numbers are equal by construction; the
/// exhaustive match makes a new core code a compile error here until the C
/// enum mirrors it.
pub(crate) fn code_of(code: Code) -> c_int {
    let c = match code {
        Code::Ok => zmws_code::ZMWS_OK,
        Code::Timeout => zmws_code::ZMWS_TIMEOUT,
        Code::NoSuchService => zmws_code::ZMWS_NO_SUCH_SERVICE,
        Code::InvalidArgument => zmws_code::ZMWS_INVALID_ARGUMENT,
        Code::JobFailed => zmws_code::ZMWS_JOB_FAILED,
        Code::QueueFull => zmws_code::ZMWS_QUEUE_FULL,
        Code::Closed => zmws_code::ZMWS_CLOSED,
        Code::NotFound => zmws_code::ZMWS_NOT_FOUND,
        Code::Pending => zmws_code::ZMWS_PENDING,
        Code::TooLarge => zmws_code::ZMWS_TOO_LARGE,
        Code::Protocol => zmws_code::ZMWS_PROTOCOL,
        Code::Internal => zmws_code::ZMWS_INTERNAL,
        Code::Io => zmws_code::ZMWS_IO,
        Code::Idle => zmws_code::ZMWS_IDLE,
    };
    c as c_int
}

/// Every C code in order, for the name table and the tests.
const ALL_CODES: [(zmws_code, Code, &str); 14] = [
    (zmws_code::ZMWS_OK, Code::Ok, "ZMWS_OK\0"),
    (zmws_code::ZMWS_TIMEOUT, Code::Timeout, "ZMWS_TIMEOUT\0"),
    (zmws_code::ZMWS_NO_SUCH_SERVICE, Code::NoSuchService, "ZMWS_NO_SUCH_SERVICE\0"),
    (zmws_code::ZMWS_INVALID_ARGUMENT, Code::InvalidArgument, "ZMWS_INVALID_ARGUMENT\0"),
    (zmws_code::ZMWS_JOB_FAILED, Code::JobFailed, "ZMWS_JOB_FAILED\0"),
    (zmws_code::ZMWS_QUEUE_FULL, Code::QueueFull, "ZMWS_QUEUE_FULL\0"),
    (zmws_code::ZMWS_CLOSED, Code::Closed, "ZMWS_CLOSED\0"),
    (zmws_code::ZMWS_NOT_FOUND, Code::NotFound, "ZMWS_NOT_FOUND\0"),
    (zmws_code::ZMWS_PENDING, Code::Pending, "ZMWS_PENDING\0"),
    (zmws_code::ZMWS_TOO_LARGE, Code::TooLarge, "ZMWS_TOO_LARGE\0"),
    (zmws_code::ZMWS_PROTOCOL, Code::Protocol, "ZMWS_PROTOCOL\0"),
    (zmws_code::ZMWS_INTERNAL, Code::Internal, "ZMWS_INTERNAL\0"),
    (zmws_code::ZMWS_IO, Code::Io, "ZMWS_IO\0"),
    (zmws_code::ZMWS_IDLE, Code::Idle, "ZMWS_IDLE\0"),
];

/// The symbolic name of a code, NUL-terminated (`"ZMWS_UNKNOWN\0"` if none).
fn code_name_nul(code: c_int) -> &'static str {
    ALL_CODES.iter().find(|(c, _, _)| *c as c_int == code).map(|(_, _, n)| *n).unwrap_or("ZMWS_UNKNOWN\0")
}

/// The symbolic name of a code, e.g. `"ZMWS_TIMEOUT"`.
pub(crate) fn code_name(code: c_int) -> &'static str {
    code_name_nul(code).trim_end_matches('\0')
}

// ------------------------------------------------------------ errors

/// An error on its way to C: a result code and a message.
#[derive(Clone, Debug)]
pub struct FfiError {
    code: c_int,
    message: String,
}

impl FfiError {
    pub(crate) fn new(code: zmws_code, message: impl Into<String>) -> FfiError {
        FfiError { code: code as c_int, message: message.into() }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> FfiError {
        FfiError::new(zmws_code::ZMWS_INVALID_ARGUMENT, message)
    }

    pub(crate) fn code(&self) -> c_int {
        self.code
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> FfiError {
        FfiError { code: code_of(e.code()), message: e.to_string() }
    }
}

/// Result type of the bodies behind the panic boundary.
pub(crate) type FfiResult<T> = Result<T, FfiError>;

thread_local! {
    /// The message of the last failed call on this thread ("" after success).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error (NUL bytes are dropped).
pub(crate) fn set_last_error(message: &str) {
    let bytes: Vec<u8> = message.bytes().filter(|&b| b != 0).collect();
    let text = CString::new(bytes).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = text);
}

fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|slot| {
        if !slot.borrow().as_bytes().is_empty() {
            *slot.borrow_mut() = CString::default();
        }
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("internal error: a panic was caught at the C boundary: {text}")
}

/// The panic boundary of every code-returning function.
pub(crate) fn guard_code<F: FnOnce() -> FfiResult<()>>(body: F) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            clear_last_error();
            OK
        }
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.code
        }
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            INTERNAL
        }
    }
}

/// The panic boundary of functions returning a value (pointers, `void`).
pub(crate) fn guard_value<T, D: FnOnce() -> T, F: FnOnce() -> T>(default: D, body: F) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            default()
        }
    }
}

/// The panic boundary of async-signal-safe functions: no thread-local state.
pub(crate) fn guard_quiet<T, D: FnOnce() -> T, F: FnOnce() -> T>(default: D, body: F) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| default())
}

// ------------------------------------------------------------ argument checks

/// Borrows a handle; NULL is an invalid argument.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> FfiResult<&'a T> {
    ptr.as_ref().ok_or_else(|| FfiError::invalid(format!("{what} is NULL")))
}

/// Checks an output pointer before any work is done.
pub(crate) fn check_out<T>(ptr: *mut T, what: &str) -> FfiResult<()> {
    if ptr.is_null() {
        Err(FfiError::invalid(format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

/// Borrows a NUL-terminated UTF-8 string; NULL or invalid UTF-8 is an invalid argument.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::invalid(format!("{what} is NULL")));
    }
    CStr::from_ptr(ptr).to_str().map_err(|_| FfiError::invalid(format!("{what} is not valid UTF-8")))
}

/// Like [`c_str`] but NULL gives `None`.
pub(crate) unsafe fn c_str_opt<'a>(ptr: *const c_char, what: &str) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        c_str(ptr, what).map(Some)
    }
}

/// Borrows `len` bytes; NULL is allowed only when `len` is 0.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize, what: &str) -> FfiResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(FfiError::invalid(format!("{what} is NULL but its length is {len}")));
    }
    if len > isize::MAX as usize {
        return Err(FfiError::invalid(format!("{what} length {len} is too large")));
    }
    Ok(std::slice::from_raw_parts(ptr, len))
}

// ------------------------------------------------------------ memory handed to C

/// Copies `data` into a `malloc`ed buffer with one extra NUL byte after it.
fn malloc_copy(data: &[u8]) -> FfiResult<*mut u8> {
    let size = data.len().checked_add(1).ok_or_else(|| FfiError::new(zmws_code::ZMWS_INTERNAL, "buffer too large"))?;
    // SAFETY: malloc of a non-zero size; the copy stays within `size` bytes.
    unsafe {
        let p = libc::malloc(size) as *mut u8;
        if p.is_null() {
            return Err(FfiError::new(zmws_code::ZMWS_INTERNAL, format!("out of memory ({size} bytes)")));
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len());
        *p.add(data.len()) = 0;
        Ok(p)
    }
}

/// A library-owned C string (free with `zmws_string_free`). Interior NUL
/// bytes, which none of our strings contain, would end it early.
pub(crate) fn new_c_string(text: &str) -> FfiResult<*mut c_char> {
    malloc_copy(text.as_bytes()).map(|p| p as *mut c_char)
}

/// A library-owned byte buffer (free with `zmws_buffer_free`).
pub(crate) fn new_buffer(data: &[u8]) -> FfiResult<*mut u8> {
    malloc_copy(data)
}

/// The longest wait or interval accepted, in milliseconds (about 31 years):
/// waits beyond it are clamped, settings beyond it refused, so deadline
/// arithmetic can never overflow.
pub(crate) const MAX_MS: u64 = 1_000_000_000_000;

/// Milliseconds as a duration, clamped to [`MAX_MS`].
pub(crate) fn millis(ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(ms.min(MAX_MS))
}

/// Checks that a setting lies in `1..=max`.
pub(crate) fn in_range(value: u64, max: u64, what: &str) -> FfiResult<()> {
    if value == 0 || value > max {
        Err(FfiError::invalid(format!("{what} must be between 1 and {max}, not {value}")))
    } else {
        Ok(())
    }
}

// ------------------------------------------------------------ callback re-entry

thread_local! {
    /// Address of the handle whose callback is running on this thread (0: none).
    static IN_CALLBACK: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` (which calls a C callback) marking `handle` as busy on this thread.
pub(crate) fn in_callback<T>(handle: usize, f: impl FnOnce() -> T) -> T {
    struct Reset(usize);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_CALLBACK.with(|c| c.set(self.0));
        }
    }
    let previous = IN_CALLBACK.with(|c| c.replace(handle));
    let _reset = Reset(previous);
    f()
}

/// Refuses a call on `handle` from inside that handle's own callback (it
/// would deadlock on the handle's lock).
pub(crate) fn check_not_in_callback(handle: usize, what: &str) -> FfiResult<()> {
    if IN_CALLBACK.with(|c| c.get()) == handle {
        return Err(FfiError::invalid(format!("{what} must not be used from inside its own callback")));
    }
    Ok(())
}

// ------------------------------------------------------------ library-wide functions

/// The library version as a static NUL-terminated string, e.g. `"0.1.0"`.
/// The pointer is owned by the library and valid for the life of the
/// process: do not free it. Thread-safe.
#[no_mangle]
pub extern "C" fn zmws_version() -> *const c_char {
    ffi_guard_value!(std::ptr::null(), { concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char })
}

/// The message of the last failed zmws call on the calling thread, or `""`
/// when the last call succeeded. Never NULL.
///
/// Ownership: the string belongs to the library and stays valid until the
/// next zmws call on the same thread (other than `zmws_last_error` and
/// `zmws_code_name`); copy it if you need it longer. Do not free it. Each
/// thread has its own last error, so this is thread-safe.
#[no_mangle]
pub extern "C" fn zmws_last_error() -> *const c_char {
    ffi_guard_quiet!(c"".as_ptr(), { LAST_ERROR.try_with(|slot| slot.borrow().as_ptr()).unwrap_or(c"".as_ptr()) })
}

/// The symbolic name of a result code (`"ZMWS_TIMEOUT"` for 1), or
/// `"ZMWS_UNKNOWN"`. A static string owned by the library: do not free it.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn zmws_code_name(code: c_int) -> *const c_char {
    ffi_guard_quiet!(c"ZMWS_UNKNOWN".as_ptr(), { code_name_nul(code).as_ptr() as *const c_char })
}

/// Frees a string the library handed out (job ids, JSON documents,
/// endpoints). NULL is a no-op. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn zmws_string_free(string: *mut c_char) {
    ffi_guard_value!((), {
        if !string.is_null() {
            libc::free(string as *mut libc::c_void);
        }
    })
}

/// Frees a byte buffer the library handed out (job results). NULL is a
/// no-op. Such buffers hold one extra NUL byte after their length, so a
/// textual result may be read as a C string. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn zmws_buffer_free(buffer: *mut u8) {
    ffi_guard_value!((), {
        if !buffer.is_null() {
            libc::free(buffer as *mut libc::c_void);
        }
    })
}

/// Turns on the library's diagnostic log on stderr. `filter` uses the
/// `RUST_LOG` syntax (`"info"`, `"zmws=debug"`); NULL means `"info"`; colours
/// only when stderr is a terminal. Works
/// once per process: a second call gives `ZMWS_INVALID_ARGUMENT`. The string
/// is not kept. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn zmws_log_init(filter: *const c_char) -> c_int {
    ffi_guard!({
        let filter = c_str_opt(filter, "filter")?.unwrap_or("info");
        let env = tracing_subscriber::EnvFilter::try_new(filter)
            .map_err(|e| FfiError::invalid(format!("bad log filter '{filter}': {e}")))?;
        // Colours only when stderr is a terminal (not in log files or pipes).
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::fmt()
            .with_env_filter(env)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .try_init()
            .map_err(|e| FfiError::invalid(format!("the log is already set up: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_and_sync() {
        // The header documents every handle as usable from any thread.
        fn check<T: Send + Sync>() {}
        check::<broker::zmws_broker>();
        check::<client::zmws_client>();
        check::<client::zmws_batch>();
        check::<worker::zmws_worker>();
        check::<job::zmws_job>();
    }

    #[test]
    fn codes_mirror_the_core() {
        for (i, (c, core, name)) in ALL_CODES.iter().enumerate() {
            assert_eq!(*c as c_int, i as c_int, "{name}");
            assert_eq!(*core as i32, *c as i32, "{name}");
            assert_eq!(code_of(*core), *c as c_int, "{name}");
            assert!(name.ends_with('\0'));
        }
    }

    #[test]
    fn last_error_round_trip() {
        assert_eq!(guard_code(|| Err(FfiError::invalid("bad\0thing"))), INVALID_ARGUMENT);
        let text = unsafe { CStr::from_ptr(zmws_last_error()) }.to_str().unwrap().to_string();
        assert_eq!(text, "badthing");
        assert_eq!(guard_code(|| Ok(())), OK);
        assert_eq!(unsafe { CStr::from_ptr(zmws_last_error()) }.to_bytes(), b"");
    }

    #[test]
    fn panics_become_internal() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let rc = guard_code(|| panic!("boom"));
        std::panic::set_hook(prev);
        assert_eq!(rc, INTERNAL);
        let text = unsafe { CStr::from_ptr(zmws_last_error()) }.to_str().unwrap().to_string();
        assert!(text.contains("boom"), "{text}");
    }

    #[test]
    fn code_names() {
        let name = |c| unsafe { CStr::from_ptr(zmws_code_name(c)) }.to_str().unwrap().to_string();
        assert_eq!(name(0), "ZMWS_OK");
        assert_eq!(name(13), "ZMWS_IDLE");
        assert_eq!(name(99), "ZMWS_UNKNOWN");
    }

    /// Sources of every FFI module, for the boundary check.
    const SOURCES: [(&str, &str); 5] = [
        ("mod.rs", include_str!("mod.rs")),
        ("broker.rs", include_str!("broker.rs")),
        ("client.rs", include_str!("client.rs")),
        ("job.rs", include_str!("job.rs")),
        ("worker.rs", include_str!("worker.rs")),
    ];

    /// Checks one source file: every exported function (`extern "C" fn
    /// name(`) is `#[no_mangle]`, named `zmws_*`, and its body starts with
    /// one of the panic-boundary macros. Returns how many it found.
    fn check_boundaries(file: &str, text: &str) -> Result<usize, String> {
        let guards = ["ffi_guard!(", "ffi_guard_value!(", "ffi_guard_quiet!("];
        let needle = concat!("extern \"C\"", " fn ");
        // Only the code before the tests module is checked.
        let code = text.split("#[cfg(test)]").next().unwrap_or(text);
        let mut defined = 0;
        let mut rest = code;
        while let Some(at) = rest.find(needle) {
            let after = &rest[at + needle.len()..];
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            rest = after;
            if name.is_empty() {
                continue; // a function-pointer type, not a definition
            }
            defined += 1;
            let before = &code[..code.len() - after.len()];
            let attr_window = &before[before.len().saturating_sub(200)..];
            if !attr_window.contains("no_mangle") {
                return Err(format!("{file}: {name} is not #[no_mangle]"));
            }
            if !name.starts_with("zmws_") {
                return Err(format!("{file}: {name} does not start with zmws_"));
            }
            let body_at = after.find('{').ok_or_else(|| format!("{file}: {name} has no body"))?;
            let body = after[body_at + 1..].trim_start();
            if !guards.iter().any(|g| body.starts_with(g)) {
                return Err(format!("{file}: the body of {name} does not start with a panic-boundary macro"));
            }
        }
        // `#[no_mangle]`, or `#[unsafe(no_mangle)]` in edition 2024.
        let exported = code.matches("no_mangle").count();
        if exported != defined {
            return Err(format!("{file}: {exported} #[no_mangle] items but {defined} exported functions"));
        }
        Ok(defined)
    }

    #[test]
    fn every_exported_function_has_the_panic_boundary() {
        let mut seen = 0;
        for (file, text) in SOURCES {
            seen += check_boundaries(file, text).unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(seen > 50, "only {seen} exported functions found");
    }

    #[test]
    fn the_boundary_check_catches_a_bare_function() {
        let ext = concat!("extern \"C\"", " fn");
        let good = format!(
            "#[no_mangle]\npub unsafe {ext} zmws_a(x: *mut u8) -> c_int {{\n    ffi_guard!({{ Ok(()) }})\n}}\n"
        );
        let bare = format!("#[no_mangle]\npub unsafe {ext} zmws_b(x: *mut u8) -> c_int {{\n    0\n}}\n");
        let unexported = format!("pub unsafe {ext} zmws_c() {{\n    ffi_guard_value!((), {{}})\n}}\n");
        let callback_type = format!("pub type cb = Option<unsafe {ext}(x: *mut u8)>;\n");
        assert_eq!(check_boundaries("good", &format!("{good}{callback_type}")), Ok(1));
        assert!(check_boundaries("bare", &format!("{good}{bare}")).unwrap_err().contains("zmws_b"));
        assert!(check_boundaries("unexported", &unexported).unwrap_err().contains("no_mangle"));
    }
}
