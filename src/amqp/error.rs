//! Wire-level errors and their single mapping onto `channel.close` / `connection.close`.

use crate::broker::{self, ReplyCode};

/// An error to report to the client: soft codes close the channel, hard codes (or any error
/// on channel 0) close the connection, as RabbitMQ's `map_exception/3`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct AmqpError {
    pub code: ReplyCode,
    /// The full reply text, e.g. `NOT_FOUND - no queue 'x' in vhost '/'`.
    pub text: String,
    /// The method that caused it (0/0 when none).
    pub class_id: u16,
    pub method_id: u16,
}

impl AmqpError {
    pub fn new(code: ReplyCode, detail: impl AsRef<str>) -> Self {
        Self { code, text: format!("{} - {}", code.name(), detail.as_ref()), class_id: 0, method_id: 0 }
    }

    /// Attaches the failing method's ids.
    pub fn at(mut self, class_id: u16, method_id: u16) -> Self {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }

    pub fn is_hard(&self) -> bool {
        self.code.is_hard()
    }

    pub fn frame(detail: impl AsRef<str>) -> Self {
        Self::new(ReplyCode::FrameError, detail)
    }
    pub fn unexpected_frame(detail: impl AsRef<str>) -> Self {
        Self::new(ReplyCode::UnexpectedFrame, detail)
    }
    pub fn channel_error(detail: impl AsRef<str>) -> Self {
        Self::new(ReplyCode::ChannelError, detail)
    }
    pub fn command_invalid(detail: impl AsRef<str>) -> Self {
        Self::new(ReplyCode::CommandInvalid, detail)
    }
    pub fn not_implemented(detail: impl AsRef<str>) -> Self {
        Self::new(ReplyCode::NotImplemented, detail)
    }
    pub fn not_allowed(detail: impl AsRef<str>) -> Self {
        Self::new(ReplyCode::NotAllowed, detail)
    }
    pub fn precondition(detail: impl AsRef<str>) -> Self {
        Self::new(ReplyCode::PreconditionFailed, detail)
    }
    pub fn access_refused(detail: impl AsRef<str>) -> Self {
        Self::new(ReplyCode::AccessRefused, detail)
    }
    pub fn not_found(detail: impl AsRef<str>) -> Self {
        Self::new(ReplyCode::NotFound, detail)
    }
}

impl From<broker::Error> for AmqpError {
    fn from(e: broker::Error) -> Self {
        Self::new(e.code, e.detail)
    }
}

pub type Result<T> = std::result::Result<T, AmqpError>;
