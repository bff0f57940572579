//! A queue's replies as bytes, for requests answered on another node (a remote queue's link,
//! `queue/remote/`, and proposals forwarded to a leader). Not stored: no version byte; both
//! ends run the same build's layout, and a new reply takes a new tag.

use super::{get_message, put_message};
use crate::broker::Error;
use crate::codec::{CodecError, Reader, Writer};
use crate::ids::{ConsumerId, MsgId};
use crate::queue::machine::{Got, Reply};
use std::sync::Arc;

pub(crate) fn put_reply(w: &mut Writer, reply: &Reply) {
    match reply {
        Reply::Enqueued(id) => {
            w.u8(0).u64(id.0);
        }
        Reply::Duplicate => {
            w.u8(1);
        }
        Reply::Rejected => {
            w.u8(2);
        }
        Reply::Dropped => {
            w.u8(3);
        }
        Reply::Consumed => {
            w.u8(4);
        }
        Reply::Cancelled(b) => {
            w.u8(5).bool(*b);
        }
        Reply::Settled(n) => {
            w.u8(6).u64(*n as u64);
        }
        Reply::Got(None) => {
            w.u8(7);
        }
        Reply::Got(Some(g)) => {
            w.u8(8).u64(g.id.0).bool(g.redelivered).u32(g.remaining);
            match g.delivery_count {
                Some(n) => w.u8(1).u16(n),
                None => w.u8(0),
            };
            match &g.msg {
                Some(m) => {
                    w.u8(1);
                    put_message(w, m);
                }
                None => {
                    w.u8(0);
                }
            }
        }
        Reply::Purged(n) => {
            w.u8(9).u32(*n);
        }
        Reply::Deleted(n) => {
            w.u8(10).u32(*n);
        }
        Reply::Stats { messages, consumers, unacked, bytes } => {
            w.u8(11).u32(*messages).u32(*consumers).u32(*unacked).u64(*bytes);
        }
        Reply::Refused(e) => {
            w.u8(12);
            e.put(w);
        }
        Reply::NotLeader(leader) => {
            w.u8(14).opt_u64(*leader);
        }
        Reply::Attached(missing) => {
            w.u8(13).u32(missing.len() as u32);
            for c in missing {
                w.u64(c.0);
            }
        }
    }
}

pub(crate) fn get_reply(r: &mut Reader) -> Result<Reply, CodecError> {
    Ok(match r.u8()? {
        0 => Reply::Enqueued(MsgId(r.u64()?)),
        1 => Reply::Duplicate,
        2 => Reply::Rejected,
        3 => Reply::Dropped,
        4 => Reply::Consumed,
        5 => Reply::Cancelled(r.bool()?),
        6 => Reply::Settled(r.u64()? as usize),
        7 => Reply::Got(None),
        8 => {
            let id = MsgId(r.u64()?);
            let redelivered = r.bool()?;
            let remaining = r.u32()?;
            let delivery_count = match r.u8()? {
                0 => None,
                _ => Some(r.u16()?),
            };
            let msg = match r.u8()? {
                0 => None,
                _ => Some(Arc::new(get_message(r)?)),
            };
            Reply::Got(Some(Got { id, msg, redelivered, delivery_count, remaining }))
        }
        9 => Reply::Purged(r.u32()?),
        10 => Reply::Deleted(r.u32()?),
        11 => Reply::Stats { messages: r.u32()?, consumers: r.u32()?, unacked: r.u32()?, bytes: r.u64()? },
        12 => Reply::Refused(Error::get(r)?),
        14 => Reply::NotLeader(r.opt_u64()?),
        13 => {
            let n = r.u32()?;
            let mut missing = Vec::with_capacity(n.min(4096) as usize);
            for _ in 0..n {
                missing.push(ConsumerId(r.u64()?));
            }
            Reply::Attached(missing)
        }
        t => return Err(CodecError(format!("queue reply tag {t}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::ReplyCode;

    fn round_trip(reply: Reply) -> Reply {
        let mut w = Writer::new();
        put_reply(&mut w, &reply);
        let mut r = Reader::new(bytes::Bytes::from(w.buf));
        let back = get_reply(&mut r).expect("decodes");
        r.finish().expect("nothing left over");
        back
    }

    #[test]
    fn every_reply_survives_the_trip() {
        let msg = super::super::tests::message("body");
        let got = Got { id: MsgId(7), msg: Some(msg), redelivered: true, delivery_count: Some(3), remaining: 2 };
        let cases = vec![
            Reply::Enqueued(MsgId(5)),
            Reply::Duplicate,
            Reply::Rejected,
            Reply::Dropped,
            Reply::Consumed,
            Reply::Cancelled(true),
            Reply::Settled(4),
            Reply::Got(None),
            Reply::Got(Some(got)),
            Reply::Purged(9),
            Reply::Deleted(1),
            Reply::Stats { messages: 1, consumers: 2, unacked: 3, bytes: 4 },
            Reply::Refused(Error::new(ReplyCode::ResourceLocked, "in use")),
            Reply::Attached(vec![ConsumerId(3), ConsumerId(1 << 41)]),
            Reply::NotLeader(Some(2)),
            Reply::NotLeader(None),
        ];
        for reply in cases {
            let before = format!("{reply:?}");
            assert_eq!(format!("{:?}", round_trip(reply)), before);
        }
    }
}
