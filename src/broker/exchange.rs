//! Exchange types and binding destinations.

use super::Error;
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
