//! The one error type of the library and its stable numeric codes.
//!
//! Every binding maps [`Error`] through [`Error::code`]: the C ABI returns the
//! number, PHP and Python raise the matching exception class.

use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Stable result codes shared by every binding. Numbers never change; retired
/// numbers stay reserved.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Success.
    Ok = 0,
    /// A wait ran past its deadline.
    Timeout = 1,
    /// No worker has ever offered the requested service.
    NoSuchService = 2,
    /// An argument was NULL, empty, not UTF-8 or otherwise unusable.
    InvalidArgument = 3,
    /// The job failed (worker FAIL, exception, or attempts exhausted).
    JobFailed = 4,
    /// The broker refused the job: its queue or a limit is full.
    QueueFull = 5,
    /// The handle was stopped or closed.
    Closed = 6,
    /// The job id is unknown (never existed or expired).
    NotFound = 7,
    /// The job has not finished yet.
    Pending = 8,
    /// The payload is larger than the broker accepts.
    TooLarge = 9,
    /// The peer sent something that does not follow the protocol.
    Protocol = 10,
    /// A bug: a panic was caught or an invariant broke.
    Internal = 11,
    /// A ZeroMQ or operating-system error.
    Io = 12,
    /// The worker loop reports a quiet spell (no job for several heartbeats).
    Idle = 13,
}

/// Everything that can go wrong in zmws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A wait ran past its deadline.
    Timeout(String),
    /// No worker has ever offered this service.
    NoSuchService(String),
    /// An argument was unusable.
    InvalidArgument(String),
    /// The job failed; the text is the reason.
    JobFailed(String),
    /// A broker limit refused the request.
    QueueFull(String),
    /// The handle is closed or stopping.
    Closed(String),
    /// Unknown job id.
    NotFound(String),
    /// The job is still queued or running.
    Pending(String),
    /// Payload over the broker's limit.
    TooLarge(String),
    /// Malformed message from a peer.
    Protocol(String),
    /// Internal error (caught panic, broken invariant).
    Internal(String),
    /// ZeroMQ / OS error.
    Io(String),
}

impl Error {
    /// The stable numeric code of this error.
    pub fn code(&self) -> Code {
        match self {
            Error::Timeout(_) => Code::Timeout,
            Error::NoSuchService(_) => Code::NoSuchService,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::JobFailed(_) => Code::JobFailed,
            Error::QueueFull(_) => Code::QueueFull,
            Error::Closed(_) => Code::Closed,
            Error::NotFound(_) => Code::NotFound,
            Error::Pending(_) => Code::Pending,
            Error::TooLarge(_) => Code::TooLarge,
            Error::Protocol(_) => Code::Protocol,
            Error::Internal(_) => Code::Internal,
            Error::Io(_) => Code::Io,
        }
    }

    /// The human-readable message without the category prefix.
    pub fn message(&self) -> &str {
        match self {
            Error::Timeout(m)
            | Error::NoSuchService(m)
            | Error::InvalidArgument(m)
            | Error::JobFailed(m)
            | Error::QueueFull(m)
            | Error::Closed(m)
            | Error::NotFound(m)
            | Error::Pending(m)
            | Error::TooLarge(m)
            | Error::Protocol(m)
            | Error::Internal(m)
            | Error::Io(m) => m,
        }
    }

    /// Builds the error that a broker status reply (`"404"`, `"500"`, …) stands for.
    pub fn from_status(status: &str, message: String) -> Error {
        match status {
            "404" => Error::NoSuchService(message),
            // No worker here: they moved to another broker (failback).
            "421" => Error::NoSuchService(message),
            "400" => Error::InvalidArgument(message),
            "410" => Error::NotFound(message),
            "413" => Error::TooLarge(message),
            "503" => Error::QueueFull(message),
            "504" => Error::Timeout(message),
            "300" => Error::Pending(message),
            "500" => Error::JobFailed(message),
            _ => Error::Protocol(format!("broker answered status {status}: {message}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Error::Timeout(_) => "timeout",
            Error::NoSuchService(_) => "no such service",
            Error::InvalidArgument(_) => "invalid argument",
            Error::JobFailed(_) => "job failed",
            Error::QueueFull(_) => "queue full",
            Error::Closed(_) => "closed",
            Error::NotFound(_) => "not found",
            Error::Pending(_) => "pending",
            Error::TooLarge(_) => "too large",
            Error::Protocol(_) => "protocol error",
            Error::Internal(_) => "internal error",
            Error::Io(_) => "i/o error",
        };
        // A broker's message may already name the kind ("queue full: 2 jobs
        // are already waiting"): say it once.
        let message = self.message();
        if message.strip_prefix(kind).is_some_and(|rest| rest.starts_with(':')) {
            f.write_str(message)
        } else {
            write!(f, "{kind}: {message}")
        }
    }
}

impl std::error::Error for Error {}

impl From<zmq::Error> for Error {
    fn from(e: zmq::Error) -> Self {
        match e {
            zmq::Error::ETERM => Error::Closed("the ZeroMQ context was terminated".into()),
            zmq::Error::EAGAIN => Error::Timeout("the socket would block".into()),
            other => Error::Io(format!("zeromq: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_kind_once() {
        assert_eq!(
            Error::QueueFull("queue full: 2 jobs are already waiting".into()).to_string(),
            "queue full: 2 jobs are already waiting"
        );
        assert_eq!(
            Error::QueueFull("the job store refuses writes".into()).to_string(),
            "queue full: the job store refuses writes"
        );
        assert_eq!(Error::Timeout("timeouts: 3".into()).to_string(), "timeout: timeouts: 3");
    }
}
