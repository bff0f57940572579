//! How a node finds its place in its cluster before anything else starts: its id, whether
//! it may create the metadata group, and where the other members are.
//!
//! - A node that ran before has its id in its data directory (`storage::read_node_id`) and
//!   comes back, unless a member it reaches says that id was removed with
//!   `forget_cluster_node`: then it refuses to start (as RabbitMQ's `inconsistent_cluster`),
//!   rather than wait forever for a majority that no longer counts it.
//! - A node with an empty data directory asks the listed peers who they are (`Hello`). If one
//!   is a member of a running cluster, it joins that cluster (`raft/join.rs`): it gets a new
//!   id from the metadata leader, never an old one, so a node that lost its disk never
//!   counts toward a majority with votes and entries it no longer has (a node known by the
//!   same name or address is replaced by it). If instead every listed peer (or, after
//!   [`ALL_PATIENCE`], a majority, itself included) is still finding its place, it founds the
//!   cluster with them: ids by
//!   the sorted list, the same initial voters on every founder (Raft resolves concurrent
//!   initializations with the same membership as one election, never two clusters).
//!   Otherwise it waits and asks again: peers may be DNS names that resolve only later.
//!
//! A founder's id is stored only once its node opened (a majority formed the cluster), so a
//! founder that dies before that is still "finding its place" to the others when it comes
//! back, not a member they would have to join.

use crate::cluster::{Credentials, GrpcTransport};
use crate::config::Config;
use crate::node::StartError;
use crate::raft::join::{JoinRequest, ask_join};
use crate::raft::transport::{Hello, NodeId, Transport};
use std::time::Duration;

/// Between rounds of hellos while the cluster is not there yet.
const ROUND: Duration = Duration::from_millis(250);
/// How long an answer to a hello may take.
const HELLO_PATIENCE: Duration = Duration::from_secs(1);
/// How long founders wait for every listed peer before founding with a bare majority: nodes
/// started together (a compose file, a StatefulSet) all become initial members, rather
/// than one a little slower joining as a new member while its initial slot stays empty.
const ALL_PATIENCE: Duration = Duration::from_secs(3);
/// How often the wait is logged.
const SAY_EVERY: u32 = 40;

/// Where this node stands in its cluster.
pub struct Place {
    pub me: NodeId,
    /// It is one of the initial members (it may create the metadata group with `founders`).
    pub founder: bool,
    /// Its id is stored already (a founder's is stored once the node opened).
    pub stored: bool,
    /// The initial members: (id, cluster address), by the sorted peer list.
    pub founders: Vec<(NodeId, String)>,
    /// Where the other members are, as far as known now (the metadata says more later).
    pub peers: Vec<(NodeId, String)>,
}

/// The initial members by the sorted peer list, ids from 1.
pub fn founders(peers: &[String]) -> Vec<(NodeId, String)> {
    let mut sorted = peers.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.into_iter().enumerate().map(|(i, a)| (i as NodeId + 1, a)).collect()
}

/// Finds this node's place (waiting as long as it takes for a cluster to join or found).
pub async fn place(config: &Config, creds: &Credentials) -> Result<Place, StartError> {
    let c = &config.cluster;
    let advertised = c.advertised();
    let founders = founders(&c.peers);
    let founder_id = founders.iter().find(|(_, a)| *a == advertised).map(|(id, _)| *id);
    let others = |me: NodeId| founders.iter().filter(|(id, _)| *id != me).cloned().collect::<Vec<_>>();
    if let Some(me) = crate::storage::read_node_id(&config.data_dir)? {
        refuse_if_forgotten(config, creds, me, &others(me)).await?;
        let founder = founder_id == Some(me);
        tracing::info!(node_id = me, founder, "rejoining the cluster");
        return Ok(Place { me, founder, stored: true, peers: others(me), founders });
    }
    if crate::storage::has_database(&config.data_dir) {
        // A founder that stopped before its id was stored (or a data directory of before ids
        // were stored): the sorted list says who it is.
        let me = founder_id.ok_or_else(|| not_listed(&advertised, &c.peers))?;
        return Ok(Place { me, founder: true, stored: false, peers: others(me), founders });
    }
    let hello = Hello { name: config.node_name(), ..Hello::default() };
    let mut round = 0u32;
    let began = tokio::time::Instant::now();
    loop {
        let asked: Vec<(NodeId, String)> = founders.iter().filter(|(_, a)| *a != advertised).cloned().collect();
        let answers = hellos(config, creds, &hello, &asked).await;
        for (addr, h) in
            answers.iter().filter_map(|(a, h)| h.as_ref().filter(|h| h.member && h.id != 0).map(|h| (a, h)))
        {
            match join(config, creds, &advertised, addr, h).await {
                Ok(place) => return Ok(place),
                Err(e) => {
                    tracing::warn!(peer = %h.name, %addr, error = %e, "cannot join the cluster through this member yet")
                }
            }
        }
        let finding = answers.iter().filter(|(_, h)| h.as_ref().is_some_and(|h| !h.member)).count();
        if let Some(me) = founder_id {
            let all = finding + 1 == founders.len();
            if all || (finding + 1 > founders.len() / 2 && began.elapsed() >= ALL_PATIENCE) {
                tracing::info!(node_id = me, members = founders.len(), "founding the cluster with its initial members");
                return Ok(Place { me, founder: true, stored: false, peers: others(me), founders });
            }
        }
        if round % SAY_EVERY == 0 {
            let answered = answers.iter().filter(|(_, h)| h.is_some()).count();
            tracing::info!(peers = asked.len(), answered, still_forming = finding, "waiting for the cluster's members");
        }
        round += 1;
        tokio::time::sleep(ROUND).await;
    }
}

/// One round of hellos, saying who this node was: an error if a member of the cluster says
/// it forgot this id. Peers that do not answer (the cluster restarting too) stop nothing.
async fn refuse_if_forgotten(
    config: &Config,
    creds: &Credentials,
    me: NodeId,
    peers: &[(NodeId, String)],
) -> Result<(), StartError> {
    let hello = Hello { name: config.node_name(), id: me, ..Hello::default() };
    let answers = hellos(config, creds, &hello, peers).await;
    match answers.into_iter().filter_map(|(_, h)| h).find(|h| h.member && h.asker_forgotten) {
        Some(h) => Err(StartError::Cluster(format!(
            "this node (id {me}) was removed from the cluster with forget_cluster_node, as {} says; \
             to join it again as a new member, start it with an empty data directory (move {} away)",
            h.name,
            config.data_dir.display()
        ))),
        None => Ok(()),
    }
}

/// Says `hello` to each of `peers` at once: each one's address and its answer (`None` for
/// one that did not answer within [`HELLO_PATIENCE`]).
async fn hellos(
    config: &Config,
    creds: &Credentials,
    hello: &Hello,
    peers: &[(NodeId, String)],
) -> Vec<(String, Option<Hello>)> {
    let probe = GrpcTransport::new(hello.id, creds.clone(), source(config));
    for (id, addr) in peers {
        probe.set_peer(*id, addr);
    }
    futures::future::join_all(peers.iter().map(|(id, addr)| {
        let ask = probe.hello(*id, hello);
        async move { (addr.clone(), tokio::time::timeout(HELLO_PATIENCE, ask).await.ok().and_then(Result::ok)) }
    }))
    .await
}

fn not_listed(advertised: &str, peers: &[String]) -> StartError {
    StartError::Cluster(format!(
        "this node's cluster address {advertised} is not among --peers ({}): give --advertise-addr as this node's entry there",
        peers.join(",")
    ))
}

/// Joins through the member at `addr` (which said it is `h`); stores the id it gets.
async fn join(
    config: &Config,
    creds: &Credentials,
    advertised: &str,
    addr: &str,
    h: &Hello,
) -> Result<Place, StartError> {
    let t = GrpcTransport::new(0, creds.clone(), source(config));
    t.set_peer(h.id, addr);
    let req = JoinRequest { name: config.node_name(), addr: advertised.to_owned() };
    let answer = ask_join(&t, h.id, &req).await.map_err(|e| StartError::Cluster(e.to_string()))?;
    crate::storage::write_node_id(&config.data_dir, answer.id)?;
    tracing::info!(node_id = answer.id, through = %h.name, members = answer.nodes.len(), "joined the cluster");
    let peers = answer.nodes.into_iter().filter(|(id, _)| *id != answer.id).collect();
    Ok(Place { me: answer.id, founder: false, stored: true, peers, founders: founders(&config.cluster.peers) })
}

/// The address this node's connections to peers come from (its cluster listener's, unless
/// that is a wildcard).
pub fn source(config: &Config) -> Option<std::net::IpAddr> {
    Some(config.cluster.listen_addr.ip()).filter(|ip| !ip.is_unspecified())
}
