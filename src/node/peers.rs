//! The other members of this node's cluster as this node sees them: their names and whether
//! they answer a hello (asked every second), for `/api/nodes`, `cluster_status` and the web
//! UI's nodes table (RabbitMQ lists every cluster node there, `running: false` for one that is
//! down), and the resource alarms each has raised (a publisher is blocked on every node while
//! any node has one, `alarm::spread`).

use crate::alarm::Alarms;
use crate::raft::transport::{Hello, NodeId, Transport};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often each peer is asked, and how long an answer may take.
const EVERY: Duration = Duration::from_secs(1);

/// What this node's answers to hellos say: its own alarms, and which nodes its cluster
/// forgot (a forgotten node that comes back with its old data is told so and refuses to
/// start, `server/formation.rs`).
#[derive(Debug, Default)]
pub struct Said {
    pub alarms: Mutex<Alarms>,
    pub forgotten: Mutex<BTreeSet<NodeId>>,
}

/// What this node knows of one peer.
#[derive(Clone, Debug)]
pub struct PeerState {
    pub id: NodeId,
    /// Its node name, once it answered.
    pub name: Option<String>,
    pub running: bool,
    /// Its resource alarms, as its last answer said (none while it is down).
    pub alarms: Alarms,
}

impl PeerState {
    /// A member not heard from yet.
    fn unknown(id: NodeId) -> Self {
        Self { id, name: None, running: false, alarms: Alarms::default() }
    }
}

pub struct Peers {
    transport: Arc<dyn Transport>,
    me: Hello,
    state: Mutex<BTreeMap<NodeId, PeerState>>,
    /// The peers that did not answer their last hello (a peer not asked yet is not down).
    down: watch::Sender<BTreeSet<NodeId>>,
    /// The alarms raised on any running peer.
    alarms: watch::Sender<Alarms>,
}

impl Peers {
    pub fn new(transport: Arc<dyn Transport>, me: Hello, members: impl IntoIterator<Item = NodeId>) -> Arc<Self> {
        let state = members.into_iter().filter(|&id| id != me.id).map(|id| (id, PeerState::unknown(id))).collect();
        let (down, alarms) = (watch::channel(BTreeSet::new()).0, watch::channel(Alarms::default()).0);
        Arc::new(Self { transport, me, state: Mutex::new(state), down, alarms })
    }

    /// The alarms raised on any running peer, as that changes.
    pub fn alarms(&self) -> watch::Receiver<Alarms> {
        self.alarms.subscribe()
    }

    /// The peers found down, as that changes (replicated queues elect a new leader when
    /// theirs is among them, `queue/runner/lead.rs`).
    pub fn down(&self) -> watch::Receiver<BTreeSet<NodeId>> {
        self.down.subscribe()
    }

    /// Every member's id, this node's included.
    pub fn members(&self) -> Vec<NodeId> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<NodeId> = state.keys().copied().chain([self.me.id]).collect();
        ids.sort_unstable();
        ids
    }

    /// Follows the metadata's node registry: members it lists are asked from now on (with
    /// the name it knows until they answer), forgotten ones no more.
    pub fn set_members(&self, known: impl IntoIterator<Item = (NodeId, String)>, forgotten: &BTreeSet<NodeId>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (id, name) in known {
            if id == self.me.id || forgotten.contains(&id) {
                continue;
            }
            let p = state.entry(id).or_insert(PeerState::unknown(id));
            if p.name.is_none() && !name.is_empty() {
                p.name = Some(name);
            }
        }
        state.retain(|id, _| !forgotten.contains(id));
    }

    pub fn list(&self) -> Vec<PeerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// The name of node `id` as it last said (`node N` if it never answered).
    pub fn name(&self, id: NodeId) -> String {
        let known = self.state.lock().unwrap_or_else(|p| p.into_inner()).get(&id).and_then(|p| p.name.clone());
        known.unwrap_or_else(|| format!("node {id}"))
    }

    /// Asks every peer at once; notes (and logs) who went up or down.
    async fn check(&self) {
        let ids: Vec<NodeId> = self.state.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
        let asks = ids.iter().map(|&id| {
            let ask = self.transport.hello(id, &self.me);
            async move { (id, tokio::time::timeout(EVERY, ask).await.ok().and_then(Result::ok)) }
        });
        let answers = futures::future::join_all(asks).await;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let down: BTreeSet<NodeId> =
            answers.iter().filter(|(id, a)| a.as_ref().is_none_or(|h| h.id != *id)).map(|(id, _)| *id).collect();
        self.down.send_if_modified(|old| std::mem::replace(old, down.clone()) != down);
        for (id, answer) in answers {
            let Some(p) = state.get_mut(&id) else { continue };
            let running = answer.as_ref().is_some_and(|h| h.id == id);
            let said =
                answer.as_ref().filter(|h| h.id == id).map(|h| Alarms { memory: h.memory_alarm, disk: h.disk_alarm });
            if said.unwrap_or_default() != p.alarms {
                p.alarms = said.unwrap_or_default();
                let name = p.name.clone().unwrap_or_default();
                tracing::info!(peer = id, %name, memory = p.alarms.memory, disk = p.alarms.disk, "cluster node's alarms");
            }
            if let Some(h) = answer.filter(|h| h.id == id && !h.name.is_empty()) {
                p.name = Some(h.name);
            }
            if running != p.running {
                p.running = running;
                let name = p.name.clone().unwrap_or_default();
                if running {
                    tracing::info!(peer = id, %name, "cluster node up");
                } else {
                    tracing::warn!(peer = id, %name, "cluster node down");
                }
            }
        }
        let raised = state.values().fold(Alarms::default(), |a, p| a.or(p.alarms));
        self.alarms.send_if_modified(|old| std::mem::replace(old, raised) != raised);
    }

    /// Asks every second until shutdown.
    pub async fn watch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.check().await;
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}
