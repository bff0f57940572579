//! openraft's state machine around a Warren machine: applies committed entries in chunks
//! (answering local proposers with the reply and effects), builds and installs snapshots
//! (the machine's encoded state beside openraft's meta, in the group's state column).

use super::DurableMachine;
use crate::raft::types::{Out, Warren};
use crate::raft::{ApplyMeta, LogIndex};
use crate::storage::{GroupLog, StateTag};
use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use std::io::{self, Cursor};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

type C = Warren;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

pub(super) struct SmState<M> {
    pub(super) machine: M,
    pub(super) applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    /// Entries applied since the last snapshot (built or installed).
    pub(super) since_snapshot: u64,
    /// Snapshots built (for tests and metrics).
    pub(super) snapshots_built: u64,
    /// Index of the last snapshot built or installed.
    pub(super) snapshot_index: Option<u64>,
}

/// openraft's state machine around a Warren machine.
pub(crate) struct SmAdapter<M> {
    pub(super) state: Arc<Mutex<SmState<M>>>,
    pub(super) log: GroupLog,
    /// Woken after each snapshot (the group's purger waits on it).
    pub(super) snapshotted: Arc<Notify>,
}

impl<M> Clone for SmAdapter<M> {
    fn clone(&self) -> Self {
        Self { state: self.state.clone(), log: self.log.clone(), snapshotted: self.snapshotted.clone() }
    }
}

impl<M> SmAdapter<M> {
    /// A fresh adapter for `machine`, keeping its snapshots beside `log`.
    pub(crate) fn new(machine: M, log: GroupLog) -> Self {
        let state = SmState {
            machine,
            applied: None,
            membership: Default::default(),
            since_snapshot: 0,
            snapshots_built: 0,
            snapshot_index: None,
        };
        Self { state: Arc::new(Mutex::new(state)), log, snapshotted: Arc::new(Notify::new()) }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, SmState<M>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Entries applied per lock of the machine.
const APPLY_CHUNK: usize = 1024;

/// A stored snapshot: openraft's meta plus the machine's encoded state.
fn encode_snapshot(meta: &SnapshotMetaOf<C>, state: &[u8]) -> io::Result<Vec<u8>> {
    bincode::serde::encode_to_vec((meta, state), bincode::config::standard()).map_err(invalid)
}

fn decode_snapshot(b: &[u8]) -> io::Result<(SnapshotMetaOf<C>, Vec<u8>)> {
    bincode::serde::decode_from_slice(b, bincode::config::standard()).map(|(v, _)| v).map_err(invalid)
}

impl<M: DurableMachine> RaftSnapshotBuilder<C> for SmAdapter<M> {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Cursor<Vec<u8>>>, io::Error> {
        let (meta, data) = {
            let mut s = self.lock();
            s.since_snapshot = 0;
            s.snapshots_built += 1;
            let meta = SnapshotMetaOf::<C> { last_log_id: s.applied.clone(), last_membership: s.membership.clone() };
            s.snapshot_index = s.applied.as_ref().map(|l| l.index);
            (meta, s.machine.encode_state())
        };
        self.log.save_state(StateTag::Snapshot, &encode_snapshot(&meta, &data)?).map_err(io::Error::other)?;
        self.snapshotted.notify_one();
        Ok(SnapshotOf::<C, Cursor<Vec<u8>>> { meta, snapshot: Cursor::new(data) })
    }
}

impl<M: DurableMachine> SmAdapter<M> {
    /// Applies committed entries and answers their proposers (if any, in this process).
    fn apply_chunk(&self, batch: &mut Vec<EntryResponder<C>>) -> Result<(), io::Error> {
        let mut replies = Vec::with_capacity(batch.len());
        {
            let mut s = self.lock();
            for (entry, responder) in batch.drain(..) {
                let out = match &entry.payload {
                    EntryPayload::Blank => Out::default(),
                    EntryPayload::Membership(m) => {
                        s.membership = StoredMembershipOf::<C>::new(Some(entry.log_id.clone()), m.clone());
                        Out::default()
                    }
                    EntryPayload::Normal(p) => {
                        // A command this build cannot read stops the group (fail-stop), never skips.
                        let cmd = M::decode_command(&p.cmd).map_err(invalid)?;
                        let meta = ApplyMeta { index: LogIndex(entry.log_id.index), now_ms: p.now_ms };
                        let mut effects = Vec::new();
                        let reply = s.machine.apply(meta, cmd, &mut effects);
                        if responder.is_some() {
                            Out { inner: Some(Box::new((reply, effects))) }
                        } else {
                            Out::default()
                        }
                    }
                };
                s.applied = Some(entry.log_id.clone());
                s.since_snapshot += 1;
                replies.push((responder, out));
            }
        }
        for (responder, out) in replies {
            if let Some(r) = responder {
                r.send(out);
            }
        }
        Ok(())
    }
}

impl<M: DurableMachine> RaftStateMachine<C> for SmAdapter<M> {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let s = self.lock();
        Ok((s.applied.clone(), s.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        // In chunks, collected first (a std mutex guard is never held across an await): after a
        // restart the stream is the whole log behind the snapshot.
        let mut batch = Vec::new();
        let mut done = false;
        while !done {
            while batch.len() < APPLY_CHUNK {
                match entries.try_next().await? {
                    Some(item) => batch.push(item),
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            self.apply_chunk(&mut batch)?;
        }
        Ok(())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = bytes::Bytes::from(snapshot.into_inner());
        let machine = M::decode_state(&data).map_err(invalid)?;
        self.log.save_state(StateTag::Snapshot, &encode_snapshot(meta, &data)?).map_err(io::Error::other)?;
        let mut s = self.lock();
        s.machine = machine;
        s.since_snapshot = 0;
        s.applied = meta.last_log_id.clone();
        s.snapshot_index = s.applied.as_ref().map(|l| l.index);
        s.membership = meta.last_membership.clone();
        self.snapshotted.notify_one();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Self::SnapshotData>>, io::Error> {
        match self.log.read_state(StateTag::Snapshot).map_err(io::Error::other)? {
            Some(b) => {
                let (meta, data) = decode_snapshot(&b)?;
                Ok(Some(SnapshotOf::<C, Cursor<Vec<u8>>> { meta, snapshot: Cursor::new(data) }))
            }
            None => Ok(None),
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<Self::SnapshotBuilder> {
        let defer = {
            let s = self.lock();
            !force && s.since_snapshot < s.machine.state_weight()
        };
        (!defer).then(|| self.clone())
    }
}
