//! The one error type of `warren ctl` and its mapping to exit codes (rabbitmqctl's, from
//! sysexits.h: 64 usage, 65 data, 67 no such user, 69 unavailable, 70 software, 74 I/O,
//! 77 no permission).

use std::net::SocketAddr;

/// Why a `warren ctl` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Wrong arguments that clap could not catch (a bad column, a definition that is not JSON).
    #[error("{message}")]
    Usage { command: String, message: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("{addr} did not answer within {secs} s")]
    Timeout { addr: SocketAddr, secs: u64 },
    #[error("{addr} answered, but not with AMQP 0-9-1 connection.start")]
    NotAmqp { addr: SocketAddr },
    /// The management API could not be reached (refused, timed out, not HTTP).
    #[error("unable to reach the management HTTP API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The API answered with an error status; `reason` is its `reason` field.
    #[error("{reason}")]
    Api { status: u16, reason: String },
    /// A user named in the command does not exist.
    #[error("{0}")]
    NoUser(String),
    /// A virtual host named in the command does not exist.
    #[error("{0}")]
    NoVhost(String),
    /// Another object named in the command does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The object to create exists already.
    #[error("{0}")]
    Exists(String),
    /// The API answered 2xx with something this tool cannot read.
    #[error("unexpected answer from {path}: {reason}")]
    BadResponse { path: String, reason: String },
    /// Input data (a definitions file) is not what it should be.
    #[error("{0}")]
    Data(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl CtlError {
    /// The process exit code, as rabbitmqctl chooses them.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage { .. } => 64,
            CtlError::Data(_) | CtlError::NoVhost(_) => 65,
            CtlError::NoUser(_) => 67,
            CtlError::Connect { .. }
            | CtlError::Timeout { .. }
            | CtlError::NotAmqp { .. }
            | CtlError::Unreachable { .. }
            | CtlError::NotFound(_) => 69,
            CtlError::Api { status: 401 | 403, .. } => 77,
            CtlError::Api { .. } => 69,
            CtlError::Exists(_) | CtlError::BadResponse { .. } => 70,
            CtlError::Io { .. } => 74,
        }
    }

    /// Replaces a 404 from the API with a clearer error (rabbitmqctl's text for the object).
    pub fn if_not_found(self, f: impl FnOnce() -> CtlError) -> CtlError {
        match self {
            CtlError::Api { status: 404, .. } => f(),
            e => e,
        }
    }

    /// What goes to standard error: rabbitmqctl puts `Error:` on a line of its own before a
    /// command's failure, and on the same line before a connectivity failure.
    pub fn report(&self) -> String {
        match self {
            CtlError::Usage { message, .. } => format!("Error (argument validation): {message}"),
            CtlError::Connect { .. }
            | CtlError::Timeout { .. }
            | CtlError::NotAmqp { .. }
            | CtlError::Unreachable { .. } => format!("Error: {self}"),
            e => format!("Error:\n{e}"),
        }
    }
}
