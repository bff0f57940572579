//! A queue served through a proxy on another node (two routers over the in-process
//! network): confirms, consuming and acking, `basic.get`, errors, and what happens to held
//! messages and consumers when the link breaks.

use super::*;
use crate::ids::{ChannelId, ConnectionId, ConsumerId, QueueKey};
use crate::queue::event::{ClientEvent, Delivery};
use crate::queue::handle::{ConfirmTo, QueueHandle, Request};
use crate::queue::machine::{Command, ConsumerSpec, Holder, Outcome, QueueConfig, Reply};
use crate::queue::runner::{Backend, Hooks};
use crate::queue::{Message, spawn};
use crate::raft::transport::{Duplex, Hello, Loopback, NodeId, Router, RpcKind, Transport, TransportError};
use crate::storage::GroupId;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

fn message(body: &str) -> Arc<Message> {
    Arc::new(Message {
        exchange: String::new(),
        routing_key: "q".into(),
        properties: Default::default(),
        header: Bytes::new(),
        body: Bytes::from(body.to_owned()).into(),
    })
}

fn names() -> origin::NameOf {
    Arc::new(|id| format!("warren@n{id}"))
}

fn hooks() -> Hooks {
    Hooks {
        auto_delete: Arc::new(|_| {}),
        dead_letter: Arc::new(|_, _, _| Vec::new()),
        runners: tokio_util::task::TaskTracker::new(),
    }
}

/// A transport whose streams run through relays that [`Breakable::cut`] ends, as a dying
/// node's connections end.
#[derive(Clone)]
struct Breakable {
    inner: Arc<dyn Transport>,
    cut: watch::Sender<u64>,
}

impl Breakable {
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

async fn relay(a: Duplex, b: Duplex, mut cut: watch::Receiver<u64>) {
    let (Duplex { tx: a_tx, rx: mut a_rx }, Duplex { tx: b_tx, rx: mut b_rx }) = (a, b);
    loop {
        tokio::select! {
            _ = cut.changed() => return,
            Some(f) = a_rx.recv() => if b_tx.send(f).await.is_err() { return },
            Some(f) = b_rx.recv() => if a_tx.send(f).await.is_err() { return },
            else => return,
        }
    }
}

impl Transport for Breakable {
    fn call(&self, t: NodeId, g: GroupId, k: RpcKind, b: Bytes) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        self.inner.call(t, g, k, b)
    }

    fn hello(&self, target: NodeId, me: &Hello) -> BoxFuture<'static, Result<Hello, TransportError>> {
        self.inner.hello(target, me)
    }

    fn open(&self, target: NodeId) -> BoxFuture<'static, Result<Duplex, TransportError>> {
        let (inner, cut) = (self.inner.clone(), self.cut.subscribe());
        Box::pin(async move {
            let far = inner.open(target).await?;
            let (ours, near) = Duplex::pair();
            tokio::spawn(relay(near, far, cut));
            Ok(ours)
        })
    }
}

struct Setup {
    home: QueueHandle,
    proxy: QueueHandle,
    net: Breakable,
    _remote: Arc<Remote>,
}

/// Node 1 is home to queue `q`; node 2 holds a proxy to it.
fn setup() -> Setup {
    let key = QueueKey::new("/", "q");
    let home = spawn(QueueConfig::new(key.clone()), Backend::Memory, None, hooks());
    let loopback = Loopback::default();
    let r1 = Router::new(1);
    let served = home.clone();
    r1.set_acceptor(acceptor(Arc::new(move |k: &QueueKey| (k.name == "q").then(|| (served.clone(), false))), None));
    loopback.join(r1);
    let net = Breakable { inner: loopback.join(Router::new(2)), cut: watch::channel(0).0 };
    let remote = Remote::new(Arc::new(net.clone()), names(), 2, watch::channel(Default::default()).1);
    let proxy = remote.proxy(1, key);
    Setup { home, proxy, net, _remote: remote }
}

async fn call(q: &QueueHandle, cmd: Command) -> Reply {
    let (tx, rx) = oneshot::channel();
    q.tx.send(Request::Call { cmd, reply: tx }).await.expect("the queue takes requests");
    tokio::time::timeout(Duration::from_secs(5), rx).await.expect("answered in time").expect("answered")
}

async fn stats(q: &QueueHandle) -> (u32, u32, u32) {
    match call(q, Command::Stats).await {
        Reply::Stats { messages, consumers, unacked, .. } => (messages, consumers, unacked),
        other => panic!("stats: {other:?}"),
    }
}

/// Waits until the home's counts are these (the link's casts carry no answer).
async fn until_stats(q: &QueueHandle, want: (u32, u32, u32)) {
    for _ in 0..200 {
        if stats(q).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the home's counts stayed {:?}, not {want:?}", stats(q).await);
}

fn spec(id: u64, prefetch: u32) -> ConsumerSpec {
    ConsumerSpec {
        id: ConsumerId(id),
        tag: format!("ctag-{id}").into(),
        connection: ConnectionId(7),
        channel: ChannelId(1),
        prefetch,
        credit: None,
        no_ack: false,
        exclusive: false,
        priority: 0,
    }
}

async fn consume(proxy: &QueueHandle, id: u64, prefetch: u32) -> mpsc::Receiver<ClientEvent> {
    let (sink, events) = mpsc::channel(64);
    let (tx, rx) = oneshot::channel();
    proxy.tx.send(Request::Consume { spec: spec(id, prefetch), sink, reply: tx }).await.unwrap();
    assert!(matches!(rx.await.unwrap(), Reply::Consumed));
    events
}

async fn deliveries(events: &mut mpsc::Receiver<ClientEvent>, n: usize, proxy: &QueueHandle) -> Vec<Delivery> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("deliveries in time") {
            Some(ClientEvent::Deliveries { queue, items, .. }) => {
                assert!(queue.same_queue(proxy), "settles go back through the proxy");
                got.extend(items);
            }
            other => panic!("expected deliveries, got {other:?}"),
        }
    }
    got
}

#[tokio::test]
async fn publishes_are_confirmed_and_consumed_through_the_proxy() {
    let s = setup();
    let (sink, mut confirms) = mpsc::channel(64);
    for seq in 1..=3 {
        let confirm = Some(ConfirmTo { sink: sink.clone(), channel: ChannelId(4), seq });
        s.proxy.tx.send(Request::Publish { msg: message(&format!("m{seq}")), confirm }).await.unwrap();
    }
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        match confirms.recv().await {
            Some(ClientEvent::Confirms { channel, seqs: s, ok: true }) if channel == ChannelId(4) => seqs.extend(s),
            other => panic!("expected positive confirms, got {other:?}"),
        }
    }
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(stats(&s.proxy).await, (3, 0, 0), "stats are answered by the home, through the proxy");

    let mut events = consume(&s.proxy, 1, 0).await;
    let got = deliveries(&mut events, 3, &s.proxy).await;
    let bodies: Vec<Vec<u8>> = got.iter().map(|d| d.msg.body.to_vec()).collect();
    assert_eq!(bodies, vec![b"m1".to_vec(), b"m2".to_vec(), b"m3".to_vec()]);
    assert_eq!(&*got[0].consumer_tag, "ctag-1");
    let ids = vec![got[0].id, got[1].id];
    s.proxy.ctl.send(Request::Cast { cmd: Command::Settle { ids, outcome: Outcome::Ack } }).await.unwrap();
    until_stats(&s.home, (0, 1, 1)).await;
}

#[tokio::test]
async fn get_purge_and_refusals_answer_as_at_home() {
    let s = setup();
    s.proxy.tx.send(Request::Publish { msg: message("only"), confirm: None }).await.unwrap();
    let holder = Holder::Get(ConnectionId(7), ChannelId(1));
    let got = loop {
        match call(&s.proxy, Command::Get { holder, no_ack: false }).await {
            Reply::Got(Some(g)) => break g,
            Reply::Got(None) => tokio::time::sleep(Duration::from_millis(5)).await,
            other => panic!("get: {other:?}"),
        }
    };
    assert_eq!(got.msg.expect("the body travels").body.to_vec(), b"only".to_vec());
    assert!(matches!(call(&s.proxy, Command::Get { holder, no_ack: false }).await, Reply::Got(None)));
    assert_eq!(stats(&s.home).await, (0, 0, 1));
    s.proxy.tx.send(Request::Publish { msg: message("more"), confirm: None }).await.unwrap();
    assert!(matches!(call(&s.proxy, Command::Purge).await, Reply::Purged(1)));
    // A queue the home does not have.
    let other = s._remote.proxy(1, QueueKey::new("/", "nope"));
    match call(&other, Command::Stats).await {
        Reply::Refused(e) => assert_eq!(e.to_string(), "NOT_FOUND - no queue 'nope' in vhost '/'"),
        r => panic!("expected a refusal, got {r:?}"),
    }
}

#[tokio::test]
async fn a_broken_link_cancels_remote_consumers_and_the_home_requeues_what_they_held() {
    let s = setup();
    for i in 0..3 {
        s.proxy.tx.send(Request::Publish { msg: message(&format!("m{i}")), confirm: None }).await.unwrap();
    }
    let mut events = consume(&s.proxy, 1, 2).await;
    deliveries(&mut events, 2, &s.proxy).await;
    until_stats(&s.home, (1, 1, 2)).await;
    s.net.cut();
    match tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("told in time") {
        Some(ClientEvent::ConsumerCancelled { consumer_tag, .. }) => assert_eq!(&*consumer_tag, "ctag-1"),
        other => panic!("expected a cancel, got {other:?}"),
    }
    until_stats(&s.home, (3, 0, 0)).await;
    // The next request opens a new link: a new consumer gets all three, redelivered first.
    let mut events = consume(&s.proxy, 2, 0).await;
    let got = deliveries(&mut events, 3, &s.proxy).await;
    assert_eq!(got.iter().filter(|d| d.redelivered).count(), 2);
}

#[tokio::test]
async fn an_unreachable_home_refuses_with_rabbitmqs_words_and_nacks() {
    let loopback = Loopback::default();
    let remote = Remote::new(loopback.join(Router::new(2)), names(), 2, watch::channel(Default::default()).1);
    let proxy = remote.proxy(1, QueueKey::new("/", "q"));
    match call(&proxy, Command::Stats).await {
        Reply::Refused(e) => {
            assert_eq!(
                e.to_string(),
                "NOT_FOUND - home node 'warren@n1' of queue 'q' in vhost '/' is down or inaccessible"
            )
        }
        r => panic!("expected a refusal, got {r:?}"),
    }
    let (sink, mut confirms) = mpsc::channel(4);
    let confirm = Some(ConfirmTo { sink, channel: ChannelId(1), seq: 9 });
    proxy.tx.send(Request::Publish { msg: message("x"), confirm }).await.unwrap();
    assert!(matches!(confirms.recv().await, Some(ClientEvent::Confirms { seqs, ok: false, .. }) if seqs == vec![9]));
}

/// Waits until `f` holds (bounded).
async fn until(mut f: impl FnMut() -> bool, what: &str) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_home_queue_holding_its_publishers_holds_the_proxys_too_until_it_opens_or_the_link_breaks() {
    let s = setup();
    // As the home queue's runner closes its gate when its consumers fall behind.
    s.home.flow.set(true);
    s.proxy.tx.send(Request::Publish { msg: message("one"), confirm: None }).await.unwrap();
    until(|| s.proxy.flow.is_closed(), "the proxy's gate to close").await;
    s.home.flow.set(false);
    until(|| !s.proxy.flow.is_closed(), "the proxy's gate to open").await;
    // Closed again, then the link breaks: nobody would tell the proxy it opened.
    s.home.flow.set(true);
    s.proxy.tx.send(Request::Publish { msg: message("two"), confirm: None }).await.unwrap();
    until(|| s.proxy.flow.is_closed(), "the proxy's gate to close again").await;
    s.net.cut();
    until(|| !s.proxy.flow.is_closed(), "the proxy's gate to open when the link breaks").await;
    assert!(s.home.flow.is_closed(), "the home's own gate is its runner's");
}
