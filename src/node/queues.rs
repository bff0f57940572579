//! The queues this node runs: starting and stopping their runners as the metadata records
//! say (a reconciler, whoever changed the metadata), handing them the settings policies put
//! in force, publishing the routing snapshot, and what runners ask of the node (auto-delete,
//! dead-letter routing).

use super::{DEFAULT_DELIVERY_LIMIT, Node, Topology};
use crate::broker::argument::QueueType;
use crate::ids::QueueKey;
use crate::meta::{MetaCommand, QueueRecord};
use crate::queue::machine::{Command, Limits, QueueConfig};
use crate::queue::remote::{FrontInboxes, Member};
use crate::queue::runner::{AutoDelete, Backend, DeadLetterRouter, Hooks, Replica, Request};
use crate::queue::{self, Message, QueueHandle};
use crate::raft::Leadership;
use crate::storage::GroupId;
use std::collections::HashMap;
use std::sync::Arc;

/// How long a member removed by `delete_member` may take to hand over and retire.
const RETIRE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// What a replicated queue's front and member follow as the metadata changes.
pub(super) struct FrontFeeds {
    members: tokio::sync::watch::Sender<Vec<u64>>,
    member: tokio::sync::watch::Sender<Option<Member>>,
    /// The front's handle (deliveries of this node's member carry it).
    front: crate::queue::handle::WeakQueueHandle,
}

impl Node {
    /// The settings a queue's machine starts with.
    fn queue_config(&self, key: QueueKey, rec: &QueueRecord) -> QueueConfig {
        let a = &rec.effective;
        let mut config = QueueConfig {
            auto_delete: rec.auto_delete,
            single_active_consumer: a.single_active_consumer,
            max_priority: a.max_priority.filter(|&p| p > 0),
            dedup: a.deduplication.then(|| queue::machine::dedup::Window {
                size: a.cache_size.unwrap_or(queue::machine::dedup::DEFAULT_CACHE_SIZE),
                ttl: a.cache_ttl,
            }),
            ..QueueConfig::new(key)
        };
        config.set_limits(self.limits(rec));
        config
    }

    /// Whether a runner already uses this queue's storage group (two must never share one).
    fn already_running(&self, key: &QueueKey, rec: &QueueRecord) -> bool {
        let running = self.running_records.lock().unwrap_or_else(|p| p.into_inner()).get(key).map(|r| r.group);
        if running == Some(rec.group) {
            tracing::error!(queue = %key, "queue already running: not started again");
        }
        running == Some(rec.group)
    }

    /// Starts the runner of a queue (its durable group opens and recovers in the runner).
    pub(super) fn start_queue(&self, rec: &Arc<QueueRecord>, recovering: bool) {
        let key = QueueKey::new(rec.vhost.clone(), rec.name.clone());
        if self.already_running(&key, rec) {
            return;
        }
        let config = self.queue_config(key.clone(), rec);
        let backend =
            if rec.durable { Backend::Durable(self.storage.group(GroupId(rec.group))) } else { Backend::Memory };
        // After a restart classic queues lose their transient messages; quorum queues keep all.
        let recover = recovering.then_some(rec.parsed.queue_type == QueueType::Classic);
        let handle = queue::spawn(config, backend, recover, self.queue_hooks());
        if recovering {
            // The recovered state has the settings of when it stopped; policies may differ now.
            self.configure_queue(&handle, rec);
        }
        self.track(key, rec, handle);
    }

    /// Notes a started queue (a runner or a proxy) and the record it was started from.
    fn track(&self, key: QueueKey, rec: &Arc<QueueRecord>, handle: QueueHandle) {
        self.running_records.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), rec.clone());
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).insert(key, handle);
    }

    /// Serves a replicated queue on this node: its front (the handle clients use, sending each
    /// request to the leader) and, on a member node, this node's member's runner.
    fn start_replicated(&self, rec: &Arc<QueueRecord>) {
        let (Some(remote), Some(rep)) = (&self.remote, &self.replication) else { return };
        let key = QueueKey::new(rec.vhost.clone(), rec.name.clone());
        if self.already_running(&key, rec) {
            return;
        }
        let inboxes = FrontInboxes::new(key.clone());
        let feeds = FrontFeeds {
            members: tokio::sync::watch::channel(rec.members.clone()).0,
            member: tokio::sync::watch::channel(None).0,
            front: inboxes.handle().downgrade(),
        };
        if rec.members.contains(&self.id) {
            self.start_member(&key, rec, rep, &feeds);
        }
        let shown = Arc::new(std::sync::atomic::AtomicU64::new(0));
        self.leaders.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), shown.clone());
        let front =
            remote.serve_front(inboxes, GroupId(rec.group), feeds.members.subscribe(), feeds.member.subscribe(), shown);
        self.member_lists.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), feeds);
        self.track(key, rec, front);
    }

    /// Starts this node's member of a replicated queue and hands it to the queue's front.
    fn start_member(&self, key: &QueueKey, rec: &QueueRecord, rep: &crate::raft::Replication, feeds: &FrontFeeds) {
        let none = Leadership { leader: None, term: 0, leading: false };
        let (leadership, watched) = tokio::sync::watch::channel(none);
        let replica = Replica {
            rep: rep.clone(),
            members: feeds.members.subscribe(),
            founders: rec.founders.clone(),
            down: self
                .peers
                .as_ref()
                .map(|p| p.down())
                .unwrap_or_else(|| tokio::sync::watch::channel(Default::default()).1),
            front: feeds.front.clone(),
            leadership,
            maintenance: self.maintenance_watch(),
        };
        let log = self.storage.group(GroupId(rec.group));
        let config = self.queue_config(key.clone(), rec);
        let runner = queue::spawn(config, Backend::Replicated(log, Box::new(replica)), None, self.queue_hooks());
        self.replicas.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), runner.clone());
        feeds.member.send_replace(Some(Member { runner, leadership: watched }));
    }

    /// Serves a queue whose home is another node through a proxy to it.
    fn start_proxy(&self, rec: &Arc<QueueRecord>) {
        let Some(remote) = &self.remote else { return };
        let key = QueueKey::new(rec.vhost.clone(), rec.name.clone());
        let handle = remote.proxy(rec.home, key.clone());
        self.track(key, rec, handle);
    }

    /// The queues this node is home to, by key, for the sessions of other nodes' proxies and
    /// fronts: a runner, never a proxy or front, so a request goes at most one hop; a
    /// replicated queue's member runner (it serves while it leads) says so.
    pub(super) fn home_queues(&self) -> crate::queue::remote::Resolve {
        let me = self.me.clone();
        Arc::new(move |key: &QueueKey| {
            let node = me.upgrade()?;
            if let Some(r) = node.replicas.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
                return Some((r.clone(), true));
            }
            let rec = node.running_records.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()?;
            if rec.home != node.id || rec.replicated() {
                return None;
            }
            node.queues.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned().map(|h| (h, false))
        })
    }

    /// The settings in force of a queue that policies may change (arguments with the
    /// policy applied; node defaults for what neither sets).
    fn limits(&self, rec: &QueueRecord) -> Limits {
        let a = &rec.effective;
        Limits {
            message_ttl: a.message_ttl,
            max_length: a.max_length,
            max_length_bytes: a.max_length_bytes,
            overflow: a.overflow,
            expires: a.expires,
            consumer_timeout: Some(a.consumer_timeout.unwrap_or(self.config.consumer_timeout)).filter(|&t| t > 0),
            // Quorum queues count deliveries, with RabbitMQ 4's default limit of 20; classic
            // queues ignore `x-delivery-limit`, as RabbitMQ's do.
            delivery_limit: (a.queue_type == QueueType::Quorum)
                .then(|| a.delivery_limit.map_or(DEFAULT_DELIVERY_LIMIT, |l| l.min(u64::from(u32::MAX)) as u32)),
            dead_letter: a.dead_letter_exchange.clone().map(|exchange| queue::dead_letter::Target {
                exchange,
                routing_key: a.dead_letter_routing_key.clone(),
            }),
        }
    }

    /// Hands a queue its settings in force, through its log (never blocking the caller). It
    /// is in the queue's inbox before the change is answered, so what the client sends next
    /// comes after it (only a full inbox defers it to a task).
    fn configure_queue(&self, h: &QueueHandle, rec: &QueueRecord) {
        let req = Request::Cast { cmd: Command::Configure(Box::new(self.limits(rec))) };
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(req)) = h.tx.try_send(req) {
            let h = h.clone();
            tokio::spawn(async move {
                let _ = h.tx.send(req).await;
            });
        }
    }

    /// Brings the running queues in line with the metadata this node has applied: starts the
    /// queues it is home to and does not run (and, in a cluster, proxies to the others'),
    /// stops those that went (or were replaced by a new queue of the same name: another
    /// storage group), and hands changed settings in force to the rest. Called by the
    /// metadata actor after every change, whoever proposed it, so one path serves a single
    /// node and a cluster.
    pub(super) fn reconcile_queues(&self) {
        if !self.recovered.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let _one_at_a_time = self.reconciling.lock().unwrap_or_else(|p| p.into_inner());
        // A stopping node starts nothing (`Node::stop` clears the running queues under the
        // same lock, after raising this flag).
        if *self.shutdown.borrow() {
            return;
        }
        let me = self.id;
        let everywhere = self.remote.is_some();
        let wanted: HashMap<QueueKey, Arc<QueueRecord>> = self.meta.read(|m| {
            m.state()
                .vhosts
                .values()
                .flat_map(|v| v.queues.values())
                .filter(|q| q.home == me || everywhere)
                .map(|q| (QueueKey::new(q.vhost.clone(), q.name.clone()), q.clone()))
                .collect()
        });
        let mut started = self.running_records.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let same = |a: &QueueRecord, b: &QueueRecord| a.group == b.group && a.home == b.home && a.members == b.members;
        for (key, old) in &mut started {
            if let Some(rec) = wanted.get(key).filter(|r| !same(r, old)) {
                if self.change_members(key, old, rec) {
                    *old = rec.clone();
                }
            }
        }
        for (key, old) in &started {
            if wanted.get(key).is_none_or(|r| !same(r, old)) {
                self.stop_queue(key, old, true);
            }
        }
        for (key, rec) in wanted {
            match started.get(&key) {
                Some(old) if same(old, &rec) => {
                    // A replicated queue's settings go to its leader from each member node.
                    if old.effective != rec.effective && (rec.home == me || rec.members.contains(&me)) {
                        let running = self.queues.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
                        if let Some(h) = running {
                            tracing::info!(queue = %key, policy = ?rec.policy.as_ref().map(|p| &p.name), "queue settings changed by policy");
                            self.configure_queue(&h, &rec);
                        }
                    }
                    self.running_records.lock().unwrap_or_else(|p| p.into_inner()).insert(key, rec);
                }
                _ if rec.replicated() => {
                    if rec.members.contains(&me) {
                        tracing::info!(vhost = %rec.vhost, queue = %rec.name, members = ?rec.members, "replicated queue member started");
                    }
                    self.start_replicated(&rec);
                }
                _ if rec.home != me => self.start_proxy(&rec),
                _ => {
                    tracing::info!(vhost = %rec.vhost, queue = %rec.name, durable = rec.durable, policy = ?rec.policy.as_ref().map(|p| &p.name), "queue created");
                    self.start_queue(&rec, false);
                }
            }
        }
    }

    /// A replicated queue's members changed (a node was forgotten or replaced, or an
    /// operator added or deleted one): its front and this node's member follow the new list
    /// in place (the leader changes the group to match, `queue/runner/lead.rs`), so
    /// consumers and publishers carry on. A node that became a member starts its member
    /// (it waits until the leader adds it); one that stopped being one lets it retire: it
    /// hands its leadership over if it has it, stops, and its data goes. Whether it was done
    /// in place.
    fn change_members(&self, key: &QueueKey, old: &QueueRecord, rec: &Arc<QueueRecord>) -> bool {
        if old.group != rec.group || !old.replicated() || !rec.replicated() {
            return false;
        }
        let Some(rep) = &self.replication else { return false };
        let me = self.id;
        tracing::info!(queue = %key, from = ?old.members, to = ?rec.members, "replicated queue's members changed");
        let lists = self.member_lists.lock().unwrap_or_else(|p| p.into_inner());
        let Some(feeds) = lists.get(key) else { return false };
        feeds.members.send_replace(rec.members.clone());
        match (old.members.contains(&me), rec.members.contains(&me)) {
            (false, true) => {
                tracing::info!(queue = %key, "this node now holds a replica of the queue");
                self.start_member(key, rec, rep, feeds);
            }
            (true, false) => {
                tracing::info!(queue = %key, "this node no longer holds a replica of the queue");
                feeds.member.send_replace(None);
                let runner = self.replicas.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
                if let Some(runner) = runner {
                    // The member retires by itself once it sees the new list (handing its
                    // leadership over first if it has it, `queue/runner/lead.rs`): its
                    // handle is kept until then, so its inboxes do not close under it.
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(RETIRE_PATIENCE, runner.tx.closed()).await;
                    });
                }
            }
            _ => {}
        }
        drop(lists);
        self.running_records.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), rec.clone());
        true
    }

    /// A deleted queue's consumers on this node's connections get `basic.cancel` from here
    /// (RabbitMQ's consumer cancel notification), whether or not the queue ran here: the
    /// queue's own cancel may not reach a consumer through another node in time, or at all.
    /// A connection told twice cancels once.
    fn cancel_consumers_of(&self, rec: &QueueRecord, h: &crate::queue::QueueHandle) {
        for c in self.clients.all().into_iter().filter(|c| c.vhost == rec.vhost) {
            c.queue_deleted(h.clone());
        }
    }

    /// Stops a queue that went (`deleted`), or whose replica this node no longer holds; the
    /// runner removes a durable queue's data once its last handle is gone.
    fn stop_queue(&self, key: &QueueKey, rec: &QueueRecord, deleted: bool) {
        self.running_records.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        let running = self.queues.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        if deleted && let Some(h) = &running {
            self.cancel_consumers_of(rec, h);
        }
        if rec.replicated() {
            self.leaders.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
            self.member_lists.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
            // The member's runner deletes the queue if it leads, and retires (its data goes
            // when it stops) if it does not. One whose node is no longer a member just stops
            // (its data goes at the next start, `remove_orphan_groups`).
            let replica = self.replicas.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
            if !deleted {
                if replica.is_some() {
                    tracing::info!(vhost = %rec.vhost, queue = %rec.name, "no longer holds a replica of the queue");
                }
            } else if let Some(h) = replica {
                tracing::info!(vhost = %rec.vhost, queue = %rec.name, "replicated queue member deleted");
                tokio::spawn(async move {
                    let cmd = Command::Delete { if_unused: false, if_empty: false };
                    let _ = h.tx.send(Request::Cast { cmd }).await;
                });
            }
            return;
        }
        if rec.home != self.id {
            // A proxy: the home deletes the queue; the proxy ends with its last handle.
            return;
        }
        tracing::info!(vhost = %rec.vhost, queue = %rec.name, "queue deleted");
        match running {
            // Never block here: the runner may be waiting on a connection that waits on us.
            Some(h) => {
                tokio::spawn(async move {
                    let cmd = Command::Delete { if_unused: false, if_empty: false };
                    let _ = h.tx.send(Request::Cast { cmd }).await;
                });
            }
            None if rec.durable => {
                if let Err(e) = self.storage.group(GroupId(rec.group)).destroy() {
                    tracing::warn!(queue = %key, error = %e, "removing a deleted queue's data");
                }
            }
            None => {}
        }
    }

    pub(super) fn publish_topology(&self) {
        let meta = self.meta.read(|m| m.state().clone());
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let delays = self.reconcile_delays(&meta);
        self.topology.store(Arc::new(Topology { meta, queues, delays }));
    }

    /// What queue runners ask of the node.
    pub(super) fn queue_hooks(&self) -> Hooks {
        Hooks { auto_delete: self.auto_deleter(), dead_letter: self.dead_letterer(), runners: self.runners.clone() }
    }

    /// Routes dead letters through their exchange to the queues bound to it (no confirms; a
    /// missing exchange routes nowhere, as RabbitMQ). A queue the message already died in with
    /// no rejection on the way is skipped (`dead_letter::is_cycle`).
    fn dead_letterer(&self) -> DeadLetterRouter {
        let me = self.me.clone();
        Arc::new(move |vhost: &str, msg: &Message, keys: &[String]| {
            let Some(node) = me.upgrade() else { return Vec::new() };
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            node.topology().targets(vhost, &msg.exchange, &keys, msg.properties.headers().as_ref(), |q| {
                !queue::dead_letter::is_cycle(msg, q)
            })
        })
    }

    fn auto_deleter(&self) -> AutoDelete {
        let me = self.me.clone();
        Arc::new(move |key: QueueKey| {
            let me = me.clone();
            tokio::spawn(async move {
                if let Some(node) = me.upgrade() {
                    tracing::debug!(queue = %key, "auto-delete: last consumer gone");
                    node.propose_meta(MetaCommand::DeleteQueue { vhost: key.vhost, name: key.name }).await;
                }
            });
        })
    }
}
