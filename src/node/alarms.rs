//! The node's resource alarms: its own (memory and disk against their thresholds,
//! `alarm.rs`), those raised anywhere in its cluster (what blocks publishers, as RabbitMQ's
//! alarms block every node's), and the thresholds changed at run time.

use super::Node;
use crate::alarm::Alarms;
use tokio::sync::watch;

impl Node {
    pub fn memory_limit(&self) -> u64 {
        self.memory.limit()
    }

    pub fn disk_free_limit(&self) -> u64 {
        self.disk.limit()
    }

    /// The resource alarms raised anywhere in the cluster, as they change (what blocks
    /// publishers).
    pub fn alarms(&self) -> watch::Receiver<Alarms> {
        self.cluster_alarms.subscribe()
    }

    /// This node's own raised resource alarms.
    pub fn local_alarms(&self) -> Alarms {
        *self.alarms.borrow()
    }

    /// Sets the memory alarm threshold in bytes (as `rabbitmqctl set_vm_memory_high_watermark
    /// absolute`), re-checking at once.
    pub fn set_memory_limit(&self, bytes: u64) {
        self.memory.set_limit(bytes);
    }

    /// Sets the free-disk threshold in bytes (as `rabbitmqctl set_disk_free_limit`).
    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.disk.set_limit(bytes);
    }
}
