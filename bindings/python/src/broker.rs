//! `zmws.Broker`: a broker running on a background thread of this process.

use std::time::Instant;

use parking_lot::Mutex;
use pyo3::prelude::*;
use zmws::{Broker, BrokerConfig, BrokerHandle, Endpoints};

use crate::convert::{guard, SLICE};
use crate::errors::{invalid, to_py};
use crate::exit::released;

/// A zmws broker. `start()` binds its sockets (and opens the durable job
/// store when `data_dir` is given) and runs it on a background thread;
/// `stop()` ends it. Use `"tcp://127.0.0.1:*"` for a free port and
/// read the bound endpoint back from `client_endpoint` / `worker_endpoint`.
#[pyclass(name = "Broker", module = "zmws._native", subclass, frozen)]
pub struct PyBroker {
    config: BrokerConfig,
    running: Mutex<Option<(BrokerHandle, Endpoints)>>,
}

impl PyBroker {
    fn bound<T>(&self, f: impl FnOnce(&Endpoints) -> T) -> Option<T> {
        self.running.lock().as_ref().map(|(_, e)| f(e))
    }

    fn stop_inner(&self, py: Python<'_>) -> PyResult<()> {
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
        heartbeat_ms: Option<u64>,
        liveness: Option<u32>,
        job_timeout_ms: Option<u64>,
        max_attempts: Option<u32>,
        result_ttl_ms: Option<u64>,
        max_finished: Option<usize>,
        history_len: Option<usize>,
        max_payload: Option<usize>,
        max_queued: Option<usize>,
        max_workers_per_service: Option<usize>,
        list_limit: Option<usize>,
        hwm: Option<i32>,
        data_dir: Option<std::path::PathBuf>,
        spin_us: Option<u32>,
    ) -> PyResult<PyBroker> {
        let mut config = BrokerConfig { client_endpoint, worker_endpoint, news_endpoint, ..BrokerConfig::default() };
        let e = &mut config.engine;
        if let Some(v) = heartbeat_ms {
            e.heartbeat_ms = v.max(1);
        }
        if let Some(v) = liveness {
            e.liveness = v.max(1);
        }
        if let Some(v) = job_timeout_ms {
            e.job_timeout_ms = v.max(1);
        }
        if let Some(v) = max_attempts {
            e.max_attempts = v.max(1);
        }
        if let Some(v) = result_ttl_ms {
            e.result_ttl_ms = v;
        }
        if let Some(v) = max_finished {
            e.max_finished = v;
        }
        if let Some(v) = history_len {
            e.history_len = v;
        }
        if let Some(v) = max_payload {
            e.max_payload = v;
        }
        if let Some(v) = max_queued {
            e.max_queued = v;
        }
        if let Some(v) = max_workers_per_service {
            e.max_workers_per_service = v;
        }
        if let Some(v) = list_limit {
            e.list_limit = v;
        }
        if let Some(v) = hwm {
            config.hwm = v;
        }
        config.data_dir = data_dir;
        if let Some(v) = spin_us {
            if v > zmws::broker::MAX_SPIN_US {
                return Err(invalid(format!("spin_us must be at most {}", zmws::broker::MAX_SPIN_US)));
            }
            config.spin_us = v;
        }
        Ok(PyBroker { config, running: Mutex::new(None) })
    }

    /// Binds the sockets and starts the broker thread. Does nothing if it
    /// already runs. Bind errors (port in use, bad endpoint) raise `IoError`.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        if self.running.lock().is_some() {
            return Ok(());
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
        let mut running = self.running.lock();
        if running.is_some() {
            // Another thread started it meanwhile (only possible with "*"
            // ports): keep theirs, stop ours.
            drop(running);
            released(py, move || guard("Broker.stop", move || handle.stop())).map_err(to_py)?;
            return Ok(());
        }
        *running = Some((handle, endpoints));
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
