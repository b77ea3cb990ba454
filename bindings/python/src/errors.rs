//! The exception hierarchy (`zmws.ZmwsError` and one subclass per core error
//! code) and the conversion from [`zmws::Error`].

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(zmws, ZmwsError, PyException, "Base class of every error raised by zmws.");
create_exception!(zmws, Timeout, ZmwsError, "A wait ran past its deadline (no answer, no result in time).");
create_exception!(zmws, NoSuchService, ZmwsError, "No worker has ever offered the requested service.");
create_exception!(zmws, InvalidArgument, ZmwsError, "An argument was empty, malformed or otherwise unusable.");
create_exception!(zmws, JobFailed, ZmwsError, "The job failed, ran out of attempts or was cancelled; see `.reason`.");
create_exception!(zmws, QueueFull, ZmwsError, "The broker refused the job: its queue or a limit is full.");
create_exception!(zmws, Closed, ZmwsError, "The client, worker or broker was stopped or closed.");
create_exception!(zmws, NotFound, ZmwsError, "The job id is unknown (never existed or expired).");
create_exception!(zmws, Pending, ZmwsError, "The job has not finished yet.");
create_exception!(zmws, TooLarge, ZmwsError, "The payload is larger than the broker accepts.");
create_exception!(zmws, ProtocolError, ZmwsError, "A peer sent something that does not follow the protocol.");
create_exception!(zmws, InternalError, ZmwsError, "A bug in zmws (for instance a caught Rust panic).");
create_exception!(zmws, IoError, ZmwsError, "A ZeroMQ or operating-system error.");

/// Converts a core error into the matching Python exception. `JobFailed`
/// exposes the worker's reason as `.reason` (a property
/// added in `zmws/__init__.py`); every class has a numeric `.code`.
pub fn to_py(e: zmws::Error) -> PyErr {
    use zmws::Error as E;
    let msg = e.message().to_string();
    match &e {
        E::Timeout(_) => Timeout::new_err(msg),
        E::NoSuchService(_) => NoSuchService::new_err(msg),
        E::InvalidArgument(_) => InvalidArgument::new_err(msg),
        E::JobFailed(_) => JobFailed::new_err(msg),
        E::QueueFull(_) => QueueFull::new_err(msg),
        E::Closed(_) => Closed::new_err(msg),
        E::NotFound(_) => NotFound::new_err(msg),
        E::Pending(_) => Pending::new_err(msg),
        E::TooLarge(_) => TooLarge::new_err(msg),
        E::Protocol(_) => ProtocolError::new_err(msg),
        E::Internal(_) => InternalError::new_err(msg),
        E::Io(_) => IoError::new_err(msg),
    }
}

/// Shorthand for an `InvalidArgument` error.
pub fn invalid(msg: impl Into<String>) -> PyErr {
    InvalidArgument::new_err(msg.into())
}

/// Registers the exception classes (with their numeric `code`) in the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ZmwsError", py.get_type::<ZmwsError>())?;
    let classes = [
        ("Timeout", py.get_type::<Timeout>(), zmws::Code::Timeout),
        ("NoSuchService", py.get_type::<NoSuchService>(), zmws::Code::NoSuchService),
        ("InvalidArgument", py.get_type::<InvalidArgument>(), zmws::Code::InvalidArgument),
        ("JobFailed", py.get_type::<JobFailed>(), zmws::Code::JobFailed),
        ("QueueFull", py.get_type::<QueueFull>(), zmws::Code::QueueFull),
        ("Closed", py.get_type::<Closed>(), zmws::Code::Closed),
        ("NotFound", py.get_type::<NotFound>(), zmws::Code::NotFound),
        ("Pending", py.get_type::<Pending>(), zmws::Code::Pending),
        ("TooLarge", py.get_type::<TooLarge>(), zmws::Code::TooLarge),
        ("ProtocolError", py.get_type::<ProtocolError>(), zmws::Code::Protocol),
        ("InternalError", py.get_type::<InternalError>(), zmws::Code::Internal),
        ("IoError", py.get_type::<IoError>(), zmws::Code::Io),
    ];
    for (name, class, code) in classes {
        class.setattr("code", code as i32)?;
        m.add(name, class)?;
    }
    Ok(())
}
