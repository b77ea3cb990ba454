//! `zmws.Client`: submits jobs and waits for results.
//!
//! Every blocking request runs on a short-lived helper thread that owns the
//! core client for the duration of the request, while the calling thread waits
//! for it without the GIL in slices of at most 100 ms, checking for signals in
//! between. So other Python threads keep running, and Ctrl-C interrupts a
//! `call` or `map` promptly even though the core call itself cannot be
//! interrupted: the interrupted request is abandoned (it finishes or times out
//! on its own thread) and the `Client` continues on a fresh connection.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyMemoryView, PyString, PyTuple};
use zmws::{Client, JobList};

use crate::convert::{block_signals, guard, json_loads, timeout, to_bytes, SLICE};
use crate::errors::{invalid, to_py, Closed, InternalError, IoError};
use crate::exit::released;

type Shared = Arc<Mutex<Client>>;

enum Msg<T> {
    Partial(Vec<u8>),
    Done(zmws::Result<T>),
}

/// A connection to one broker, or several with failover.
#[pyclass(name = "Client", module = "zmws", frozen)]
pub struct PyClient {
    endpoints: Vec<String>,
    request_timeout: Mutex<Duration>,
    slot: Mutex<Option<Shared>>,
    /// Checked before the core client's lock: a call running on another
    /// thread at fork() leaves that lock held forever in the child.
    origin: zmws::fork::Origin,
}

fn connect(endpoints: &[String], request_timeout: Duration) -> zmws::Result<Shared> {
    let mut c = Client::connect_many(endpoints)?;
    c.set_request_timeout(request_timeout);
    Ok(Arc::new(Mutex::new(c)))
}

impl PyClient {
    fn shared(&self) -> PyResult<Shared> {
        self.origin.check("Client").map_err(to_py)?;
        self.slot.lock().clone().ok_or_else(|| Closed::new_err("the client is closed"))
    }

    /// Gives up on the request running on a helper thread: later requests use
    /// a fresh connection instead of queueing behind it.
    fn abandon(&self) {
        let timeout = *self.request_timeout.lock();
        if let Ok(fresh) = connect(&self.endpoints, timeout) {
            let mut slot = self.slot.lock();
            if slot.is_some() {
                *slot = Some(fresh);
            }
        }
    }

    /// Runs `f` with the core client on a helper thread and waits for it
    /// without the GIL, handing partial replies to `on_partial` on this thread.
    fn blocking<T, F>(&self, py: Python<'_>, on_partial: Option<&Bound<'_, PyAny>>, f: F) -> PyResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Client, &dyn Fn(&[u8])) -> zmws::Result<T> + Send + 'static,
    {
        let shared = self.shared()?;
        // The request timeout as set now: the setter only stores it (it must
        // not wait for a request running on another thread), it is applied here.
        let request_timeout = *self.request_timeout.lock();
        let (tx, rx) = mpsc::channel::<Msg<T>>();
        let forward = on_partial.is_some();
        std::thread::Builder::new()
            .name("zmws-client-call".into())
            .spawn(move || {
                block_signals();
                let partial_tx = tx.clone();
                let partial = move |p: &[u8]| {
                    if forward {
                        let _ = partial_tx.send(Msg::Partial(p.to_vec()));
                    }
                };
                let out = guard("zmws client", || {
                    let mut client = shared.lock();
                    client.set_request_timeout(request_timeout);
                    f(&mut client, &partial)
                });
                let _ = tx.send(Msg::Done(out));
            })
            .map_err(|e| IoError::new_err(format!("cannot start a thread for the request: {e}")))?;
        let mut rx = rx;
        loop {
            let (got, back) = released(py, move || {
                let got = rx.recv_timeout(SLICE);
                (got, rx)
            });
            rx = back;
            match got {
                Ok(Msg::Done(result)) => return result.map_err(to_py),
                Ok(Msg::Partial(data)) => {
                    if let Some(cb) = on_partial {
                        if let Err(e) = cb.call1((PyBytes::new(py, &data),)) {
                            self.abandon();
                            return Err(e);
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        self.abandon();
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(InternalError::new_err("the request thread ended without an answer"))
                }
            }
        }
    }
}

fn check_service(service: &str) -> PyResult<()> {
    if service.is_empty() || service.len() > 255 {
        return Err(invalid("service name must be 1 to 255 bytes"));
    }
    Ok(())
}

/// Refuses a single str or bytes where a sequence of payloads belongs
/// (iterating it would make one job per character or byte).
fn check_sequence(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    if obj.is_instance_of::<PyString>()
        || obj.is_instance_of::<PyBytes>()
        || obj.is_instance_of::<PyByteArray>()
        || obj.is_instance_of::<PyMemoryView>()
    {
        return Err(PyTypeError::new_err(format!("{what} must be a sequence of payloads, not a single str or bytes")));
    }
    Ok(())
}

#[pymethods]
impl PyClient {
    #[new]
    #[pyo3(signature = (endpoint = None, *, request_timeout = 5.0))]
    fn new(py: Python<'_>, endpoint: Option<&Bound<'_, PyAny>>, request_timeout: f64) -> PyResult<PyClient> {
        let endpoints = match endpoint {
            Some(e) => crate::convert::endpoints(e)?,
            None => vec!["tcp://127.0.0.1:5555".to_string()],
        };
        let rt = timeout(Some(request_timeout), "request_timeout")?.max(Duration::from_millis(1));
        // Without the GIL: with several endpoints, connecting waits up to
        // 1 s for the first broker.
        let shared = crate::exit::released(py, || guard("Client()", || connect(&endpoints, rt))).map_err(to_py)?;
        Ok(PyClient {
            endpoints,
            request_timeout: Mutex::new(rt),
            slot: Mutex::new(Some(shared)),
            origin: zmws::fork::Origin::here(),
        })
    }

    /// Submits a job and returns its id (32 hex characters) once the broker
    /// accepted it. With an idempotency `key`, submitting the same key again
    /// (while that job is known to the broker) returns the same id.
    #[pyo3(signature = (service, payload = None, key = None))]
    fn submit(
        &self,
        py: Python<'_>,
        service: String,
        payload: Option<&Bound<'_, PyAny>>,
        key: Option<String>,
    ) -> PyResult<String> {
        check_service(&service)?;
        let payload = match payload {
            Some(p) => to_bytes(p)?,
            None => Vec::new(),
        };
        let id = self.blocking(py, None, move |c, _| match key {
            Some(k) => c.submit_unique(&service, &payload, &k),
            None => c.submit(&service, &payload),
        })?;
        Ok(id.to_string())
    }

    /// Submits one job per payload in a single request and returns their ids
    /// (32 hex characters each) in input order, once the broker accepted them
    /// all; it accepts all of them or none. At most 10,000 payloads; an empty
    /// sequence returns `[]` without contacting the broker.
    #[pyo3(signature = (service, payloads), text_signature = "(self, service, payloads)")]
    fn submit_batch(&self, py: Python<'_>, service: String, payloads: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        check_service(&service)?;
        check_sequence(payloads, "payloads")?;
        let mut items = Vec::new();
        for item in payloads.try_iter()? {
            items.push(to_bytes(&item?)?);
        }
        if items.is_empty() {
            self.shared()?; // a closed client still raises Closed
            return Ok(Vec::new());
        }
        let ids = self.blocking(py, None, move |c, _| c.submit_batch(&service, &items))?;
        Ok(ids.iter().map(|id| id.to_string()).collect())
    }

    /// Runs a job and waits up to `timeout` seconds for its result (bytes).
    /// `on_partial(data: bytes)` is called, on this thread, for every partial reply.
    #[pyo3(
        signature = (service, payload = None, timeout = Some(30.0), on_partial = None),
        text_signature = "(self, service, payload=None, timeout=30.0, on_partial=None)"
    )]
    fn call<'py>(
        &self,
        py: Python<'py>,
        service: String,
        payload: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
        on_partial: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        check_service(&service)?;
        let payload = match payload {
            Some(p) => to_bytes(p)?,
            None => Vec::new(),
        };
        let limit = crate::convert::timeout(timeout, "timeout")?;
        let on_partial = on_partial.filter(|cb| !cb.is_none());
        if let Some(cb) = on_partial {
            if !cb.is_callable() {
                return Err(pyo3::exceptions::PyTypeError::new_err("on_partial must be callable"));
            }
        }
        let result = self.blocking(py, on_partial, move |c, partial| {
            c.call_with_partials(&service, &payload, limit, &mut |p| partial(p))
        })?;
        Ok(PyBytes::new(py, &result))
    }

    /// Runs one job per item (many in flight) and returns the results in
    /// input order. `timeout` bounds the whole batch. The first failure (in
    /// input order) is raised, with its position in `.index`; with
    /// `return_exceptions=True` failures are returned in place instead.
    #[pyo3(
        signature = (service, items, timeout = Some(300.0), return_exceptions = false),
        text_signature = "(self, service, items, timeout=300.0, return_exceptions=False)"
    )]
    fn map<'py>(
        &self,
        py: Python<'py>,
        service: String,
        items: &Bound<'py, PyAny>,
        timeout: Option<f64>,
        return_exceptions: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        check_service(&service)?;
        check_sequence(items, "items")?;
        let limit = crate::convert::timeout(timeout, "timeout")?;
        let mut payloads = Vec::new();
        for item in items.try_iter()? {
            payloads.push(to_bytes(&item?)?);
        }
        let outcomes = self.blocking(py, None, move |c, _| c.batch(&service, &payloads, limit))?;
        let out = PyList::empty(py);
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(bytes) => out.append(PyBytes::new(py, &bytes))?,
                Err(e) => {
                    let err = to_py(e);
                    err.value(py).setattr("index", i)?;
                    if !return_exceptions {
                        return Err(err);
                    }
                    out.append(err.value(py))?;
                }
            }
        }
        Ok(out)
    }

    /// The job's status as a dict (`job_id`, `service`, `state`, `attempts`, …).
    fn status<'py>(&self, py: Python<'py>, job_id: String) -> PyResult<Bound<'py, PyAny>> {
        let text = self.blocking(py, None, move |c, _| c.status_json(&job_id))?;
        json_loads(py, text.as_bytes())
    }

    /// The result of a finished job (bytes). Raises `Pending` while it runs,
    /// `JobFailed` if it failed, `NotFound` for unknown ids.
    fn result<'py>(&self, py: Python<'py>, job_id: String) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.blocking(py, None, move |c, _| c.result(&job_id))?;
        Ok(PyBytes::new(py, &data))
    }

    /// Cancels a queued or running job.
    fn cancel(&self, py: Python<'_>, job_id: String) -> PyResult<()> {
        self.blocking(py, None, move |c, _| c.cancel(&job_id))
    }

    /// A job listing: `"queued"`, `"active"` or `"history"`, as a list of dicts.
    #[pyo3(signature = (kind = "queued"))]
    fn jobs<'py>(&self, py: Python<'py>, kind: &str) -> PyResult<Bound<'py, PyAny>> {
        let list = JobList::parse(kind)
            .ok_or_else(|| invalid(format!("kind must be 'queued', 'active' or 'history', not '{kind}'")))?;
        let text = self.blocking(py, None, move |c, _| c.jobs_json(list))?;
        json_loads(py, text.as_bytes())
    }

    /// The live workers as a list of dicts (`worker`, `service`, `state`, …).
    fn workers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = self.blocking(py, None, |c, _| c.workers_json())?;
        json_loads(py, text.as_bytes())
    }

    /// Every service ever offered, with queue depth and counters.
    fn services<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = self.blocking(py, None, |c, _| c.services_json())?;
        json_loads(py, text.as_bytes())
    }

    /// Whether at least one live worker offers `service` (MMI).
    fn service_available(&self, py: Python<'_>, service: String) -> PyResult<bool> {
        self.blocking(py, None, move |c, _| c.service_available(&service))
    }

    /// The broker endpoint in use now.
    #[getter]
    fn endpoint(&self) -> PyResult<String> {
        let shared = self.shared()?;
        let c = shared.try_lock();
        // While a request runs the core client is busy; report the first endpoint then.
        Ok(c.map(|c| c.endpoint().to_string()).unwrap_or_else(|| self.endpoints[0].clone()))
    }

    /// Every endpoint given, in failover order.
    #[getter]
    fn endpoints(&self) -> Vec<String> {
        self.endpoints.clone()
    }

    /// How long administrative requests (submit, status, …) wait for a
    /// broker before failing over, in seconds. Setting it never waits: a
    /// request already running (on another thread) keeps the old value, the
    /// next request uses the new one.
    #[getter]
    fn get_request_timeout(&self) -> f64 {
        self.request_timeout.lock().as_secs_f64()
    }

    #[setter]
    fn set_request_timeout(&self, seconds: f64) -> PyResult<()> {
        let rt = timeout(Some(seconds), "request_timeout")?.max(Duration::from_millis(1));
        *self.request_timeout.lock() = rt;
        Ok(())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.slot.lock().is_none()
    }

    /// Closes the connection; further requests raise `Closed`.
    fn close(&self, py: Python<'_>) {
        let taken = self.slot.lock().take();
        // Dropping the last reference closes the sockets (linger 0); a
        // request still running on a helper thread keeps its own reference.
        released(py, move || drop(taken));
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "open" };
        format!("<zmws.Client {state} endpoints={}>", self.endpoints.join(","))
    }
}
