//! `zmws.Broker`: a broker running on a background thread of this process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;
use zmws::{Broker, BrokerConfig, BrokerHandle, Endpoints};

use crate::convert::{guard, int_in, MAX_MS, SLICE};
use crate::errors::to_py;
use crate::exit::released;

/// A zmws broker. `start()` binds its sockets (and opens the durable job
/// store when `data_dir` is given) and runs it on a background thread;
/// `stop()` ends it. Use `"tcp://127.0.0.1:*"` for a free port and
/// read the bound endpoint back from `client_endpoint` / `worker_endpoint`.
#[pyclass(name = "Broker", module = "zmws._native", subclass, frozen)]
pub struct PyBroker {
    config: BrokerConfig,
    running: Mutex<Option<(BrokerHandle, Endpoints)>>,
    /// A start or stop is in progress (see [`PyBroker::one_at_a_time`]).
    changing: AtomicBool,
}

/// Marks a start or stop in progress until dropped.
struct Changing<'a>(&'a AtomicBool);

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Largest byte or job count accepted (the C API's limit for sizes).
const MAX_COUNT: u64 = 1 << 40;

/// An optional integer option in `min..=max`; `None` keeps the default.
fn opt(v: Option<&Bound<'_, PyAny>>, what: &str, min: u64, max: u64) -> PyResult<Option<u64>> {
    v.filter(|v| !v.is_none()).map(|v| int_in(v, what, min, max)).transpose()
}

impl PyBroker {
    fn bound<T>(&self, f: impl FnOnce(&Endpoints) -> T) -> Option<T> {
        self.running.lock().as_ref().map(|(_, e)| f(e))
    }

    /// Waits, without the GIL, until no other thread is starting or
    /// stopping this broker: one start or stop at a time, so a start never
    /// finds the job store still held by a broker being stopped, and two
    /// starts never race for it. (A plain lock held across the GIL release
    /// could deadlock against a thread that holds the GIL and waits for it.)
    fn one_at_a_time(&self, py: Python<'_>) -> Changing<'_> {
        let flag = &self.changing;
        released(py, move || {
            while flag.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Changing(flag)
    }

    fn stop_inner(&self, py: Python<'_>) -> PyResult<()> {
        let _turn = self.one_at_a_time(py);
        let taken = self.running.lock().take();
        if let Some((handle, _)) = taken {
            released(py, move || guard("Broker.stop", move || handle.stop())).map_err(to_py)?;
        }
        Ok(())
    }
}

#[pymethods]
impl PyBroker {
    #[new]
    #[pyo3(signature = (
        client_endpoint = "tcp://127.0.0.1:5555".to_string(),
        worker_endpoint = "tcp://127.0.0.1:5556".to_string(),
        news_endpoint = Some("tcp://127.0.0.1:5557".to_string()),
        *,
        heartbeat_ms = None,
        liveness = None,
        job_timeout_ms = None,
        max_attempts = None,
        result_ttl_ms = None,
        max_finished = None,
        history_len = None,
        max_payload = None,
        max_queued = None,
        max_workers_per_service = None,
        list_limit = None,
        hwm = None,
        data_dir = None,
        spin_us = None,
    ))]
    #[pyo3(
        text_signature = "(client_endpoint='tcp://127.0.0.1:5555', worker_endpoint='tcp://127.0.0.1:5556', news_endpoint='tcp://127.0.0.1:5557', *, heartbeat_ms=None, liveness=None, job_timeout_ms=None, max_attempts=None, result_ttl_ms=None, max_finished=None, history_len=None, max_payload=None, max_queued=None, max_workers_per_service=None, list_limit=None, hwm=None, data_dir=None, spin_us=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        client_endpoint: String,
        worker_endpoint: String,
        news_endpoint: Option<String>,
        heartbeat_ms: Option<&Bound<'_, PyAny>>,
        liveness: Option<&Bound<'_, PyAny>>,
        job_timeout_ms: Option<&Bound<'_, PyAny>>,
        max_attempts: Option<&Bound<'_, PyAny>>,
        result_ttl_ms: Option<&Bound<'_, PyAny>>,
        max_finished: Option<&Bound<'_, PyAny>>,
        history_len: Option<&Bound<'_, PyAny>>,
        max_payload: Option<&Bound<'_, PyAny>>,
        max_queued: Option<&Bound<'_, PyAny>>,
        max_workers_per_service: Option<&Bound<'_, PyAny>>,
        list_limit: Option<&Bound<'_, PyAny>>,
        hwm: Option<&Bound<'_, PyAny>>,
        data_dir: Option<std::path::PathBuf>,
        spin_us: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyBroker> {
        // The same limits as the C API's zmws_broker_set_* (and the config
        // file's for the options C lacks); None keeps the default.
        let mut config = BrokerConfig { client_endpoint, worker_endpoint, news_endpoint, ..BrokerConfig::default() };
        let e = &mut config.engine;
        if let Some(v) = opt(heartbeat_ms, "heartbeat_ms", 1, MAX_MS)? {
            e.heartbeat_ms = v;
        }
        if let Some(v) = opt(liveness, "liveness", 1, u32::MAX as u64)? {
            e.liveness = v as u32;
        }
        if let Some(v) = opt(job_timeout_ms, "job_timeout_ms", 1, MAX_MS)? {
            e.job_timeout_ms = v;
        }
        if let Some(v) = opt(max_attempts, "max_attempts", 1, u32::MAX as u64)? {
            e.max_attempts = v as u32;
        }
        if let Some(v) = opt(result_ttl_ms, "result_ttl_ms", 1, MAX_MS)? {
            e.result_ttl_ms = v;
        }
        if let Some(v) = opt(max_finished, "max_finished", 0, MAX_COUNT)? {
            e.max_finished = v as usize;
        }
        if let Some(v) = opt(history_len, "history_len", 0, MAX_COUNT)? {
            e.history_len = v as usize;
        }
        if let Some(v) = opt(max_payload, "max_payload", 1, MAX_COUNT)? {
            e.max_payload = v as usize;
        }
        if let Some(v) = opt(max_queued, "max_queued", 1, MAX_COUNT)? {
            e.max_queued = v as usize;
        }
        if let Some(v) = opt(max_workers_per_service, "max_workers_per_service", 1, MAX_COUNT)? {
            e.max_workers_per_service = v as usize;
        }
        if let Some(v) = opt(list_limit, "list_limit", 0, MAX_COUNT)? {
            e.list_limit = v as usize;
        }
        if let Some(v) = opt(hwm, "hwm", 1, i32::MAX as u64)? {
            config.hwm = v as i32;
        }
        config.data_dir = data_dir;
        if let Some(v) = opt(spin_us, "spin_us", 0, zmws::broker::MAX_SPIN_US as u64)? {
            config.spin_us = v as u32;
        }
        Ok(PyBroker { config, running: Mutex::new(None), changing: AtomicBool::new(false) })
    }

    /// Binds the sockets and starts the broker thread. Does nothing if it
    /// already runs. Bind errors (port in use, bad endpoint) raise `IoError`.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        if self.running.lock().is_some() {
            return Ok(());
        }
        let _turn = self.one_at_a_time(py);
        if self.running.lock().is_some() {
            return Ok(()); // another thread started it meanwhile
        }
        // No lock is held while the GIL is released (that could deadlock
        // against a thread holding the GIL and waiting for the lock).
        let config = self.config.clone();
        let (handle, endpoints) = released(py, move || {
            guard("Broker.start", move || {
                let broker = Broker::bind(config)?;
                let endpoints = broker.endpoints().clone();
                Ok((broker.start()?, endpoints))
            })
        })
        .map_err(to_py)?;
        *self.running.lock() = Some((handle, endpoints));
        Ok(())
    }

    /// Stops the broker thread (pending replies get half a second to go out).
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.stop_inner(py)
    }

    /// Starts the broker if needed and blocks until `stop()` is called from
    /// another thread or Ctrl-C (`KeyboardInterrupt` is raised after the broker
    /// stopped). `timeout` (seconds) bounds the wait; `None` runs forever.
    #[pyo3(signature = (timeout = None))]
    fn run(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let limit = crate::convert::timeout(timeout, "timeout")?;
        self.start(py)?;
        let started = Instant::now();
        while self.running.lock().is_some() && started.elapsed() < limit {
            released(py, || std::thread::sleep(SLICE.min(limit.saturating_sub(started.elapsed()))));
            if let Err(e) = py.check_signals() {
                self.stop_inner(py)?;
                return Err(e);
            }
        }
        self.stop_inner(py)
    }

    /// Whether the broker thread runs.
    #[getter]
    fn running(&self) -> bool {
        self.running.lock().is_some()
    }

    /// Where clients connect: the bound endpoint while running, else the configured one.
    #[getter]
    fn client_endpoint(&self) -> String {
        self.bound(|e| e.client.clone()).unwrap_or_else(|| self.config.client_endpoint.clone())
    }

    /// Where workers connect: the bound endpoint while running, else the configured one.
    #[getter]
    fn worker_endpoint(&self) -> String {
        self.bound(|e| e.worker.clone()).unwrap_or_else(|| self.config.worker_endpoint.clone())
    }

    /// Where event subscribers connect (`None` when publishing is off).
    #[getter]
    fn news_endpoint(&self) -> Option<String> {
        self.bound(|e| e.news.clone()).unwrap_or_else(|| self.config.news_endpoint.clone())
    }

    /// The heartbeat interval in milliseconds (workers must use the same).
    #[getter]
    fn heartbeat_ms(&self) -> u64 {
        self.config.engine.heartbeat_ms
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().start(slf.py())?;
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.stop_inner(py)?;
        Ok(false)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = slf.get();
        let name = slf.get_type().qualname()?;
        Ok(match this.bound(|e| (e.client.clone(), e.worker.clone())) {
            Some((c, w)) => format!("<{name} running clients={c} workers={w}>"),
            None => format!(
                "<{name} stopped clients={} workers={}>",
                this.config.client_endpoint, this.config.worker_endpoint
            ),
        })
    }
}

impl Drop for PyBroker {
    fn drop(&mut self) {
        // Dropping the handle stops and joins the broker thread (it never
        // needs the GIL); let other Python threads run meanwhile.
        if let Some(running) = self.running.get_mut().take() {
            Python::attach(|py| released(py, move || drop(running)));
        }
    }
}
