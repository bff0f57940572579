//! The routing snapshot: what publishers, dead-lettering and delayed exchanges read to find
//! where a message goes, without locks.

use crate::broker::{delayed, router};
use crate::ids::QueueKey;
use crate::meta::MetaState;
use crate::queue::QueueHandle;
use amq_protocol::types::FieldTable;
use std::collections::HashMap;

/// The metadata and the running queues and delay stores, as of one moment.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub meta: MetaState,
    pub queues: HashMap<QueueKey, QueueHandle>,
    /// The stores of delayed exchanges, by vhost and exchange name.
    pub delays: HashMap<QueueKey, QueueHandle>,
}

impl Topology {
    /// Where a message published to `exchange` in `vhost` goes: the exchange's delay store
    /// if it is a delayed exchange and the message asks for a delay, else the queues routing
    /// finds (those named by `keep`) that are running.
    pub fn targets(
        &self,
        vhost: &str,
        exchange: &str,
        keys: &[&str],
        headers: Option<&FieldTable>,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<QueueHandle> {
        let Some(v) = self.meta.vhosts.get(vhost) else { return Vec::new() };
        let delayed = v.exchanges.get(exchange).is_some_and(|x| x.delay_group.is_some());
        if delayed && delayed::delay_of(headers).is_some() {
            return self.delays.get(&QueueKey::new(vhost, exchange)).cloned().into_iter().collect();
        }
        router::route(&**v, exchange, keys, headers)
            .into_iter()
            .filter(|q| keep(q))
            .filter_map(|q| self.queues.get(&QueueKey::new(vhost, q)).cloned())
            .collect()
    }
}
