//! openraft's type configuration: one for every group on the node.
//!
//! openraft is pinned to `=0.10.0-alpha.34` (Cargo.toml): the 0.10 alphas break their API
//! between releases, and alpha.34 is the newest whose gRPC and RocksDB examples compile and
//! pass here (`../shared/reference/build.md`). Upgrade on purpose, with the storage suite.
//!
//! Entries carry an opaque [`Payload`]: each machine encodes its own commands (a versioned
//! wire format owned by the machine), so the metadata group and every queue group share one
//! configuration, one log store and one network (`docs/durability-plan.md` §1).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::fmt;

/// A proposed command: the proposer's clock and the machine-encoded command.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// Milliseconds since the Unix epoch, stamped by the proposer (machines never read a clock).
    pub now_ms: u64,
    pub cmd: Bytes,
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cmd({} B @{})", self.cmd.len(), self.now_ms)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What applying an entry produced, handed back to the proposer in this process only (a
/// machine's reply and effects). It never crosses the network: serde sees an empty struct.
#[derive(Default, Serialize, Deserialize)]
pub struct Out {
    #[serde(skip)]
    pub inner: Option<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.inner.is_some() { "Out(..)" } else { "Out(none)" })
    }
}

openraft::declare_raft_types!(
    /// The type configuration of every Warren group.
    pub Warren:
        D = Payload,
        R = Out,
        NodeId = u64,
        Node = openraft::BasicNode,
        AsyncRuntime = super::runtime::Runtime,
);
