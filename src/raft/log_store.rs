//! openraft's `RaftLogStorage` on the node's RocksDB (`storage::GroupLog`).
//!
//! Contract (openraft alpha.34, `storage/v2/raft_log_storage.rs`): appended entries are
//! readable when `append` returns and durable when its callback fires; the callback comes from
//! the storage's group-commit syncer, so one fsync serves every group that appended meanwhile.
//! A vote is on disk before `save_vote` returns. Entries and state are encoded with bincode.

use super::types::{Payload, Warren};
use crate::storage::{GroupLog, StateTag, StorageError};
use futures::{Stream, StreamExt};
use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{EntryPayload, LogState, OptionalSend, RaftLogReader};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

type C = Warren;

/// One group's Raft log.
#[derive(Clone)]
pub struct LogStore {
    log: GroupLog,
}

impl LogStore {
    pub fn new(log: GroupLog) -> Self {
        Self { log }
    }
}

/// Entries read at a time when streaming them to the state machine.
const STREAM_CHUNK: u64 = 1024;

/// A range's bounds as `start..end`.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(x) => *x,
        Bound::Excluded(x) => x.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(x) => x.saturating_add(1),
        Bound::Excluded(x) => *x,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

fn io_err(e: StorageError) -> io::Error {
    io::Error::other(e.to_string())
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, io::Error> {
    bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, io::Error> {
    bincode::serde::decode_from_slice(b, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl LogStore {
    fn read_state<T: serde::de::DeserializeOwned>(&self, tag: StateTag) -> Result<Option<T>, io::Error> {
        match self.log.read_state(tag).map_err(io_err)? {
            Some(b) => decode(&b).map(Some),
            None => Ok(None),
        }
    }
}

impl LogStore {
    /// The payloads of the entries at `indexes` (in that order), from the log or those kept
    /// beside it (`GroupLog::keep`); `None` where there is no entry or it carries no command.
    pub fn payloads_at(&self, indexes: &[u64]) -> Result<Vec<Option<Payload>>, io::Error> {
        let raw = self.log.entries_or_kept_at(indexes).map_err(io_err)?;
        raw.into_iter()
            .map(|b| match b {
                None => Ok(None),
                Some(b) => match decode::<EntryOf<C>>(&b)?.payload {
                    EntryPayload::Normal(p) => Ok(Some(p)),
                    _ => Ok(None),
                },
            })
            .collect()
    }
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        let (start, end) = bounds(&range);
        if start >= end {
            return Ok(Vec::new());
        }
        self.log.entries(start..end).map_err(io_err)?.iter().map(|(_, b)| decode(b)).collect()
    }

    /// Entries to apply, read [`STREAM_CHUNK`] at a time: after a restart the whole log behind
    /// the last snapshot is applied in one go, and openraft's default reads it all into memory
    /// first (millions of message bodies).
    async fn entries_stream<RB>(
        &mut self,
        range: RB,
    ) -> impl Stream<Item = Result<EntryOf<C>, io::Error>> + OptionalSend
    where
        RB: RangeBounds<u64> + Clone + Debug + OptionalSend,
    {
        let (start, end) = bounds(&range);
        let chunks = futures::stream::unfold((self.clone(), start), move |(mut me, next)| async move {
            if next >= end {
                return None;
            }
            let upto = next.saturating_add(STREAM_CHUNK).min(end);
            let chunk = match me.try_get_log_entries(next..upto).await {
                Ok(entries) => entries.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            };
            // A short chunk means the log ends here (or an error): stop after it.
            let last = if chunk.len() as u64 == upto - next { upto } else { end };
            Some((futures::stream::iter(chunk), (me, last)))
        });
        chunks.flatten().fuse()
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        self.read_state(StateTag::Vote)
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let last_purged_log_id: Option<LogIdOf<C>> = self.read_state(StateTag::Purged)?;
        let last_log_id = match self.log.last().map_err(io_err)? {
            Some((_, b)) => Some(decode::<EntryOf<C>>(&b)?.log_id()),
            None => last_purged_log_id.clone(),
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        // A synced write: the vote is on disk before we return (openraft's contract).
        self.log.save_state(StateTag::Vote, &encode(vote)?).map_err(io_err)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((e.index(), encode(&e)?));
        }
        self.log.append(encoded, Box::new(move |r| callback.io_completed(r.map_err(io_err)))).map_err(io_err)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        self.log.truncate_from(from).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        // Record the purge point first, so a crash in between never loses it.
        self.log.save_state(StateTag::Purged, &encode(&log_id)?).map_err(io_err)?;
        self.log.purge_upto(log_id.index()).map_err(io_err)
    }
}

#[cfg(test)]
mod suite;
