//! Raft calls to one peer over one long-lived `Calls` stream: a [`Link`] numbers each call,
//! writes it to the stream and hands each reply, as it comes back in any order, to the caller
//! waiting for that number.
//!
//! A stream costs each call about half the round trip of a unary RPC (measured on loopback:
//! no HTTP/2 stream to open, no headers, fewer task hops on either side); a publisher's
//! confirm waits for one (a follower's append) on every message.
//!
//! What a caller learns when the link fails keeps the transport's promise: a call the stream
//! never took is [`TransportError::NotConnected`] (it did not leave this node, so a forwarded
//! proposal may be sent again); a call taken and not answered is `Unreachable` (it may have
//! arrived). A failed link is dropped and the next call opens another.

use super::auth::Credentials;
use super::pb::cluster_client::ClusterClient;
use super::pb::{RaftReply, RaftRequest, raft_reply::Outcome};
use crate::raft::transport::{NodeId, TransportError};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::transport::Channel;

/// Calls queued on a link before callers wait for room (back-pressure).
const QUEUED: usize = 1024;

type Answer = oneshot::Sender<Result<Bytes, TransportError>>;

/// A call on its way to the stream.
struct Call {
    req: RaftRequest,
    answer: Answer,
}

/// The calling side of one peer's `Calls` stream.
#[derive(Clone)]
pub(super) struct Link {
    /// Tells links apart (a failed link removes itself from its transport, not its successor).
    pub id: u64,
    calls: mpsc::Sender<Call>,
    /// Why the link ended, once it has.
    ended: watch::Receiver<Option<Ended>>,
}

/// How a link ended.
#[derive(Clone, Debug)]
enum Ended {
    /// The stream could not be opened: no call reached the node.
    NotOpened(TransportError),
    /// The stream broke (or the node ended it).
    Broke(String),
}

/// Numbers links of one process.
static LINKS: AtomicU64 = AtomicU64::new(1);

impl Link {
    /// Opens a link to `target` over `channel`; `gone` runs once it has failed.
    pub fn open(
        channel: Channel,
        creds: Credentials,
        target: NodeId,
        max_message: usize,
        gone: impl FnOnce(u64) + Send + 'static,
    ) -> Link {
        let id = LINKS.fetch_add(1, Ordering::Relaxed);
        let (calls, queued) = mpsc::channel::<Call>(QUEUED);
        let waiting: Arc<Mutex<Waiting>> = Arc::default();
        let (end, ended) = watch::channel(None);
        let gone = move |how: Ended| {
            gone(id);
            end.send_replace(Some(how));
        };
        tokio::spawn(drive(channel, creds, target, max_message, queued, waiting, gone));
        Link { id, calls, ended }
    }

    /// Sends one request and waits for its reply (the caller bounds the wait).
    pub async fn call(&self, target: NodeId, req: RaftRequest) -> Result<Bytes, TransportError> {
        let (answer, answered) = oneshot::channel();
        if self.calls.send(Call { req, answer }).await.is_ok()
            && let Ok(answer) = answered.await
        {
            return answer;
        }
        // Dropped unanswered: the stream never took the call, and the link has ended (or is
        // ending: its driver says why once the stream is dropped).
        let mut ended = self.ended.clone();
        let how = ended.wait_for(Option::is_some).await.ok().and_then(|h| h.clone());
        Err(match how {
            Some(Ended::NotOpened(e)) => e,
            Some(Ended::Broke(why)) => TransportError::NotConnected { node: target, reason: why },
            None => TransportError::NotConnected { node: target, reason: "the link closed".into() },
        })
    }
}

/// Opens the stream, reads its replies until it ends, then fails the calls left waiting.
async fn drive(
    channel: Channel,
    creds: Credentials,
    target: NodeId,
    max_message: usize,
    queued: mpsc::Receiver<Call>,
    waiting: Arc<Mutex<Waiting>>,
    gone: impl FnOnce(Ended),
) {
    let mut client =
        ClusterClient::new(channel).max_decoding_message_size(max_message).max_encoding_message_size(max_message);
    // A call is numbered and waits for its reply from the moment the stream takes it.
    let taken = waiting.clone();
    let mut next = 0u64;
    let requests = tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(queued), move |c| {
        next += 1;
        let mut w = lock(&taken);
        match &mut w.closed {
            None => {
                w.calls.insert(next, c.answer);
            }
            // Taken after the link failed: whether it still leaves is unknown.
            Some(failed) => {
                let _ = c.answer.send(Err(failed.clone()));
            }
        }
        RaftRequest { call: next, ..c.req }
    });
    let mut req = tonic::Request::new(requests);
    creds.attach(&mut req);
    let how = match client.calls(req).await {
        Ok(replies) => {
            let mut replies = replies.into_inner();
            loop {
                match replies.message().await {
                    Ok(Some(r)) => {
                        let call = r.call;
                        if let Some(a) = lock(&waiting).calls.remove(&call) {
                            let _ = a.send(outcome(target, r));
                        }
                    }
                    Ok(None) => break Ended::Broke("the node ended the stream".to_owned()),
                    Err(s) => break Ended::Broke(s.message().to_owned()),
                }
            }
        }
        Err(s) => Ended::NotOpened(super::client::failed(target, s)),
    };
    // Calls the stream took may have arrived; those it did not are dropped with the stream
    // (their callers hear NotConnected).
    let failed = match &how {
        Ended::NotOpened(e) => e.clone(),
        Ended::Broke(why) => TransportError::Unreachable { node: target, reason: why.clone() },
    };
    tracing::debug!(peer = target, reason = %failed, "a Raft link to a peer closed");
    let left: Vec<Answer> = {
        let mut w = lock(&waiting);
        w.closed = Some(failed.clone());
        w.calls.drain().map(|(_, a)| a).collect()
    };
    for a in left {
        let _ = a.send(Err(failed.clone()));
    }
    gone(how);
}

/// What a reply says.
pub(super) fn outcome(target: NodeId, r: RaftReply) -> Result<Bytes, TransportError> {
    match r.outcome {
        Some(Outcome::Body(b)) => Ok(b),
        Some(Outcome::NoGroup(g)) => Err(TransportError::NoGroup { node: target, group: g }),
        Some(Outcome::Malformed(m)) => Err(TransportError::Malformed(m)),
        Some(Outcome::Refused(m)) => Err(TransportError::Unreachable { node: target, reason: m }),
        None => Err(TransportError::Malformed("empty reply".into())),
    }
}

/// The calls a link's stream took and that wait for their replies.
#[derive(Default)]
struct Waiting {
    calls: HashMap<u64, Answer>,
    /// What the calls of the failed link hear, once it has failed.
    closed: Option<TransportError>,
}

fn lock(m: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
