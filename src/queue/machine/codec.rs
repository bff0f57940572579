//! The queue machine's replicated wire format: commands (log entries) and state (snapshots).
//!
//! Version byte first; then a tag per variant. Once released, a tag's layout is never changed;
//! new variants take new tags (as NATS's `entryOp`: "only add to the end"). A message is stored
//! as exchange, routing key, the publisher's content-header bytes and the body; properties are
//! parsed back from the header bytes, and the body is a slice of the entry, not a copy.
//!
//! A snapshot holds no bodies: a message is its id (the log index of its `Enqueue`, kept in
//! the log while the message lives), its size and flags.

use super::*;
use crate::codec::{CodecError, Reader, Writer};
use crate::queue::dead_letter::Target;
use crate::queue::message::Body;
use crate::raft::{DecodeError, DurableMachine};
use amq_protocol::frame::parsing::parse_content_header;
use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;

/// Version of the command encoding.
const VERSION: u8 = 1;
/// Version of the state encoding (2: messages by reference to their log entry; 3: since when
/// each consumer is detached, after its credit). Version 2 is still read.
const STATE_VERSION: u8 = 3;

mod tag {
    pub const ENQUEUE: u8 = 1;
    pub const CONSUME: u8 = 2;
    pub const CANCEL: u8 = 3;
    pub const CREDIT: u8 = 4;
    pub const SETTLE: u8 = 5;
    pub const GET: u8 = 6;
    pub const PURGE: u8 = 7;
    pub const DELETE: u8 = 8;
    pub const STATS: u8 = 9;
    pub const RECOVER: u8 = 10;
    pub const EXPIRE: u8 = 11;
    pub const TOUCH: u8 = 12;
    pub const CONFIGURE: u8 = 13;
    pub const FAILOVER: u8 = 14;
    pub const ATTACH: u8 = 15;
    pub const DETACH: u8 = 16;
    pub const ENQUEUE_AGAIN: u8 = 17;
}

fn put_consumers(w: &mut Writer, ids: &[ConsumerId]) {
    w.u32(ids.len() as u32);
    for id in ids {
        w.u64(id.0);
    }
}

fn get_consumers(r: &mut Reader) -> Result<Vec<ConsumerId>, CodecError> {
    let n = r.u32()? as usize;
    let mut ids = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        ids.push(ConsumerId(r.u64()?));
    }
    Ok(ids)
}

fn put_target(w: &mut Writer, t: &Option<Target>) {
    match t {
        None => w.u8(0),
        Some(t) => w.u8(1).str(&t.exchange).bool(t.routing_key.is_some()).str(t.routing_key.as_deref().unwrap_or("")),
    };
}

fn get_target(r: &mut Reader) -> Result<Option<Target>, CodecError> {
    Ok(match r.u8()? {
        0 => None,
        _ => {
            let exchange = r.str()?;
            let has_key = r.bool()?;
            let key = r.str()?;
            Some(Target { exchange, routing_key: has_key.then_some(key) })
        }
    })
}

fn put_limits(w: &mut Writer, l: &Limits) {
    w.opt_u64(l.message_ttl).opt_u64(l.max_length).opt_u64(l.max_length_bytes).u8(overflow_byte(l.overflow));
    put_target(w, &l.dead_letter);
    w.opt_u64(l.expires).opt_u32(l.delivery_limit).opt_u64(l.consumer_timeout);
}

fn get_limits(r: &mut Reader) -> Result<Limits, CodecError> {
    Ok(Limits {
        message_ttl: r.opt_u64()?,
        max_length: r.opt_u64()?,
        max_length_bytes: r.opt_u64()?,
        overflow: get_overflow(r)?,
        dead_letter: get_target(r)?,
        expires: r.opt_u64()?,
        delivery_limit: r.opt_u32()?,
        consumer_timeout: r.opt_u64()?,
    })
}

fn err(e: CodecError) -> DecodeError {
    DecodeError(e.0)
}

pub(crate) fn put_message(w: &mut Writer, m: &Message) {
    w.str(&m.exchange).str(&m.routing_key).bytes(&m.header);
    w.u32(m.body.len() as u32);
    for p in m.body.parts() {
        w.buf.extend_from_slice(p);
    }
}

pub(crate) fn get_message(r: &mut Reader) -> Result<Message, CodecError> {
    let exchange = r.str()?;
    let routing_key = r.str()?;
    let header = r.bytes()?;
    let body = r.bytes()?;
    let properties = if header.is_empty() {
        BasicProperties::default()
    } else {
        parse_content_header(&header[..])
            .map(|(_, h)| h.properties)
            .map_err(|_| CodecError("unreadable content header".into()))?
    };
    Ok(Message { exchange, routing_key, properties, header, body: Body::from(body) })
}

fn put_holder(w: &mut Writer, h: &Holder) {
    match h {
        Holder::Consumer(c) => w.u8(0).u64(c.0),
        Holder::Get(conn, ch) => w.u8(1).u64(conn.0).u16(ch.0),
    };
}

fn get_holder(r: &mut Reader) -> Result<Holder, CodecError> {
    match r.u8()? {
        0 => Ok(Holder::Consumer(ConsumerId(r.u64()?))),
        1 => Ok(Holder::Get(ConnectionId(r.u64()?), ChannelId(r.u16()?))),
        t => Err(CodecError(format!("bad holder tag {t}"))),
    }
}

fn put_spec(w: &mut Writer, s: &ConsumerSpec) {
    w.u64(s.id.0).str(&s.tag).u64(s.connection.0).u16(s.channel.0).u32(s.prefetch).opt_u32(s.credit);
    w.bool(s.no_ack).bool(s.exclusive).i32(s.priority);
}

fn get_spec(r: &mut Reader) -> Result<ConsumerSpec, CodecError> {
    Ok(ConsumerSpec {
        id: ConsumerId(r.u64()?),
        tag: r.str()?.into(),
        connection: ConnectionId(r.u64()?),
        channel: ChannelId(r.u16()?),
        prefetch: r.u32()?,
        credit: r.opt_u32()?,
        no_ack: r.bool()?,
        exclusive: r.bool()?,
        priority: r.i32()?,
    })
}

fn outcome_byte(o: Outcome) -> u8 {
    match o {
        Outcome::Ack => 0,
        Outcome::Requeue => 1,
        Outcome::Discard => 2,
    }
}

fn get_outcome(r: &mut Reader) -> Result<Outcome, CodecError> {
    match r.u8()? {
        0 => Ok(Outcome::Ack),
        1 => Ok(Outcome::Requeue),
        2 => Ok(Outcome::Discard),
        t => Err(CodecError(format!("bad outcome {t}"))),
    }
}

fn overflow_byte(o: Overflow) -> u8 {
    match o {
        Overflow::DropHead => 0,
        Overflow::RejectPublish => 1,
        Overflow::RejectPublishDlx => 2,
    }
}

fn get_overflow(r: &mut Reader) -> Result<Overflow, CodecError> {
    match r.u8()? {
        0 => Ok(Overflow::DropHead),
        1 => Ok(Overflow::RejectPublish),
        2 => Ok(Overflow::RejectPublishDlx),
        t => Err(CodecError(format!("bad overflow {t}"))),
    }
}

fn put_entry(w: &mut Writer, e: &Entry) {
    w.u64(e.id.0).u32(e.size).u16(e.returns).bool(e.persistent).u64(e.expires).u8(e.priority);
}

fn get_entry(r: &mut Reader) -> Result<Entry, CodecError> {
    let (id, size, returns, persistent) = (MsgId(r.u64()?), r.u32()?, r.u16()?, r.bool()?);
    Ok(Entry { id, msg: None, size, returns, persistent, expires: r.u64()?, priority: r.u8()? })
}

pub(crate) fn encode_command(cmd: &Command) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(VERSION);
    match cmd {
        Command::Enqueue { msg } => {
            w.u8(tag::ENQUEUE);
            put_message(&mut w, msg);
        }
        Command::EnqueueAgain { msg } => {
            w.u8(tag::ENQUEUE_AGAIN);
            put_message(&mut w, msg);
        }
        Command::Consume(spec) => {
            w.u8(tag::CONSUME);
            put_spec(&mut w, spec);
        }
        Command::Cancel { consumer } => {
            w.u8(tag::CANCEL).u64(consumer.0);
        }
        Command::Credit { consumer, add } => {
            w.u8(tag::CREDIT).u64(consumer.0).u32(*add);
        }
        Command::Settle { ids, outcome } => {
            w.u8(tag::SETTLE).u8(outcome_byte(*outcome)).u32(ids.len() as u32);
            for id in ids {
                w.u64(id.0);
            }
        }
        Command::Get { holder, no_ack } => {
            w.u8(tag::GET);
            put_holder(&mut w, holder);
            w.bool(*no_ack);
        }
        Command::Purge => {
            w.u8(tag::PURGE);
        }
        Command::Delete { if_unused, if_empty } => {
            w.u8(tag::DELETE).bool(*if_unused).bool(*if_empty);
        }
        Command::Stats => {
            w.u8(tag::STATS);
        }
        Command::Recover { drop_transient } => {
            w.u8(tag::RECOVER).bool(*drop_transient);
        }
        Command::Expire => {
            w.u8(tag::EXPIRE);
        }
        Command::Touch => {
            w.u8(tag::TOUCH);
        }
        Command::Configure(l) => {
            w.u8(tag::CONFIGURE);
            put_limits(&mut w, l);
        }
        Command::Failover => {
            w.u8(tag::FAILOVER);
        }
        Command::Attach { consumers } => {
            w.u8(tag::ATTACH);
            put_consumers(&mut w, consumers);
        }
        Command::Detach { consumers } => {
            w.u8(tag::DETACH);
            put_consumers(&mut w, consumers);
        }
    }
    w.buf
}

pub(crate) fn decode_command(bytes: &Bytes) -> Result<Command, CodecError> {
    let mut r = Reader::new(bytes.clone());
    let v = r.u8()?;
    if v != VERSION {
        return Err(CodecError(format!("queue command version {v}, this build reads {VERSION}")));
    }
    let cmd = match r.u8()? {
        tag::ENQUEUE => Command::Enqueue { msg: Arc::new(get_message(&mut r)?) },
        tag::ENQUEUE_AGAIN => Command::EnqueueAgain { msg: Arc::new(get_message(&mut r)?) },
        tag::CONSUME => Command::Consume(get_spec(&mut r)?),
        tag::CANCEL => Command::Cancel { consumer: ConsumerId(r.u64()?) },
        tag::CREDIT => Command::Credit { consumer: ConsumerId(r.u64()?), add: r.u32()? },
        tag::SETTLE => {
            let outcome = get_outcome(&mut r)?;
            let n = r.u32()? as usize;
            let mut ids = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                ids.push(MsgId(r.u64()?));
            }
            Command::Settle { ids, outcome }
        }
        tag::GET => Command::Get { holder: get_holder(&mut r)?, no_ack: r.bool()? },
        tag::PURGE => Command::Purge,
        tag::DELETE => Command::Delete { if_unused: r.bool()?, if_empty: r.bool()? },
        tag::STATS => Command::Stats,
        tag::RECOVER => Command::Recover { drop_transient: r.bool()? },
        tag::EXPIRE => Command::Expire,
        tag::TOUCH => Command::Touch,
        tag::CONFIGURE => Command::Configure(Box::new(get_limits(&mut r)?)),
        tag::FAILOVER => Command::Failover,
        tag::ATTACH => Command::Attach { consumers: get_consumers(&mut r)? },
        tag::DETACH => Command::Detach { consumers: get_consumers(&mut r)? },
        t => return Err(CodecError(format!("unknown queue command tag {t}"))),
    };
    r.finish()?;
    Ok(cmd)
}

fn encode_state(m: &QueueMachine) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(STATE_VERSION);
    let c = &m.config;
    w.str(&c.key.vhost).str(&c.key.name).bool(c.auto_delete).bool(c.single_active_consumer);
    w.opt_u64(c.message_ttl).opt_u64(c.max_length).opt_u64(c.max_length_bytes).u8(overflow_byte(c.overflow));
    w.u8(c.max_priority.unwrap_or(0)).opt_u64(c.expires).opt_u32(c.delivery_limit).opt_u64(c.consumer_timeout);
    match &c.dedup {
        None => w.u8(0),
        Some(d) => w.u8(1).u64(d.size).opt_u64(d.ttl),
    };
    put_target(&mut w, &c.dead_letter);
    w.u32(m.ready.fresh_len() as u32);
    for e in m.ready.fresh() {
        put_entry(&mut w, e);
    }
    w.u32(m.ready.requeued_len() as u32);
    for e in m.ready.requeued() {
        put_entry(&mut w, e);
    }
    w.u32(m.unacked.len() as u32);
    for (holder, e) in m.unacked.values() {
        put_holder(&mut w, holder);
        put_entry(&mut w, e);
    }
    w.u32(m.consumers.len() as u32);
    for c in &m.consumers {
        put_spec(&mut w, &c.spec);
        w.u32(c.in_flight).opt_u32(c.credit).opt_u64(c.detached_since);
    }
    w.u64(m.cursor as u64).bool(m.had_consumer).bool(m.deleted).u64(m.last_used);
    w.u32(m.ack_deadlines.len() as u32);
    for (t, id) in &m.ack_deadlines {
        w.u64(*t).u64(id.0);
    }
    w.u32(m.seen.len() as u32);
    for (at, key) in m.seen.entries() {
        w.u64(*at).str(key);
    }
    w.buf
}

fn decode_state(bytes: &Bytes) -> Result<QueueMachine, CodecError> {
    let mut r = Reader::new(bytes.clone());
    let v = r.u8()?;
    if !(2..=STATE_VERSION).contains(&v) {
        return Err(CodecError(format!("queue state version {v}, this build reads 2 to {STATE_VERSION}")));
    }
    let config = QueueConfig {
        key: QueueKey::new(r.str()?, r.str()?),
        auto_delete: r.bool()?,
        single_active_consumer: r.bool()?,
        message_ttl: r.opt_u64()?,
        max_length: r.opt_u64()?,
        max_length_bytes: r.opt_u64()?,
        overflow: get_overflow(&mut r)?,
        max_priority: Some(r.u8()?).filter(|&p| p > 0),
        expires: r.opt_u64()?,
        delivery_limit: r.opt_u32()?,
        consumer_timeout: r.opt_u64()?,
        dedup: match r.u8()? {
            0 => None,
            _ => Some(super::dedup::Window { size: r.u64()?, ttl: r.opt_u64()? }),
        },
        dead_letter: get_target(&mut r)?,
    };
    let mut m = QueueMachine::durable(config);
    for _ in 0..r.u32()? {
        m.ready.push(get_entry(&mut r)?);
    }
    for _ in 0..r.u32()? {
        m.ready.put_back(get_entry(&mut r)?);
    }
    for _ in 0..r.u32()? {
        let holder = get_holder(&mut r)?;
        let e = get_entry(&mut r)?;
        m.unacked.insert(e.id, (holder, e));
    }
    for _ in 0..r.u32()? {
        let spec = get_spec(&mut r)?;
        let (in_flight, credit) = (r.u32()?, r.opt_u32()?);
        let detached_since = if v >= 3 { r.opt_u64()? } else { None };
        m.consumers.push(Consumer { spec, in_flight, credit, detached_since });
    }
    m.cursor = r.u64()? as usize;
    m.had_consumer = r.bool()?;
    m.deleted = r.bool()?;
    m.last_used = r.u64()?;
    for _ in 0..r.u32()? {
        m.ack_deadlines.push_back((r.u64()?, MsgId(r.u64()?)));
    }
    for _ in 0..r.u32()? {
        let at = r.u64()?;
        m.seen.push(at, r.str()?);
    }
    r.finish()?;
    m.ready_bytes = m.ready.fresh().chain(m.ready.requeued()).map(|e| u64::from(e.size)).sum();
    Ok(m)
}

mod reply;
pub(crate) use reply::{get_reply, put_reply};

impl DurableMachine for QueueMachine {
    fn encode_reply(reply: &Reply) -> Option<Vec<u8>> {
        let mut w = Writer::new();
        put_reply(&mut w, reply);
        Some(w.buf)
    }
    fn decode_reply(bytes: &Bytes) -> Result<Reply, DecodeError> {
        let mut r = Reader::new(bytes.clone());
        let reply = get_reply(&mut r).map_err(err)?;
        r.finish().map_err(err)?;
        Ok(reply)
    }
    fn encode_command(cmd: &Command) -> Vec<u8> {
        encode_command(cmd)
    }
    fn decode_command(bytes: &Bytes) -> Result<Command, DecodeError> {
        decode_command(bytes).map_err(err)
    }
    fn encode_state(&self) -> Vec<u8> {
        encode_state(self)
    }
    fn decode_state(bytes: &Bytes) -> Result<Self, DecodeError> {
        decode_state(bytes).map_err(err)
    }
    /// A message costs 13 bytes in a snapshot against a whole `Enqueue` entry (its body) to
    /// replay, so a snapshot is worth it once an eighth of the messages' worth of entries was
    /// applied: recovery replays at most that, and snapshotting stays O(1) per entry.
    fn state_weight(&self) -> u64 {
        (self.ready_count() + self.unacked_count()) as u64 / 8
    }
    fn first_live_index(&self) -> Option<u64> {
        QueueMachine::first_live_index(self)
    }
    fn live_indexes(&self) -> Vec<u64> {
        QueueMachine::live_indexes(self)
    }
}

#[cfg(test)]
mod tests;
