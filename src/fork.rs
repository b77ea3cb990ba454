//! Fork safety: every zmws handle belongs to the process that created it.
//!
//! A handle stands on libzmq sockets whose I/O threads, and on zmws threads
//! (the worker's keeper, the broker loop), that exist only in the process
//! that created them. After `fork()` the child has a copy of the handle but
//! none of those threads, so releasing the handle there the normal way
//! (closing sockets, terminating the context, joining threads) would block
//! the child forever, and using it would corrupt the parent's connection.
//!
//! So each handle records its [`Origin`]. In a forked child, calls on the
//! handle fail with [`Error::Closed`] naming the problem, and dropping the
//! handle releases nothing: [`ProcessBound`] leaks the libzmq objects, which
//! the child's exit reclaims. The parent keeps using its handles unchanged.
//! The test is one atomic load: a `pthread_atfork` child handler bumps a
//! process generation counter.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Once;

use crate::error::{Error, Result};

/// Bumped in the child after every `fork()` of this process.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

/// File descriptors a forked child must not keep open: the job store's lock
/// file (its `flock` would otherwise stay held by every child after the
/// parent's broker ends). -1 marks a free slot.
static CLOSE_IN_CHILD: [AtomicI32; 16] = [const { AtomicI32::new(-1) }; 16];

extern "C" fn after_fork_in_child() {
    // Async-signal-safe: atomic operations and close(2).
    GENERATION.fetch_add(1, Ordering::SeqCst);
    for slot in &CLOSE_IN_CHILD {
        let fd = slot.swap(-1, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: the fd was registered by its owner, which a child never
            // drops (ProcessBound leaks it there), so nothing closes it twice.
            unsafe { libc::close(fd) };
        }
    }
}

/// Registers `fd` to be closed in children forked from now on (until
/// [`keep_in_child`]). Returns false when every slot is taken.
pub(crate) fn close_in_child(fd: i32) -> bool {
    install_fork_handler();
    CLOSE_IN_CHILD.iter().any(|slot| slot.compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst).is_ok())
}

/// Undoes [`close_in_child`]; call it before closing `fd`.
pub(crate) fn keep_in_child(fd: i32) {
    for slot in &CLOSE_IN_CHILD {
        let _ = slot.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst);
    }
}

fn install_fork_handler() {
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only does an atomic add. glibc
        // removes handlers of a shared object when it is unloaded.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

/// The process (and fork generation) a handle was created in. Public so
/// that bindings can check it before taking a lock of their own (a lock
/// held by another thread at `fork()` stays locked in the child).
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    generation: u64,
    pid: u32,
}

impl Origin {
    /// The calling process.
    pub fn here() -> Origin {
        install_fork_handler();
        Origin { generation: GENERATION.load(Ordering::SeqCst), pid: std::process::id() }
    }

    /// True in a child forked after the handle was made.
    pub fn is_forked_child(&self) -> bool {
        GENERATION.load(Ordering::Relaxed) != self.generation
    }

    /// `Err(Closed)` naming the problem when called in a forked child.
    pub fn check(&self, what: &str) -> Result<()> {
        if self.is_forked_child() {
            return Err(Error::Closed(format!(
                "this {what} was created in process {} before fork(); a forked child cannot use it: create a new {what} in the child",
                self.pid
            )));
        }
        Ok(())
    }
}

/// A value released normally in its own process and leaked in a forked
/// child (where releasing a libzmq socket or context would block).
pub(crate) struct ProcessBound<T> {
    value: ManuallyDrop<T>,
    origin: Origin,
}

impl<T> ProcessBound<T> {
    /// Binds `value` to the calling process.
    pub(crate) fn new(value: T) -> ProcessBound<T> {
        ProcessBound { value: ManuallyDrop::new(value), origin: Origin::here() }
    }

    /// `Err(Closed)` when called in a child forked after the value was bound.
    pub(crate) fn check(&self, what: &str) -> Result<()> {
        self.origin.check(what)
    }

    /// Takes the value back out (it is then dropped like any other value).
    pub(crate) fn into_inner(self) -> T {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used again and its Drop does not run.
        unsafe { ManuallyDrop::take(&mut this.value) }
    }
}

impl<T> Deref for ProcessBound<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for ProcessBound<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T> Drop for ProcessBound<T> {
    fn drop(&mut self) {
        if !self.origin.is_forked_child() {
            // SAFETY: dropped once, here; the field is not touched after.
            unsafe { ManuallyDrop::drop(&mut self.value) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_made_here_is_usable_and_released() {
        let origin = Origin::here();
        assert!(!origin.is_forked_child());
        assert!(origin.check("Client").is_ok());
        let dropped = std::rc::Rc::new(());
        let bound = ProcessBound::new(dropped.clone());
        assert_eq!(std::rc::Rc::strong_count(&dropped), 2);
        drop(bound);
        assert_eq!(std::rc::Rc::strong_count(&dropped), 1);
        let back = ProcessBound::new(dropped.clone()).into_inner();
        assert_eq!(std::rc::Rc::strong_count(&dropped), 2);
        drop(back);
        assert_eq!(std::rc::Rc::strong_count(&dropped), 1);
    }
}
