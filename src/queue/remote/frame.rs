//! The frames of a remote-queue link, as bytes: requests going up to the queue's home node,
//! answers and events coming down. Commands and messages use the queue machine's own wire
//! format (`machine/codec.rs`), replies its reply codec. Not stored: version 1, both ends of
//! a link run compatible builds; a frame that does not decode ends the link.

use crate::codec::{CodecError, Reader, Writer};
use crate::ids::{ChannelId, ConnectionId, MsgId, QueueKey};
use crate::queue::machine::Command;
use crate::queue::machine::codec::{decode_command, encode_command, get_message, get_reply, put_message, put_reply};
use crate::queue::{Delivery, Reply};
use bytes::Bytes;
use std::sync::Arc;

const VERSION: u8 = 1;

/// What a request up expects back.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum UpOp {
    /// `cmd` is an `Enqueue`; with a request id, a confirm is wanted.
    Publish {
        confirm: Option<u64>,
    },
    /// `cmd` is a `Consume`; answered with a `Down::Reply`.
    Consume {
        req: u64,
    },
    Call {
        req: u64,
    },
    /// Nobody waits (settles, cancels, credit).
    Cast,
    /// `cmd` is the `Consume` of a consumer registered before (a replicated queue's leader
    /// changed): it is attached again; answered with a `Down::Reply`.
    Attach {
        req: u64,
    },
}

#[derive(Debug)]
pub(super) struct Up {
    pub key: QueueKey,
    pub op: UpOp,
    pub cmd: Command,
}

#[derive(Debug)]
pub(super) enum Down {
    Reply {
        req: u64,
        reply: Reply,
    },
    /// Publishes (by request id) reached the queue (`ok`) or were refused by it.
    Confirms {
        reqs: Vec<u64>,
        ok: bool,
    },
    /// Publishes (by request id) not taken here: the queue is unknown on this node (yet, or
    /// any more), or its member here does not lead. Nothing was done.
    NotTaken {
        reqs: Vec<u64>,
    },
    Deliveries {
        conn: ConnectionId,
        channel: ChannelId,
        key: QueueKey,
        items: Vec<Delivery>,
    },
    Cancelled {
        conn: ConnectionId,
        channel: ChannelId,
        tag: Arc<str>,
    },
    AckTimeout {
        conn: ConnectionId,
        channel: ChannelId,
        timeout_ms: u64,
    },
    /// The queue holds its publishers (`closed`) or lets them go again (`queue::flow`): the
    /// origin mirrors its gate.
    Flow {
        key: QueueKey,
        closed: bool,
    },
}

fn op_parts(op: &UpOp) -> (u8, u64) {
    match op {
        UpOp::Publish { confirm: None } => (0, 0),
        UpOp::Publish { confirm: Some(r) } => (1, *r),
        UpOp::Consume { req } => (2, *req),
        UpOp::Call { req } => (3, *req),
        UpOp::Cast => (4, 0),
        UpOp::Attach { req } => (5, *req),
    }
}

impl Up {
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::new();
        let (op, req) = op_parts(&self.op);
        w.u8(VERSION).u8(op).u64(req).str(&self.key.vhost).str(&self.key.name);
        w.bytes(&encode_command(&self.cmd));
        Bytes::from(w.buf)
    }

    pub fn decode(b: Bytes) -> Result<Up, CodecError> {
        let mut r = Reader::new(b);
        version(&mut r)?;
        let (op, req) = (r.u8()?, r.u64()?);
        let op = match op {
            0 => UpOp::Publish { confirm: None },
            1 => UpOp::Publish { confirm: Some(req) },
            2 => UpOp::Consume { req },
            3 => UpOp::Call { req },
            4 => UpOp::Cast,
            5 => UpOp::Attach { req },
            t => return Err(CodecError(format!("up op {t}"))),
        };
        let key = QueueKey::new(r.str()?, r.str()?);
        let cmd = decode_command(&r.bytes()?)?;
        r.finish()?;
        Ok(Up { key, op, cmd })
    }
}

fn version(r: &mut Reader) -> Result<(), CodecError> {
    match r.u8()? {
        VERSION => Ok(()),
        v => Err(CodecError(format!("link frame version {v}"))),
    }
}

impl Down {
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::new();
        w.u8(VERSION);
        match self {
            Down::Reply { req, reply } => {
                w.u8(0).u64(*req);
                put_reply(&mut w, reply);
            }
            Down::Confirms { reqs, ok } => {
                w.u8(1).bool(*ok).u32(reqs.len() as u32);
                for r in reqs {
                    w.u64(*r);
                }
            }
            Down::Deliveries { conn, channel, key, items } => {
                w.u8(2).u64(conn.0).u16(channel.0).str(&key.vhost).str(&key.name).u32(items.len() as u32);
                for d in items {
                    w.str(&d.consumer_tag).u64(d.id.0).bool(d.redelivered).bool(d.no_ack);
                    put_message(&mut w, &d.msg);
                }
            }
            Down::Cancelled { conn, channel, tag } => {
                w.u8(3).u64(conn.0).u16(channel.0).str(tag);
            }
            Down::AckTimeout { conn, channel, timeout_ms } => {
                w.u8(4).u64(conn.0).u16(channel.0).u64(*timeout_ms);
            }
            Down::NotTaken { reqs } => {
                w.u8(5).u32(reqs.len() as u32);
                for r in reqs {
                    w.u64(*r);
                }
            }
            Down::Flow { key, closed } => {
                w.u8(6).str(&key.vhost).str(&key.name).bool(*closed);
            }
        }
        Bytes::from(w.buf)
    }

    pub fn decode(b: Bytes) -> Result<Down, CodecError> {
        let mut r = Reader::new(b);
        version(&mut r)?;
        let down = match r.u8()? {
            0 => Down::Reply { req: r.u64()?, reply: get_reply(&mut r)? },
            1 => {
                let ok = r.bool()?;
                let n = r.u32()?;
                let mut reqs = Vec::with_capacity(n.min(4096) as usize);
                for _ in 0..n {
                    reqs.push(r.u64()?);
                }
                Down::Confirms { reqs, ok }
            }
            2 => {
                let (conn, channel) = (ConnectionId(r.u64()?), ChannelId(r.u16()?));
                let key = QueueKey::new(r.str()?, r.str()?);
                let n = r.u32()?;
                let mut items = Vec::with_capacity(n.min(4096) as usize);
                for _ in 0..n {
                    let consumer_tag: Arc<str> = r.str()?.into();
                    let id = MsgId(r.u64()?);
                    let (redelivered, no_ack) = (r.bool()?, r.bool()?);
                    let msg = Arc::new(get_message(&mut r)?);
                    items.push(Delivery { consumer_tag, id, msg, redelivered, no_ack });
                }
                Down::Deliveries { conn, channel, key, items }
            }
            3 => Down::Cancelled { conn: ConnectionId(r.u64()?), channel: ChannelId(r.u16()?), tag: r.str()?.into() },
            4 => Down::AckTimeout { conn: ConnectionId(r.u64()?), channel: ChannelId(r.u16()?), timeout_ms: r.u64()? },
            5 => {
                let n = r.u32()?;
                let mut reqs = Vec::with_capacity(n.min(4096) as usize);
                for _ in 0..n {
                    reqs.push(r.u64()?);
                }
                Down::NotTaken { reqs }
            }
            6 => Down::Flow { key: QueueKey::new(r.str()?, r.str()?), closed: r.bool()? },
            t => return Err(CodecError(format!("down frame tag {t}"))),
        };
        r.finish()?;
        Ok(down)
    }
}
