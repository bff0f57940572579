//! Maintenance mode, as RabbitMQ's `rabbitmq-upgrade drain` / `revive`: a drained node hands
//! every leadership it holds to other members, closes its clients' connections (320
//! CONNECTION_FORCED, RabbitMQ's text), accepts no new ones, fails its readiness check (so
//! HAProxy and Kubernetes send clients elsewhere) and its quorum queue members stand for
//! election only as a last resort, after every other member had its turn (when the drained
//! member's log is the only complete one, no other can win) and hand over a leadership they
//! win as soon as another member has caught up; they keep their replicas up to date (RabbitMQ
//! stops them instead, so a queue loses a voter while its node is drained). `revive` undoes it; leaderships
//! come back with `rebalance`. The mode lasts until `revive` or until the node restarts
//! (RabbitMQ keeps it across a restart).

use super::Node;

/// What RabbitMQ tells the clients of a node put into maintenance mode (after
/// `CONNECTION_FORCED - `, which the connection adds).
pub const DRAINED: &str = "Node was put into maintenance mode";

/// What a drain did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drained {
    pub leaderships_moved: usize,
    pub connections_closed: usize,
}

impl Node {
    /// Whether the node is in maintenance mode (drained).
    pub fn in_maintenance(&self) -> bool {
        *self.maintenance.borrow()
    }

    /// Watches the maintenance mode (quorum queue members stand for election only outside it).
    pub fn maintenance_watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.maintenance.subscribe()
    }

    /// Puts the node into maintenance mode (see the module's documentation).
    pub async fn drain(&self) -> Drained {
        self.maintenance.send_replace(true);
        tracing::warn!("node put into maintenance mode: handing leaderships over, closing client connections");
        let leaderships_moved = self.hand_over_leaderships().await;
        let connections_closed = self.clients().all().iter().filter(|c| c.close(DRAINED.into())).count();
        Drained { leaderships_moved, connections_closed }
    }

    /// Takes the node out of maintenance mode: it accepts clients and its members may lead
    /// again (they take leaderships back with `rebalance`, or when a leader fails).
    pub fn revive(&self) {
        self.maintenance.send_replace(false);
        tracing::warn!("node taken out of maintenance mode");
    }
}
