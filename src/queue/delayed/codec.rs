//! The delay store's replicated wire format. Version byte, then a tag per variant; tags are
//! only ever added. A held message is encoded as a queue's `Enqueue` encodes it; a snapshot
//! holds (due, id, size) per message and no bodies (they stay in the log).

use super::machine::{DelayCommand, DelayMachine};
use crate::codec::{CodecError, Reader, Writer};
use crate::ids::MsgId;
use crate::queue::machine::codec::{get_message, put_message};
use crate::raft::{DecodeError, DurableMachine};
use bytes::Bytes;
use std::sync::Arc;

const VERSION: u8 = 1;
const STATE_VERSION: u8 = 1;

mod tag {
    pub const HOLD: u8 = 1;
    pub const RELEASE: u8 = 2;
    pub const DELETE: u8 = 3;
}

fn encode_command(cmd: &DelayCommand) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(VERSION);
    match cmd {
        DelayCommand::Hold { msg } => {
            w.u8(tag::HOLD);
            put_message(&mut w, msg);
        }
        DelayCommand::Release { ids } => {
            w.u8(tag::RELEASE).u32(ids.len() as u32);
            for id in ids {
                w.u64(id.0);
            }
        }
        DelayCommand::Delete => {
            w.u8(tag::DELETE);
        }
    }
    w.buf
}

fn decode_command(bytes: &Bytes) -> Result<DelayCommand, CodecError> {
    let mut r = Reader::new(bytes.clone());
    let v = r.u8()?;
    if v != VERSION {
        return Err(CodecError(format!("delay command version {v}, this build reads {VERSION}")));
    }
    let cmd = match r.u8()? {
        tag::HOLD => DelayCommand::Hold { msg: Arc::new(get_message(&mut r)?) },
        tag::RELEASE => {
            let n = r.u32()?;
            let mut ids = Vec::with_capacity(n.min(1 << 16) as usize);
            for _ in 0..n {
                ids.push(MsgId(r.u64()?));
            }
            DelayCommand::Release { ids }
        }
        tag::DELETE => DelayCommand::Delete,
        t => return Err(CodecError(format!("unknown delay command tag {t}"))),
    };
    r.finish()?;
    Ok(cmd)
}

fn encode_state(m: &DelayMachine) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(STATE_VERSION).bool(m.is_deleted()).u64(m.len() as u64);
    for (due, id, size) in m.entries() {
        w.u64(due).u64(id.0).u32(size);
    }
    w.buf
}

fn decode_state(bytes: &Bytes) -> Result<DelayMachine, CodecError> {
    let mut r = Reader::new(bytes.clone());
    let v = r.u8()?;
    if v != STATE_VERSION {
        return Err(CodecError(format!("delay state version {v}, this build reads {STATE_VERSION}")));
    }
    let deleted = r.bool()?;
    let n = r.u64()?;
    let mut entries = Vec::with_capacity(n.min(1 << 20) as usize);
    for _ in 0..n {
        entries.push((r.u64()?, MsgId(r.u64()?), r.u32()?));
    }
    r.finish()?;
    Ok(DelayMachine::restore(entries, deleted))
}

impl DurableMachine for DelayMachine {
    fn encode_command(cmd: &DelayCommand) -> Vec<u8> {
        encode_command(cmd)
    }
    fn decode_command(bytes: &Bytes) -> Result<DelayCommand, DecodeError> {
        decode_command(bytes).map_err(|e| DecodeError(e.0))
    }
    fn encode_state(&self) -> Vec<u8> {
        encode_state(self)
    }
    fn decode_state(bytes: &Bytes) -> Result<Self, DecodeError> {
        decode_state(bytes).map_err(|e| DecodeError(e.0))
    }
    /// A snapshot costs 20 bytes per held message against a whole `Hold` entry each.
    fn state_weight(&self) -> u64 {
        self.len() as u64 / 8
    }
    fn first_live_index(&self) -> Option<u64> {
        DelayMachine::first_live_index(self)
    }
    /// Every held message's `Hold` entry (its body is there): a snapshot sent to a member
    /// that lags carries them.
    fn live_indexes(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.entries().map(|(_, id, _)| id.0).collect();
        ids.sort_unstable();
        ids
    }
    /// Nothing to say: a hold forwarded from a member that does not lead is confirmed once
    /// the leader has it.
    fn encode_reply(_reply: &()) -> Option<Vec<u8>> {
        Some(Vec::new())
    }
    fn decode_reply(_bytes: &Bytes) -> Result<(), DecodeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Body, Message};
    use crate::raft::{ApplyMeta, LogIndex, Machine};
    use amq_protocol::protocol::BasicProperties;

    #[test]
    fn commands_and_state_round_trip() {
        let msg = Arc::new(Message {
            exchange: "later".into(),
            routing_key: "k".into(),
            properties: BasicProperties::default(),
            header: Bytes::new(),
            body: Body::from(Bytes::from_static(b"hello")),
        });
        let cmds = [
            DelayCommand::Hold { msg },
            DelayCommand::Release { ids: vec![MsgId(3), MsgId(u64::MAX)] },
            DelayCommand::Delete,
        ];
        for cmd in &cmds {
            let bytes = Bytes::from(encode_command(cmd));
            let back = decode_command(&bytes).unwrap();
            assert_eq!(encode_command(&back), bytes.to_vec());
            for n in 0..bytes.len() {
                assert!(decode_command(&bytes.slice(..n)).is_err(), "{cmd:?} cut at {n}");
            }
        }
        let mut m = DelayMachine::durable();
        for (i, now) in [(4, 100), (5, 50)] {
            m.apply(ApplyMeta { index: LogIndex(i), now_ms: now }, cmds[0].clone(), &mut Vec::new());
        }
        let snap = Bytes::from(encode_state(&m));
        let copy = decode_state(&snap).unwrap();
        assert_eq!(encode_state(&copy), snap.to_vec());
        assert_eq!(copy.next_due(), Some(50));
        assert!(decode_state(&snap.slice(..snap.len() - 1)).is_err());
    }
}
