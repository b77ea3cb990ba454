//! `zmws._native`: the pyo3 module behind the `zmws` Python package.
//!
//! The public surface is the `zmws` package (`python/zmws/__init__.py`),
//! which re-exports these classes and subclasses the native `Worker`.

use pyo3::prelude::*;

mod broker;
mod client;
mod convert;
mod errors;
mod exit;
mod worker;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CORE_VERSION", zmws::VERSION)?;
    m.add_class::<broker::PyBroker>()?;
    m.add_class::<client::PyClient>()?;
    m.add_class::<worker::PyWorker>()?;
    m.add_function(wrap_pyfunction!(exit::_prepare_exit, m)?)?;
    m.add_function(wrap_pyfunction!(exit::_active_loops, m)?)?;
    errors::register(m)?;
    Ok(())
}
