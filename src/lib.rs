//! zmws — the ZeroMQ Work Server as an embeddable library.
//!
//! * [`broker`]: the job broker (sockets) around [`engine`] (state machine);
//! * [`client`]: submit jobs, wait for results, list jobs and workers;
//! * [`worker`]: offer a service and pull jobs;
//! * [`protocol`]: the Majordomo (RFC 7 / RFC 18) wire codec.

#![warn(missing_docs)]

pub mod broker;
pub mod client;
mod committer;
pub mod config;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod fork;
pub mod gateway;
pub mod job;
pub mod job_table;
pub mod protocol;
pub mod store;
pub mod supervisor;
pub mod worker;

pub use broker::{Broker, BrokerConfig, BrokerHandle, Endpoints};
pub use client::Client;
pub use engine::EngineConfig;
pub use error::{Code, Error, Result};
pub use job::{JobId, JobList, JobState, JobStatus, WorkerInfo};
pub use worker::{Job, StopHandle, Worker, WorkerConfig, WorkerEvent};

/// `now + timeout`, or a point far in the future when that would overflow
/// (a caller may pass `Duration::MAX` for "wait forever").
pub(crate) fn deadline_after(timeout: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 24 * 3600))
}

/// The library version (`CARGO_PKG_VERSION`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
