//! The metadata machine's replicated wire format: commands (log entries) and state
//! (snapshots). Version byte, then a tag per variant; tags are only ever added. Argument
//! tables use AMQP's own field-table encoding. Derived data (binding indexes, compiled
//! permission regexes, parsed queue arguments) is rebuilt on decode, not stored.

use super::*;
use crate::broker::argument::parse_queue_args;
use crate::broker::policy::{ApplyTo, Policy};
use crate::codec::{CodecError, Reader, Writer};
use crate::raft::{DecodeError, DurableMachine};
use amq_protocol::frame::WriteContext;
use amq_protocol::types::generation::gen_field_table;
use amq_protocol::types::parsing::parse_field_table;
use bytes::Bytes;

const VERSION: u8 = 1;
/// Version of the state encoding (2: vhost metadata and policies after each vhost's
/// exchanges; 3: each queue's home node after its group; 4: a replicated queue's members
/// after its home; 5: a replicated queue's founders after its members, and the node registry
/// after the vhosts; 6: a delayed exchange's store members after its group; 7: the store's
/// founders after its members). Versions 1 to 6 are still read.
const STATE_VERSION: u8 = 7;

mod tag {
    pub const ADD_VHOST: u8 = 1;
    pub const PUT_USER: u8 = 2;
    pub const SET_PERMISSIONS: u8 = 3;
    pub const DECLARE_EXCHANGE: u8 = 4;
    pub const DELETE_EXCHANGE: u8 = 5;
    pub const DECLARE_QUEUE: u8 = 6;
    pub const DELETE_QUEUE: u8 = 7;
    pub const BIND: u8 = 8;
    pub const UNBIND: u8 = 9;
    pub const CONNECTION_CLOSED: u8 = 10;
    pub const NODE_STARTED: u8 = 11;
    pub const DELETE_USER: u8 = 12;
    pub const DELETE_VHOST: u8 = 13;
    pub const CLEAR_PERMISSIONS: u8 = 14;
    pub const UPDATE_VHOST: u8 = 15;
    pub const SET_POLICY: u8 = 16;
    pub const CLEAR_POLICY: u8 = 17;
    /// `NodeStarted` of a node of a cluster (`NODE_STARTED` was node 1's, the only one).
    pub const NODE_STARTED_ON: u8 = 18;
    /// `DeclareQueue` with the members of a replicated queue (`DECLARE_QUEUE` has none).
    pub const DECLARE_QUEUE_ON: u8 = 19;
    pub const SEED_NODES: u8 = 20;
    pub const REGISTER_NODE: u8 = 21;
    pub const JOIN_NODE: u8 = 22;
    pub const FORGET_NODE: u8 = 23;
    /// `DeclareExchange` with the members of a durable delayed exchange's replicated store
    /// (`DECLARE_EXCHANGE` has none).
    pub const DECLARE_EXCHANGE_ON: u8 = 24;
    pub const ADD_QUEUE_MEMBER: u8 = 25;
    pub const DELETE_QUEUE_MEMBER: u8 = 26;
}

fn put_node(w: &mut Writer, n: &ClusterNode) {
    w.u64(n.id).str(&n.name).str(&n.addr);
}

fn get_node(r: &mut Reader) -> Result<ClusterNode, CodecError> {
    Ok(ClusterNode { id: r.u64()?, name: r.str()?, addr: r.str()? })
}

fn put_nodes(w: &mut Writer, nodes: &[u64]) {
    w.u32(nodes.len() as u32);
    for n in nodes {
        w.u64(*n);
    }
}

fn get_nodes(r: &mut Reader) -> Result<Vec<u64>, CodecError> {
    let n = r.u32()? as usize;
    let mut nodes = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        nodes.push(r.u64()?);
    }
    Ok(nodes)
}

fn put_opt_str(w: &mut Writer, s: Option<&str>) {
    match s {
        Some(s) => w.u8(1).str(s),
        None => w.u8(0),
    };
}

fn get_opt_str(r: &mut Reader) -> Result<Option<String>, CodecError> {
    Ok(if r.u8()? == 0 { None } else { Some(r.str()?) })
}

fn put_table(w: &mut Writer, t: &FieldTable) {
    let encoded = gen_field_table(t)(WriteContext::from(Vec::new())).map(|c| c.write).unwrap_or_default();
    w.bytes(&encoded);
}

fn get_table(r: &mut Reader) -> Result<FieldTable, CodecError> {
    let b = r.bytes()?;
    parse_field_table(&b[..]).map(|(_, t)| t).map_err(|_| CodecError("unreadable field table".into()))
}

/// Set in an exchange type's byte for a delayed exchange (`x-delayed-message`), whose routing
/// kind is in the low bits.
const DELAYED: u8 = 0x10;

fn kind_byte(t: ExchangeType) -> u8 {
    let k = match t.kind {
        ExchangeKind::Direct => 0,
        ExchangeKind::Fanout => 1,
        ExchangeKind::Topic => 2,
        ExchangeKind::Headers => 3,
    };
    if t.delayed { k | DELAYED } else { k }
}

fn get_kind(r: &mut Reader) -> Result<ExchangeType, CodecError> {
    let b = r.u8()?;
    let kind = match b & !DELAYED {
        0 => ExchangeKind::Direct,
        1 => ExchangeKind::Fanout,
        2 => ExchangeKind::Topic,
        3 => ExchangeKind::Headers,
        _ => return Err(CodecError(format!("bad exchange kind {b}"))),
    };
    Ok(ExchangeType { kind, delayed: b & DELAYED != 0 })
}

fn put_dest(w: &mut Writer, d: &Destination) {
    match d {
        Destination::Queue(q) => w.u8(0).str(q),
        Destination::Exchange(x) => w.u8(1).str(x),
    };
}

fn get_dest(r: &mut Reader) -> Result<Destination, CodecError> {
    match r.u8()? {
        0 => Ok(Destination::Queue(r.str()?)),
        1 => Ok(Destination::Exchange(r.str()?)),
        t => Err(CodecError(format!("bad destination tag {t}"))),
    }
}

fn put_strings(w: &mut Writer, v: &[String]) {
    w.u32(v.len() as u32);
    for s in v {
        w.str(s);
    }
}

fn get_strings(r: &mut Reader) -> Result<Vec<String>, CodecError> {
    (0..r.u32()?).map(|_| r.str()).collect()
}

fn encode_command(cmd: &MetaCommand) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(VERSION);
    match cmd {
        MetaCommand::AddVhost { name } => {
            w.u8(tag::ADD_VHOST).str(name);
        }
        MetaCommand::PutUser { name, password_hash, tags } => {
            w.u8(tag::PUT_USER).str(name).str(password_hash);
            put_strings(&mut w, tags);
        }
        MetaCommand::SetPermissions { vhost, user, configure, write, read } => {
            w.u8(tag::SET_PERMISSIONS).str(vhost).str(user).str(configure).str(write).str(read);
        }
        MetaCommand::DeclareExchange { vhost, name, kind, durable, auto_delete, internal, args, members } => {
            let tag = if members.is_empty() { tag::DECLARE_EXCHANGE } else { tag::DECLARE_EXCHANGE_ON };
            w.u8(tag).str(vhost).str(name).u8(kind_byte(*kind));
            w.bool(*durable).bool(*auto_delete).bool(*internal);
            put_table(&mut w, args);
            if !members.is_empty() {
                put_nodes(&mut w, members);
            }
        }
        MetaCommand::DeleteExchange { vhost, name, if_unused } => {
            w.u8(tag::DELETE_EXCHANGE).str(vhost).str(name).bool(*if_unused);
        }
        MetaCommand::DeclareQueue { vhost, name, durable, exclusive, auto_delete, args, connection, members } => {
            let tag = if members.is_empty() { tag::DECLARE_QUEUE } else { tag::DECLARE_QUEUE_ON };
            w.u8(tag).str(vhost).str(name).bool(*durable).bool(*exclusive).bool(*auto_delete);
            put_table(&mut w, args);
            w.u64(connection.0);
            if !members.is_empty() {
                put_nodes(&mut w, members);
            }
        }
        MetaCommand::DeleteQueue { vhost, name } => {
            w.u8(tag::DELETE_QUEUE).str(vhost).str(name);
        }
        MetaCommand::Bind { vhost, source, destination, key, args }
        | MetaCommand::Unbind { vhost, source, destination, key, args } => {
            w.u8(if matches!(cmd, MetaCommand::Bind { .. }) { tag::BIND } else { tag::UNBIND }).str(vhost).str(source);
            put_dest(&mut w, destination);
            w.str(key);
            put_table(&mut w, args);
        }
        MetaCommand::ConnectionClosed { connection } => {
            w.u8(tag::CONNECTION_CLOSED).u64(connection.0);
        }
        MetaCommand::NodeStarted { node: 1 } => {
            w.u8(tag::NODE_STARTED);
        }
        MetaCommand::NodeStarted { node } => {
            w.u8(tag::NODE_STARTED_ON).u64(*node);
        }
        MetaCommand::DeleteUser { name } => {
            w.u8(tag::DELETE_USER).str(name);
        }
        MetaCommand::DeleteVhost { name } => {
            w.u8(tag::DELETE_VHOST).str(name);
        }
        MetaCommand::ClearPermissions { vhost, user } => {
            w.u8(tag::CLEAR_PERMISSIONS).str(vhost).str(user);
        }
        MetaCommand::UpdateVhost { name, description, tags, tracing } => {
            w.u8(tag::UPDATE_VHOST).str(name);
            put_opt_str(&mut w, description.as_deref());
            match tags {
                Some(t) => {
                    w.u8(1);
                    put_strings(&mut w, t);
                }
                None => {
                    w.u8(0);
                }
            }
            w.u8(tracing.map_or(0, |t| if t { 2 } else { 1 }));
        }
        MetaCommand::SetPolicy { vhost, name, pattern, apply_to, priority, definition } => {
            w.u8(tag::SET_POLICY).str(vhost).str(name).str(pattern).str(apply_to).u64(*priority as u64);
            put_table(&mut w, definition);
        }
        MetaCommand::ClearPolicy { vhost, name } => {
            w.u8(tag::CLEAR_POLICY).str(vhost).str(name);
        }
        MetaCommand::SeedNodes { nodes } => {
            w.u8(tag::SEED_NODES).u32(nodes.len() as u32);
            for n in nodes {
                put_node(&mut w, n);
            }
        }
        MetaCommand::RegisterNode { node } => {
            w.u8(tag::REGISTER_NODE);
            put_node(&mut w, node);
        }
        MetaCommand::JoinNode { name, addr } => {
            w.u8(tag::JOIN_NODE).str(name).str(addr);
        }
        MetaCommand::ForgetNode { id } => {
            w.u8(tag::FORGET_NODE).u64(*id);
        }
        MetaCommand::AddQueueMember { vhost, name, node } => {
            w.u8(tag::ADD_QUEUE_MEMBER).str(vhost).str(name).u64(*node);
        }
        MetaCommand::DeleteQueueMember { vhost, name, node } => {
            w.u8(tag::DELETE_QUEUE_MEMBER).str(vhost).str(name).u64(*node);
        }
    }
    w.buf
}

fn decode_command(bytes: &Bytes) -> Result<MetaCommand, CodecError> {
    let mut r = Reader::new(bytes.clone());
    let v = r.u8()?;
    if v != VERSION {
        return Err(CodecError(format!("metadata command version {v}, this build reads {VERSION}")));
    }
    let cmd = match r.u8()? {
        tag::ADD_VHOST => MetaCommand::AddVhost { name: r.str()? },
        tag::PUT_USER => MetaCommand::PutUser { name: r.str()?, password_hash: r.str()?, tags: get_strings(&mut r)? },
        tag::SET_PERMISSIONS => MetaCommand::SetPermissions {
            vhost: r.str()?,
            user: r.str()?,
            configure: r.str()?,
            write: r.str()?,
            read: r.str()?,
        },
        t @ (tag::DECLARE_EXCHANGE | tag::DECLARE_EXCHANGE_ON) => MetaCommand::DeclareExchange {
            vhost: r.str()?,
            name: r.str()?,
            kind: get_kind(&mut r)?,
            durable: r.bool()?,
            auto_delete: r.bool()?,
            internal: r.bool()?,
            args: get_table(&mut r)?,
            members: if t == tag::DECLARE_EXCHANGE_ON { get_nodes(&mut r)? } else { Vec::new() },
        },
        tag::DELETE_EXCHANGE => MetaCommand::DeleteExchange { vhost: r.str()?, name: r.str()?, if_unused: r.bool()? },
        t @ (tag::DECLARE_QUEUE | tag::DECLARE_QUEUE_ON) => MetaCommand::DeclareQueue {
            vhost: r.str()?,
            name: r.str()?,
            durable: r.bool()?,
            exclusive: r.bool()?,
            auto_delete: r.bool()?,
            args: get_table(&mut r)?,
            connection: ConnectionId(r.u64()?),
            members: if t == tag::DECLARE_QUEUE_ON { get_nodes(&mut r)? } else { Vec::new() },
        },
        tag::DELETE_QUEUE => MetaCommand::DeleteQueue { vhost: r.str()?, name: r.str()? },
        t @ (tag::BIND | tag::UNBIND) => {
            let (vhost, source, destination, key, args) =
                (r.str()?, r.str()?, get_dest(&mut r)?, r.str()?, get_table(&mut r)?);
            if t == tag::BIND {
                MetaCommand::Bind { vhost, source, destination, key, args }
            } else {
                MetaCommand::Unbind { vhost, source, destination, key, args }
            }
        }
        tag::CONNECTION_CLOSED => MetaCommand::ConnectionClosed { connection: ConnectionId(r.u64()?) },
        tag::NODE_STARTED => MetaCommand::NodeStarted { node: 1 },
        tag::NODE_STARTED_ON => MetaCommand::NodeStarted { node: r.u64()? },
        tag::DELETE_USER => MetaCommand::DeleteUser { name: r.str()? },
        tag::DELETE_VHOST => MetaCommand::DeleteVhost { name: r.str()? },
        tag::CLEAR_PERMISSIONS => MetaCommand::ClearPermissions { vhost: r.str()?, user: r.str()? },
        tag::UPDATE_VHOST => MetaCommand::UpdateVhost {
            name: r.str()?,
            description: get_opt_str(&mut r)?,
            tags: if r.u8()? == 0 { None } else { Some(get_strings(&mut r)?) },
            tracing: match r.u8()? {
                0 => None,
                t => Some(t == 2),
            },
        },
        tag::SET_POLICY => MetaCommand::SetPolicy {
            vhost: r.str()?,
            name: r.str()?,
            pattern: r.str()?,
            apply_to: r.str()?,
            priority: r.u64()? as i64,
            definition: get_table(&mut r)?,
        },
        tag::CLEAR_POLICY => MetaCommand::ClearPolicy { vhost: r.str()?, name: r.str()? },
        tag::SEED_NODES => {
            MetaCommand::SeedNodes { nodes: (0..r.u32()?).map(|_| get_node(&mut r)).collect::<Result<_, _>>()? }
        }
        tag::REGISTER_NODE => MetaCommand::RegisterNode { node: get_node(&mut r)? },
        tag::JOIN_NODE => MetaCommand::JoinNode { name: r.str()?, addr: r.str()? },
        tag::FORGET_NODE => MetaCommand::ForgetNode { id: r.u64()? },
        tag::ADD_QUEUE_MEMBER => MetaCommand::AddQueueMember { vhost: r.str()?, name: r.str()?, node: r.u64()? },
        tag::DELETE_QUEUE_MEMBER => MetaCommand::DeleteQueueMember { vhost: r.str()?, name: r.str()?, node: r.u64()? },
        t => return Err(CodecError(format!("unknown metadata command tag {t}"))),
    };
    r.finish()?;
    Ok(cmd)
}

/// A reply, for a proposal forwarded from another node (not stored: no version byte).
fn encode_reply(reply: &MetaReply) -> Vec<u8> {
    let mut w = Writer::new();
    match reply {
        MetaReply::Ok => {
            w.u8(0);
        }
        MetaReply::QueueDeclared { created } => {
            w.u8(1).bool(*created);
        }
        MetaReply::Refused(e) => {
            w.u8(2);
            e.put(&mut w);
        }
        MetaReply::NodeJoined { id } => {
            w.u8(3).u64(*id);
        }
    }
    w.buf
}

fn decode_reply(bytes: &Bytes) -> Result<MetaReply, CodecError> {
    let mut r = Reader::new(bytes.clone());
    let reply = match r.u8()? {
        0 => MetaReply::Ok,
        1 => MetaReply::QueueDeclared { created: r.bool()? },
        2 => MetaReply::Refused(Error::get(&mut r)?),
        3 => MetaReply::NodeJoined { id: r.u64()? },
        t => return Err(CodecError(format!("reply tag {t}"))),
    };
    r.finish()?;
    Ok(reply)
}

impl DurableMachine for MetaMachine {
    fn encode_reply(reply: &MetaReply) -> Option<Vec<u8>> {
        Some(encode_reply(reply))
    }
    fn decode_reply(bytes: &Bytes) -> Result<MetaReply, DecodeError> {
        decode_reply(bytes).map_err(|e| DecodeError(e.0))
    }
    fn encode_command(cmd: &MetaCommand) -> Vec<u8> {
        encode_command(cmd)
    }
    fn decode_command(bytes: &Bytes) -> Result<MetaCommand, DecodeError> {
        decode_command(bytes).map_err(|e| DecodeError(e.0))
    }
    fn encode_state(&self) -> Vec<u8> {
        encode_state(&self.state)
    }
    fn decode_state(bytes: &Bytes) -> Result<Self, DecodeError> {
        decode_state(bytes).map_err(|e| DecodeError(e.0))
    }
}

mod state;
#[cfg(test)]
mod tests;

use state::{decode_state, encode_state};
