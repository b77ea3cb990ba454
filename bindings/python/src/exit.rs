//! Interpreter exit with threads still waiting in native code.
//!
//! On CPython < 3.14 a daemon thread that takes the GIL back after the
//! interpreter started finalizing is ended with `pthread_exit`. When that
//! happens as a `py.detach` wait returns, the forced unwind runs through Rust
//! frames and the pyo3 trampoline, and the process aborts ("FATAL: exception
//! not rethrown"). pyo3 guards its own attach path against this but not the
//! return from `detach`. So: an `atexit` hook (registered in
//! `zmws/__init__.py`, which runs before finalization starts) stops the
//! workers, waits briefly for their loops to end, then calls
//! `_prepare_exit()`. From then on a wait that ends on any other thread parks
//! that thread for good instead of taking the GIL back, as Python 3.14 does
//! itself.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::ThreadId;

use pyo3::prelude::*;

static EXITING: AtomicBool = AtomicBool::new(false);
static EXIT_THREAD: OnceLock<ThreadId> = OnceLock::new();
static ACTIVE_LOOPS: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` without the GIL (`py.detach`), parking the thread for good if
/// the interpreter began to exit meanwhile (see the module comment).
pub fn released<T, F>(py: Python<'_>, f: F) -> T
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    py.detach(move || {
        let out = f();
        if EXITING.load(Ordering::SeqCst) && EXIT_THREAD.get() != Some(&std::thread::current().id()) {
            loop {
                std::thread::park();
            }
        }
        out
    })
}

/// Counts a thread inside `Worker.run()` / `Worker.loop()` while alive.
pub struct LoopGuard;

impl LoopGuard {
    pub fn enter() -> LoopGuard {
        ACTIVE_LOOPS.fetch_add(1, Ordering::SeqCst);
        LoopGuard
    }
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        ACTIVE_LOOPS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many threads are inside a worker loop now.
#[pyfunction]
pub fn _active_loops() -> usize {
    ACTIVE_LOOPS.load(Ordering::SeqCst)
}

/// Called once from the `atexit` hook, on the thread that finalizes.
#[pyfunction]
pub fn _prepare_exit() {
    let _ = EXIT_THREAD.set(std::thread::current().id());
    EXITING.store(true, Ordering::SeqCst);
}
