//! The native base of `zmws.Worker`.
//!
//! The Python class `zmws.Worker` (in `zmws/__init__.py`) subclasses this
//! one: its `__init__` resolves the service and calls `_connect`, and it
//! supplies the default `work` and `idle`. Here live the loop (`run`,
//! `loop`), the replies (`partial`, completion, failure) and `stop`.
//!
//! Waits for jobs happen without the GIL in slices of at most 100 ms, with a
//! signal check after each; heartbeats are sent by the core's I/O thread, so
//! they keep going while `work` runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use zmws::{Job, Worker, WorkerConfig, WorkerEvent};

use crate::convert::{guard, int_in, timeout as timeout_secs, to_bytes, to_param, MAX_MS, SLICE};
use crate::errors::{invalid, to_py, Closed, InvalidArgument};
use crate::exit::{released, LoopGuard};

/// The native half of `zmws.Worker`; subclass `zmws.Worker`, not this.
#[pyclass(name = "Worker", module = "zmws._native", subclass, frozen)]
pub struct PyWorker {
    inner: Mutex<Option<Arc<Worker>>>,
    stopped: AtomicBool,
    /// Jobs answered on connections that are closed now.
    done_before: AtomicU64,
    /// The job `work` is running now: (id, attempt).
    current: Mutex<Option<(String, u32)>>,
    endpoints: Mutex<Vec<String>>,
}

/// What one wait produced.
enum Step {
    Job(Job),
    Idle,
    Nothing,
    Stopped,
}

impl PyWorker {
    fn worker(&self) -> PyResult<Option<Arc<Worker>>> {
        if self.stopped.load(Ordering::SeqCst) {
            return Ok(None);
        }
        match self.inner.lock().clone() {
            Some(w) => Ok(Some(w)),
            None => Err(InvalidArgument::new_err(
                "this worker is not connected: a subclass that defines __init__ must call super().__init__(endpoint, service=...)",
            )),
        }
    }

    /// Stops and disconnects: the broker is told DISCONNECT, so jobs this
    /// worker got but did not answer are requeued for other workers.
    fn finish(&self, py: Python<'_>) {
        self.stopped.store(true, Ordering::SeqCst);
        let taken = self.inner.lock().take();
        if let Some(w) = taken {
            w.stop();
            self.done_before.fetch_add(w.jobs_done(), Ordering::SeqCst);
            // Dropping the last reference joins the I/O thread (≤ ~100 ms).
            released(py, move || drop(w));
        }
    }

    /// Waits up to `limit` for a job or an idle spell, in GIL-free slices.
    fn wait(&self, py: Python<'_>, worker: &Arc<Worker>, limit: Duration) -> PyResult<Step> {
        let deadline = Instant::now() + limit;
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                return Ok(Step::Stopped);
            }
            let slice = deadline.saturating_duration_since(Instant::now()).min(SLICE);
            let w = worker.clone();
            let event = released(py, move || guard("Worker.next_event", || w.next_event(slice)));
            if let Err(e) = py.check_signals() {
                // Ctrl-C (or an exception from a signal handler): put back a job
                // taken in this very slice by disconnecting, then raise.
                self.finish(py);
                return Err(e);
            }
            match event {
                Ok(WorkerEvent::Job(job)) => return Ok(Step::Job(job)),
                Ok(WorkerEvent::Idle) => return Ok(Step::Idle),
                Ok(WorkerEvent::Timeout) => {
                    if Instant::now() >= deadline {
                        return Ok(Step::Nothing);
                    }
                }
                // Closed after a stop is the end of the loop; any other
                // Closed (a handle used in a forked child) is raised.
                Err(zmws::Error::Closed(_)) if self.stopped.load(Ordering::SeqCst) || worker.is_stopped() => {
                    return Ok(Step::Stopped)
                }
                Err(e) => return Err(to_py(e)),
            }
        }
    }

    /// Runs `work` for one job and sends its outcome.
    fn handle(slf: &Bound<'_, Self>, worker: &Arc<Worker>, job: Job) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        *this.current.lock() = Some((job.id.clone(), job.attempt));
        let param = to_param(py, &job.payload);
        let outcome = slf.call_method1("work", (job.id.as_str(), param));
        *this.current.lock() = None;
        let sent = match outcome {
            Ok(value) => match to_bytes(&value) {
                Ok(bytes) => guard("Worker.complete", || worker.complete(&job.id, &bytes)),
                Err(e) => {
                    let reason = format!("work() returned a value zmws cannot send: {}", exception_text(py, &e));
                    log_failure(py, &job.id, &reason, &e);
                    guard("Worker.fail", || worker.fail(&job.id, &reason, false))
                }
            },
            Err(e) if e.is_instance_of::<PyException>(py) => {
                let reason = exception_text(py, &e);
                let retryable = e.value(py).getattr("retryable").and_then(|v| v.is_truthy()).unwrap_or(false);
                log_failure(py, &job.id, &reason, &e);
                guard("Worker.fail", || worker.fail(&job.id, &reason, retryable))
            }
            Err(e) => {
                // KeyboardInterrupt, SystemExit, …: leave the job unanswered;
                // disconnecting hands it back to the broker for a retry.
                this.finish(py);
                return Err(e);
            }
        };
        sent.map_err(to_py)
    }

    /// One step: wait up to `limit`, then run a job or the idle hook.
    /// Returns false once the worker is stopped (it is then disconnected).
    fn step(slf: &Bound<'_, Self>, limit: Duration) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let Some(worker) = this.worker()? else {
            this.finish(py);
            return Ok(false);
        };
        let outcome = (|| -> PyResult<bool> {
            match this.wait(py, &worker, limit)? {
                Step::Job(job) => PyWorker::handle(slf, &worker, job)?,
                Step::Idle => {
                    slf.call_method0("idle")?;
                }
                Step::Nothing | Step::Stopped => {}
            }
            Ok(!(this.stopped.load(Ordering::SeqCst) || worker.is_stopped()))
        })();
        if !matches!(outcome, Ok(true)) && (outcome.is_ok() || this.stopped.load(Ordering::SeqCst)) {
            this.finish(py);
            // Ours is likely the last reference: dropping it joins the I/O
            // thread (and may wait for ZeroMQ's linger), so not under the GIL.
            released(py, move || drop(worker));
        }
        outcome
    }
}

impl Drop for PyWorker {
    fn drop(&mut self) {
        // Dropping the core worker joins its I/O thread; do it without the GIL.
        if let Some(w) = self.inner.get_mut().take() {
            w.stop();
            Python::attach(|py| released(py, move || drop(w)));
        }
    }
}

/// The reason sent to the broker for a failed job: the exception's text,
/// or its class name when the text is empty.
fn exception_text(py: Python<'_>, e: &PyErr) -> String {
    let text = e.value(py).str().map(|s| s.to_string()).unwrap_or_default();
    if !text.is_empty() {
        return text;
    }
    e.get_type(py).name().map(|n| n.to_string()).unwrap_or_else(|_| "error".into())
}

/// Logs a failed job with its traceback on the `zmws` logger at INFO level:
/// silent unless the program configures logging (a failure is an ordinary
/// outcome the client sees as `JobFailed`; it is not the worker's error).
fn log_failure(py: Python<'_>, job_id: &str, reason: &str, e: &PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py.import("logging")?.call_method1("getLogger", ("zmws",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", e.value(py))?;
        logger.call_method("info", ("job %s failed: %s", job_id, reason), Some(&kwargs))?;
        Ok(())
    })();
    if let Err(err) = logged {
        err.print(py);
    }
}

#[pymethods]
impl PyWorker {
    /// Accepts any arguments so that subclasses may define their own
    /// `__init__`; the configuration happens in `zmws.Worker.__init__`.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyWorker {
        PyWorker {
            inner: Mutex::new(None),
            stopped: AtomicBool::new(false),
            done_before: AtomicU64::new(0),
            current: Mutex::new(None),
            endpoints: Mutex::new(Vec::new()),
        }
    }

    /// Connects to the broker (called by `zmws.Worker.__init__`).
    #[pyo3(signature = (endpoint, service, capacity, heartbeat_ms, liveness, idle_after, reconnect_ms))]
    #[allow(clippy::too_many_arguments)]
    fn _connect(
        &self,
        py: Python<'_>,
        endpoint: &Bound<'_, PyAny>,
        service: String,
        capacity: &Bound<'_, PyAny>,
        heartbeat_ms: &Bound<'_, PyAny>,
        liveness: &Bound<'_, PyAny>,
        idle_after: &Bound<'_, PyAny>,
        reconnect_ms: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if self.inner.lock().is_some() {
            return Err(invalid("this worker is already connected"));
        }
        let capacity = int_in(capacity, "capacity", 1, u32::MAX as u64)? as u32;
        let heartbeat_ms = int_in(heartbeat_ms, "heartbeat_ms", 1, MAX_MS)?;
        let liveness = int_in(liveness, "liveness", 1, u32::MAX as u64)? as u32;
        // heartbeat_ms × idle_after must not overflow.
        let idle_after = int_in(idle_after, "idle_after", 1, 1_000_000)? as u32;
        let reconnect_ms = int_in(reconnect_ms, "reconnect_ms", 0, MAX_MS)?;
        let endpoints = crate::convert::endpoints(endpoint)?;
        let mut config = WorkerConfig::new("", &service);
        config.endpoints = endpoints.clone();
        config.capacity = capacity;
        config.heartbeat_ms = heartbeat_ms;
        config.liveness = liveness;
        config.idle_after = idle_after;
        config.reconnect_ms = reconnect_ms;
        let worker = released(py, move || guard("Worker()", move || Worker::with_config(config))).map_err(to_py)?;
        let mut inner = self.inner.lock();
        if inner.is_some() {
            return Err(invalid("this worker is already connected"));
        }
        *inner = Some(Arc::new(worker));
        *self.endpoints.lock() = endpoints;
        self.stopped.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Runs jobs until `stop()` or Ctrl-C (`KeyboardInterrupt` propagates).
    /// The worker is disconnected when `run()` returns or raises.
    fn run(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let _active = LoopGuard::enter();
        let result = loop {
            match PyWorker::step(slf, Duration::from_secs(3600)) {
                Ok(true) => continue,
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        slf.get().finish(py);
        result
    }

    /// One step of the loop: waits up to `timeout` seconds for a job (running
    /// `work`) or an idle spell (running `idle`). Returns False once stopped.
    #[pyo3(name = "loop", signature = (timeout = 0.1))]
    fn loop_(slf: &Bound<'_, Self>, timeout: f64) -> PyResult<bool> {
        let limit = timeout_secs(Some(timeout), "timeout")?;
        let _active = LoopGuard::enter();
        PyWorker::step(slf, limit)
    }

    /// Sends a partial result (progress) for the job `work` is running (or for `job_id`).
    #[pyo3(signature = (data, job_id = None))]
    fn partial(&self, data: &Bound<'_, PyAny>, job_id: Option<String>) -> PyResult<()> {
        let id = match job_id {
            Some(id) => id,
            None => self
                .current
                .lock()
                .as_ref()
                .map(|(id, _)| id.clone())
                .ok_or_else(|| invalid("partial() outside work(): no current job (pass job_id=...)"))?,
        };
        let bytes = to_bytes(data)?;
        let worker = self.inner.lock().clone().ok_or_else(|| Closed::new_err("the worker is not connected"))?;
        guard("Worker.partial", || worker.partial(&id, &bytes)).map_err(to_py)
    }

    /// Asks the worker to stop after the current job. Safe from any thread
    /// (and from signal handlers).
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(w) = self.inner.lock().as_ref() {
            w.stop();
        }
    }

    /// Stops and disconnects now (jobs not answered yet are requeued).
    fn close(&self, py: Python<'_>) {
        self.finish(py);
    }

    /// Whether `stop()` was called (or the worker ended).
    #[getter]
    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Whether the worker holds a broker connection.
    #[getter]
    fn connected(&self) -> bool {
        self.inner.lock().is_some()
    }

    /// The id of the job `work` is running, else None.
    #[getter]
    fn job_id(&self) -> Option<String> {
        self.current.lock().as_ref().map(|(id, _)| id.clone())
    }

    /// The attempt number (1 for the first run) of the current job, else None.
    #[getter]
    fn attempt(&self) -> Option<u32> {
        self.current.lock().as_ref().map(|(_, a)| *a)
    }

    /// Jobs answered (completed or failed) so far.
    #[getter]
    fn jobs_done(&self) -> u64 {
        let now = self.inner.lock().as_ref().map(|w| w.jobs_done()).unwrap_or(0);
        self.done_before.load(Ordering::SeqCst) + now
    }

    /// The broker endpoints, in failover order.
    #[getter]
    fn endpoints(&self) -> Vec<String> {
        self.endpoints.lock().clone()
    }
}
