//! Runs the durable store's commits on a thread of its own, so the broker
//! loop goes on routing jobs while SQLite writes.
//!
//! The loop hands over the journal ops it has gathered; while one commit
//! runs, the next turns' ops gather into the following batch (group commit
//! that grows with the load). When a commit ends, the thread sends one byte
//! on an in-process socket that the loop polls, and the outcome waits in a
//! channel. Only one batch is in flight at a time, so batches commit in
//! order.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::{JournalOp, Store};

/// What a finished commit reports: its ops (empty for a probe) and how it went.
pub(crate) type Outcome = (Vec<JournalOp>, Result<()>);

/// The handle the broker loop keeps.
pub(crate) struct Committer {
    requests: Option<mpsc::Sender<Vec<JournalOp>>>,
    outcomes: mpsc::Receiver<Outcome>,
    wake: zmq::Socket,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Moves `store` to a new thread.
    pub(crate) fn start(ctx: &zmq::Context, store: Store) -> Result<Committer> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let addr = format!("inproc://zmws-committer-{}", COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let wake = ctx.socket(zmq::PAIR)?;
        wake.set_linger(0)?;
        wake.bind(&addr)?;
        let notify = ctx.socket(zmq::PAIR)?;
        notify.set_linger(0)?;
        notify.connect(&addr)?;
        let (req_tx, req_rx) = mpsc::channel::<Vec<JournalOp>>();
        let (out_tx, out_rx) = mpsc::channel::<Outcome>();
        let thread = std::thread::Builder::new()
            .name("zmws-store".into())
            .spawn(move || {
                let mut store = store;
                for ops in req_rx {
                    let result = if ops.is_empty() { store.probe() } else { store.commit(&ops) };
                    if out_tx.send((ops, result)).is_err() {
                        break;
                    }
                    let _ = notify.send(&[1u8][..], 0);
                }
            })
            .map_err(|e| Error::Io(format!("cannot start the store thread: {e}")))?;
        Ok(Committer { requests: Some(req_tx), outcomes: out_rx, wake, thread: Some(thread) })
    }

    /// Starts committing `ops` (an empty batch probes whether the store
    /// takes writes again).
    pub(crate) fn submit(&self, ops: Vec<JournalOp>) {
        if let Some(tx) = &self.requests {
            let _ = tx.send(ops);
        }
    }

    /// The socket that becomes readable when a commit has ended.
    pub(crate) fn wake_socket(&self) -> &zmq::Socket {
        &self.wake
    }

    /// The outcome of the commit in flight, if it has ended.
    pub(crate) fn try_outcome(&self) -> Option<Outcome> {
        while self.wake.recv_bytes(zmq::DONTWAIT).is_ok() {}
        match self.outcomes.try_recv() {
            Ok(o) => Some(o),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => {
                Some((Vec::new(), Err(Error::Io("the store thread ended".into()))))
            }
        }
    }

    /// Waits up to `timeout` for the outcome of the commit in flight.
    pub(crate) fn wait_outcome(&self, timeout: Duration) -> Option<Outcome> {
        let got = self.outcomes.recv_timeout(timeout).ok();
        while self.wake.recv_bytes(zmq::DONTWAIT).is_ok() {}
        got
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.requests.take(); // ends the thread's loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
