//! Start-up: the vhosts, users and permissions of the configuration and of a new database
//! (RabbitMQ creates `guest` with a new database only), then every recovered queue; and the
//! removal of data no queue owns any more.

use super::{META_GROUP, Node, StartError};
use crate::broker::{ReplyCode, password};
use crate::meta::{ClusterNode, MetaCommand, MetaReply, QueueRecord};
use std::sync::Arc;

/// How long a cluster member waits at start-up for a majority of its cluster (RabbitMQ waits
/// 10 × 30 s for its peers' tables).
const CLUSTER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

impl Node {
    pub(super) async fn bootstrap(&self) -> Result<(), StartError> {
        let c = &self.config;
        let empty_here = self.meta.read(|m| m.state().users.is_empty() && m.state().vhosts.is_empty());
        // The default vhost first, also as a barrier: once it is applied here, so is whatever
        // the cluster committed before it; so in a new cluster only the first node to get here
        // creates the default user.
        self.barrier().await?;
        let fresh = empty_here && self.meta.read(|m| m.state().users.is_empty());
        let mut cmds = Vec::new();
        // A cluster's registry of nodes: the initial members (by a founder), then who this
        // node is (a forgotten node is refused here and does not start).
        if !self.seed.is_empty() {
            cmds.push(MetaCommand::SeedNodes { nodes: self.seed.clone() });
        }
        if self.replication.is_some() {
            let node = ClusterNode { id: self.id, name: self.name.clone(), addr: c.cluster.advertised() };
            cmds.push(MetaCommand::RegisterNode { node });
        }
        cmds.extend(c.vhosts.iter().map(|v| MetaCommand::AddVhost { name: v.name.clone() }));
        // As RabbitMQ: the default user (guest, or RABBITMQ_DEFAULT_USER's counterpart) is
        // created with a new database, not again at every start.
        let default = &c.default_user_name;
        if fresh && c.default_user && !c.users.iter().any(|u| &u.name == default) {
            cmds.push(MetaCommand::PutUser {
                name: default.clone(),
                password_hash: password::hash(&c.default_pass, rand::random()),
                tags: vec!["administrator".into()],
            });
            cmds.push(MetaCommand::SetPermissions {
                vhost: "/".into(),
                user: default.clone(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            });
        }
        for u in &c.users {
            let password_hash = match (&u.password_hash, &u.password) {
                (Some(h), _) => h.clone(),
                (None, Some(p)) => password::hash(p, rand::random()),
                (None, None) => return Err(StartError::Bootstrap(format!("user '{}' has no password", u.name))),
            };
            cmds.push(MetaCommand::PutUser { name: u.name.clone(), password_hash, tags: u.tags.clone() });
        }
        for p in &c.permissions {
            cmds.push(MetaCommand::SetPermissions {
                vhost: p.vhost.clone(),
                user: p.user.clone(),
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            });
        }
        // This node's connections of before are gone: their exclusive queues go, and the
        // transient queues it ran.
        cmds.push(MetaCommand::NodeStarted { node: self.id });
        // Together: another node that reads the metadata meanwhile sees guest with its
        // permissions, or neither (it would otherwise start without creating them).
        for reply in self.propose_meta_all(cmds).await {
            if let MetaReply::Refused(e) = reply {
                return Err(StartError::Bootstrap(e.reply_text()));
            }
        }
        // Every queue of this node left is durable: run it, recovering its log. (Replicated
        // queues it holds a member of start with the reconciler below.)
        let me = self.id;
        let records: Vec<Arc<QueueRecord>> = self.meta.read(|m| {
            m.state()
                .vhosts
                .values()
                .flat_map(|v| v.queues.values())
                .filter(|q| q.members.contains(&me) || (q.home == me && !q.replicated()))
                .cloned()
                .collect()
        });
        let n = records.len();
        self.remove_orphan_groups(&records);
        for rec in records.iter().filter(|r| !r.replicated()) {
            self.start_queue(rec, true);
        }
        // From now on the reconciler runs the queues; it catches up with whatever changed
        // meanwhile (and, in a cluster, starts proxies to the other nodes' queues).
        self.recovered.store(true, std::sync::atomic::Ordering::Release);
        self.reconcile_queues();
        self.publish_topology();
        self.routes_ready.store(true, std::sync::atomic::Ordering::Release);
        if !fresh {
            tracing::info!(queues = n, "recovered metadata and queues");
        }
        Ok(())
    }

    /// Proposes the default vhost until it is applied. A single node answers at once; a
    /// member of a cluster waits (up to [`CLUSTER_PATIENCE`], as RabbitMQ waits for its peers
    /// at boot) until a majority is up and has elected a leader.
    async fn barrier(&self) -> Result<(), StartError> {
        let deadline = std::time::Instant::now() + CLUSTER_PATIENCE;
        loop {
            match self.propose_meta(MetaCommand::AddVhost { name: "/".into() }).await {
                MetaReply::Refused(e) if e.code == ReplyCode::InternalError && std::time::Instant::now() < deadline => {
                    tracing::info!(reason = %e.detail, "waiting for a majority of the cluster");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                MetaReply::Refused(e) => return Err(StartError::Bootstrap(e.reply_text())),
                _ => return Ok(()),
            }
        }
    }

    /// Removes the data of groups no queue owns any more (the node stopped between a queue's
    /// delete and the removal of its data), so their disk space comes back.
    fn remove_orphan_groups(&self, records: &[Arc<QueueRecord>]) {
        let delay_groups: Vec<u64> = self.meta.read(|m| {
            m.state().vhosts.values().flat_map(|v| v.exchanges.values().filter_map(|x| x.delay_group)).collect()
        });
        let owned: std::collections::HashSet<u64> =
            records.iter().filter(|r| r.durable).map(|r| r.group).chain(delay_groups).chain([META_GROUP.0]).collect();
        let stored = match self.storage.groups() {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list stored groups; orphans stay");
                return;
            }
        };
        for id in stored.into_iter().filter(|g| !owned.contains(&g.0)) {
            match self.storage.group(id).destroy() {
                Ok(()) => tracing::info!(group = id.0, "removed the data of a deleted queue"),
                Err(e) => tracing::warn!(group = id.0, error = %e, "cannot remove an orphan group"),
            }
        }
    }
}
