//! The domain error enum and its single mapping to AMQP reply codes.
//!
//! Codes and wording follow RabbitMQ (`rabbit_channel.erl`, `rabbit_amqqueue.erl`): the text a
//! client sees is `"<CODE_NAME> - <detail>"`, e.g. `NOT_FOUND - no queue 'x' in vhost '/'`.

use std::fmt;

/// AMQP 0-9-1 reply codes (spec §1.9 constants, plus RabbitMQ's use of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyCode {
    ContentTooLarge = 311,
    NoRoute = 312,
    NoConsumers = 313,
    ConnectionForced = 320,
    InvalidPath = 402,
    AccessRefused = 403,
    NotFound = 404,
    ResourceLocked = 405,
    PreconditionFailed = 406,
    FrameError = 501,
    SyntaxError = 502,
    CommandInvalid = 503,
    ChannelError = 504,
    UnexpectedFrame = 505,
    ResourceError = 506,
    NotAllowed = 530,
    NotImplemented = 540,
    InternalError = 541,
}

impl ReplyCode {
    /// The spec's constant name, used as the prefix of reply texts.
    pub fn name(self) -> &'static str {
        use ReplyCode::*;
        match self {
            ContentTooLarge => "CONTENT_TOO_LARGE",
            NoRoute => "NO_ROUTE",
            NoConsumers => "NO_CONSUMERS",
            ConnectionForced => "CONNECTION_FORCED",
            InvalidPath => "INVALID_PATH",
            AccessRefused => "ACCESS_REFUSED",
            NotFound => "NOT_FOUND",
            ResourceLocked => "RESOURCE_LOCKED",
            PreconditionFailed => "PRECONDITION_FAILED",
            FrameError => "FRAME_ERROR",
            SyntaxError => "SYNTAX_ERROR",
            CommandInvalid => "COMMAND_INVALID",
            ChannelError => "CHANNEL_ERROR",
            UnexpectedFrame => "UNEXPECTED_FRAME",
            ResourceError => "RESOURCE_ERROR",
            NotAllowed => "NOT_ALLOWED",
            NotImplemented => "NOT_IMPLEMENTED",
            InternalError => "INTERNAL_ERROR",
        }
    }

    /// Soft errors close the channel; hard errors close the connection (spec §1.9, and
    /// RabbitMQ's `rabbit_binary_generator:map_exception/3`).
    pub fn is_hard(self) -> bool {
        (self as u16) >= 500 || matches!(self, ReplyCode::ConnectionForced | ReplyCode::InvalidPath)
    }

    pub fn code(self) -> u16 {
        self as u16
    }

    /// The reply code with this number, if AMQP 0-9-1 has one.
    pub fn from_code(code: u16) -> Option<Self> {
        use ReplyCode::*;
        const ALL: [ReplyCode; 18] = [
            ContentTooLarge,
            NoRoute,
            NoConsumers,
            ConnectionForced,
            InvalidPath,
            AccessRefused,
            NotFound,
            ResourceLocked,
            PreconditionFailed,
            FrameError,
            SyntaxError,
            CommandInvalid,
            ChannelError,
            UnexpectedFrame,
            ResourceError,
            NotAllowed,
            NotImplemented,
            InternalError,
        ];
        ALL.into_iter().find(|c| c.code() == code)
    }
}

/// A refusal by the domain: an error code plus RabbitMQ-worded detail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pub code: ReplyCode,
    pub detail: String,
}

impl Error {
    /// Writes the error (code and detail) for a reply that travels between nodes.
    pub fn put(&self, w: &mut crate::codec::Writer) {
        w.u16(self.code as u16).str(&self.detail);
    }

    /// Reads an error written by [`Error::put`].
    pub fn get(r: &mut crate::codec::Reader) -> std::result::Result<Error, crate::codec::CodecError> {
        let code = r.u16()?;
        let code = ReplyCode::from_code(code).ok_or_else(|| crate::codec::CodecError(format!("reply code {code}")))?;
        Ok(Error::new(code, r.str()?))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} - {}", self.code.name(), self.detail)
    }
}

impl Error {
    pub fn new(code: ReplyCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotFound, detail)
    }
    pub fn access_refused(detail: impl Into<String>) -> Self {
        Self::new(ReplyCode::AccessRefused, detail)
    }
    pub fn precondition(detail: impl Into<String>) -> Self {
        Self::new(ReplyCode::PreconditionFailed, detail)
    }
    pub fn resource_locked(detail: impl Into<String>) -> Self {
        Self::new(ReplyCode::ResourceLocked, detail)
    }
    pub fn not_allowed(detail: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotAllowed, detail)
    }
    pub fn command_invalid(detail: impl Into<String>) -> Self {
        Self::new(ReplyCode::CommandInvalid, detail)
    }
    pub fn not_implemented(detail: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotImplemented, detail)
    }

    /// `no queue 'x' in vhost '/'`
    pub fn no_queue(vhost: &str, name: &str) -> Self {
        Self::not_found(format!("no queue '{name}' in vhost '{vhost}'"))
    }
    /// `no exchange 'x' in vhost '/'`
    pub fn no_exchange(vhost: &str, name: &str) -> Self {
        Self::not_found(format!("no exchange '{name}' in vhost '{vhost}'"))
    }

    /// The full reply text, `"<CODE_NAME> - <detail>"`.
    pub fn reply_text(&self) -> String {
        self.to_string()
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_severity_follow_rabbitmq() {
        let e = Error::no_queue("/", "x");
        assert_eq!(e.reply_text(), "NOT_FOUND - no queue 'x' in vhost '/'");
        assert!(!ReplyCode::NotFound.is_hard());
        assert!(ReplyCode::FrameError.is_hard());
        assert!(ReplyCode::ConnectionForced.is_hard());
        assert!(!ReplyCode::PreconditionFailed.is_hard());
    }
}
