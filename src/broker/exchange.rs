//! Exchange types and binding destinations.

use super::{Error, delayed};
use amq_protocol::types::FieldTable;
use std::fmt;

/// The routing algorithm of an exchange (AMQP 0-9-1 §3.1.3 plus RabbitMQ's headers variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    /// Parses a declared type; unknown types are refused as RabbitMQ 4.x does (406, a channel
    /// error; 3.x closed the connection with 503).
    pub fn parse(kind: &str) -> Result<Self, Error> {
        match kind {
            "direct" => Ok(Self::Direct),
            "fanout" => Ok(Self::Fanout),
            "topic" => Ok(Self::Topic),
            "headers" => Ok(Self::Headers),
            other => Err(Error::precondition(format!("unknown exchange type '{other}'"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
        }
    }
}

impl fmt::Display for ExchangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A declared exchange type: a routing algorithm, held back by a delay for messages that ask
/// for one when `delayed` (`x-delayed-message`, see [`delayed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExchangeType {
    pub kind: ExchangeKind,
    pub delayed: bool,
}

impl ExchangeType {
    /// Parses `exchange.declare`'s type (a delayed exchange's routing type comes from its
    /// arguments).
    pub fn parse(name: &str, args: &FieldTable) -> Result<Self, Error> {
        if name == delayed::TYPE {
            return Ok(Self { kind: delayed::inner_kind(args)?, delayed: true });
        }
        Ok(Self { kind: ExchangeKind::parse(name)?, delayed: false })
    }

    /// The name clients declare and the management API shows.
    pub fn as_str(self) -> &'static str {
        if self.delayed { delayed::TYPE } else { self.kind.as_str() }
    }
}

impl From<ExchangeKind> for ExchangeType {
    fn from(kind: ExchangeKind) -> Self {
        Self { kind, delayed: false }
    }
}

impl fmt::Display for ExchangeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a binding sends what it matches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    Queue(String),
    Exchange(String),
}

impl Destination {
    pub fn name(&self) -> &str {
        match self {
            Self::Queue(n) | Self::Exchange(n) => n,
        }
    }
}
