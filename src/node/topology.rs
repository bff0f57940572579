//! The routing snapshot: what publishers, dead-lettering and delayed exchanges read to find
//! where a message goes, without locks.

use crate::broker::{delayed, router};
use crate::ids::QueueKey;
use crate::meta::{Exchange, MetaState, Vhost};
use crate::queue::QueueHandle;
use crate::stats::Counters;
use amq_protocol::types::FieldTable;
use std::collections::HashMap;
use std::sync::Arc;

/// The metadata and the running queues and delay stores, as of one moment.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub meta: MetaState,
    pub queues: HashMap<QueueKey, QueueHandle>,
    /// The stores of delayed exchanges, by vhost and exchange name.
    pub delays: HashMap<QueueKey, QueueHandle>,
}

/// Where a publish goes, with what the publisher counts and checks on the way.
pub struct Routed<'a> {
    pub queues: Vec<QueueHandle>,
    /// The exchange's counters (`None` if it does not exist).
    pub exchange: Option<&'a Arc<Counters>>,
    /// The vhost has firehose tracing on.
    pub tracing: bool,
}

impl Topology {
    /// As [`Topology::targets`], in the same lookups also the exchange's counters and the
    /// vhost's tracing flag (the publish path).
    pub fn route(&self, vhost: &str, exchange: &str, keys: &[&str], headers: Option<&FieldTable>) -> Routed<'_> {
        let Some(v) = self.meta.vhosts.get(vhost) else {
            return Routed { queues: Vec::new(), exchange: None, tracing: false };
        };
        let x = v.exchanges.get(exchange);
        Routed {
            queues: self.targets_in(v, x.map(|x| &**x), exchange, keys, headers, |_| true),
            exchange: x.map(|x| &x.stats),
            tracing: v.tracing,
        }
    }

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
        self.targets_in(v, v.exchanges.get(exchange).map(|x| &**x), exchange, keys, headers, keep)
    }

    fn targets_in(
        &self,
        v: &Vhost,
        x: Option<&Exchange>,
        exchange: &str,
        keys: &[&str],
        headers: Option<&FieldTable>,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<QueueHandle> {
        if x.is_some_and(|x| x.delay_group.is_some()) && delayed::delay_of(headers).is_some() {
            return self.delays.get(&QueueKey::new(v.name.as_str(), exchange)).cloned().into_iter().collect();
        }
        router::route(v, exchange, keys, headers)
            .into_iter()
            .filter(|q| keep(q))
            .filter_map(|q| self.queues.get(&QueueKey::new(v.name.as_str(), q)).cloned())
            .collect()
    }
}
