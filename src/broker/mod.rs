//! Pure messaging domain: names, exchange types, bindings, routing, arguments, permissions.
//!
//! No async code and no I/O: everything here is plain data and functions, used by the metadata
//! state machine and tested with table-driven unit tests.

pub mod argument;
pub mod delayed;
pub mod error;
pub mod exchange;
pub mod headers;
pub mod name;
pub mod password;
pub mod permission;
pub mod policy;
pub mod router;
pub mod topic;

pub use error::{Error, ReplyCode};
