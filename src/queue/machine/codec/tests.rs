//! The queue machine's wire format: round trips, real AMQP properties, replica equivalence
//! after a snapshot, malformed input, and a durable queue surviving a restart.

use super::*;
use crate::raft::{DurableGroup, GroupOptions, LogIndex};
use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, WriteContext, gen_frame};
use amq_protocol::types::{AMQPValue, FieldTable};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A message as a publisher would send it: real content-header bytes with properties.
pub(super) fn message(body: &str) -> Arc<Message> {
    let mut headers = FieldTable::default();
    headers.insert("k".into(), AMQPValue::LongString("v".into()));
    let properties =
        BasicProperties::default().with_delivery_mode(2).with_correlation_id("c-1".into()).with_headers(headers);
    let frame = AMQPFrame::Header(
        1,
        AMQPContentHeader { class_id: 60, body_size: body.len() as u64, properties: properties.clone() },
    );
    let raw = gen_frame(&frame)(WriteContext::from(Vec::new())).unwrap().write;
    let header = Bytes::copy_from_slice(&raw[7..raw.len() - 1]);
    Arc::new(Message {
        exchange: "ex".into(),
        routing_key: "rk".into(),
        properties,
        header,
        body: Bytes::from(body.to_owned()).into(),
    })
}

fn spec(id: u64) -> ConsumerSpec {
    ConsumerSpec {
        id: ConsumerId(id),
        tag: format!("amq.ctag-{id}").into(),
        connection: ConnectionId(3),
        channel: ChannelId(2),
        prefetch: 5,
        credit: Some(4),
        no_ack: false,
        exclusive: true,
        priority: -7,
    }
}

fn all_commands() -> Vec<Command> {
    vec![
        Command::Enqueue { msg: message("hello") },
        Command::Consume(spec(9)),
        Command::Cancel { consumer: ConsumerId(9) },
        Command::Credit { consumer: ConsumerId(9), add: 3 },
        Command::Settle { ids: vec![MsgId(1), MsgId(u64::MAX)], outcome: Outcome::Requeue },
        Command::Get { holder: Holder::Get(ConnectionId(1), ChannelId(65535)), no_ack: true },
        Command::Get { holder: Holder::Consumer(ConsumerId(4)), no_ack: false },
        Command::Purge,
        Command::Delete { if_unused: true, if_empty: false },
        Command::Stats,
        Command::Recover { drop_transient: true },
        Command::Configure(Box::new(Limits {
            message_ttl: Some(5),
            max_length: None,
            max_length_bytes: Some(1 << 40),
            overflow: crate::broker::argument::Overflow::RejectPublishDlx,
            dead_letter: Some(Target { exchange: "dlx".into(), routing_key: None }),
            expires: Some(60_000),
            delivery_limit: Some(3),
            consumer_timeout: None,
        })),
        Command::Failover,
        Command::Attach { consumers: vec![ConsumerId(1), ConsumerId(2 << 40)] },
        Command::Detach { consumers: vec![] },
    ]
}

#[test]
fn commands_stay_small() {
    // Every publish moves a command through a queue inbox by value.
    assert!(std::mem::size_of::<Command>() <= 64, "{}", std::mem::size_of::<Command>());
}

#[test]
fn every_command_round_trips() {
    for cmd in all_commands() {
        let bytes = Bytes::from(encode_command(&cmd));
        let back = decode_command(&bytes).unwrap();
        assert_eq!(encode_command(&back), bytes.to_vec(), "{cmd:?}");
    }
}

#[test]
fn properties_and_body_survive() {
    let bytes = Bytes::from(encode_command(&Command::Enqueue { msg: message("payload") }));
    let Command::Enqueue { msg } = decode_command(&bytes).unwrap() else { panic!() };
    assert_eq!(msg.properties.delivery_mode(), &Some(2));
    assert_eq!(msg.properties.correlation_id().as_ref().map(|s| s.as_str()), Some("c-1"));
    assert!(msg.properties.headers().as_ref().unwrap().contains_key("k"));
    assert_eq!(msg.body.to_vec(), b"payload");
    let body = &msg.body.parts()[0];
    assert!(
        bytes.as_ptr() <= body.as_ptr() && body.as_ptr() < bytes.as_ptr().wrapping_add(bytes.len()),
        "the body is a slice of the entry"
    );
    assert_eq!((msg.exchange.as_str(), msg.routing_key.as_str()), ("ex", "rk"));
}

#[test]
fn truncated_or_unknown_input_is_an_error_not_a_panic() {
    for cmd in all_commands() {
        let bytes = encode_command(&cmd);
        for n in 0..bytes.len() {
            assert!(decode_command(&Bytes::copy_from_slice(&bytes[..n])).is_err(), "{cmd:?} cut at {n}");
        }
    }
    assert!(decode_command(&Bytes::from_static(&[VERSION, 200])).is_err());
    assert!(decode_command(&Bytes::from_static(&[VERSION + 1, tag::PURGE])).is_err());
    let mut trailing = encode_command(&Command::Purge);
    trailing.push(0);
    assert!(decode_command(&Bytes::from(trailing)).is_err());
}

fn apply(m: &mut QueueMachine, index: u64, cmd: Command) -> String {
    let mut fx = Vec::new();
    let r = m.apply(ApplyMeta { index: LogIndex(index), now_ms: 0 }, cmd, &mut fx);
    // Compare replies and effects by their encoded shape (messages by id: a restored replica
    // holds no bodies, it reads them from the log).
    let fx: Vec<String> = fx
        .iter()
        .map(|e| match e {
            Effect::Deliver { consumer, id, msg, redelivered, .. } => {
                let _ = msg;
                format!("deliver {} {} {}", consumer.0, id.0, redelivered)
            }
            other => format!("{other:?}"),
        })
        .collect();
    let r = match r {
        Reply::Got(Some(g)) => format!("got {} {} {}", g.id.0, g.redelivered, g.remaining),
        other => format!("{other:?}").chars().take(60).collect(),
    };
    format!("{r} / {fx:?}")
}

/// A replica restored from a snapshot behaves exactly like the original from then on.
#[test]
fn restored_state_behaves_like_the_original() {
    for seed in 0..50u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let config = QueueConfig { single_active_consumer: seed % 2 == 0, ..QueueConfig::new(QueueKey::new("/", "q")) };
        let mut m = QueueMachine::durable(config);
        let random = |rng: &mut StdRng, step: u64| -> Command {
            match rng.random_range(0..8) {
                0..=2 => Command::Enqueue { msg: message(&format!("m{step}")) },
                3 => Command::Consume(ConsumerSpec { id: ConsumerId(rng.random_range(1..4)), credit: None, ..spec(0) }),
                4 => Command::Settle {
                    ids: vec![MsgId(rng.random_range(1..20))],
                    outcome: if rng.random_bool(0.5) { Outcome::Ack } else { Outcome::Requeue },
                },
                5 => Command::Get { holder: Holder::Get(ConnectionId(1), ChannelId(1)), no_ack: rng.random_bool(0.5) },
                6 => Command::Cancel { consumer: ConsumerId(rng.random_range(1..4)) },
                _ => Command::Credit { consumer: ConsumerId(rng.random_range(1..4)), add: 1 },
            }
        };
        for step in 0..60 {
            let c = random(&mut rng, step);
            apply(&mut m, step + 1, c);
        }
        let snap = Bytes::from(encode_state(&m));
        let mut copy = decode_state(&snap).unwrap();
        assert_eq!(encode_state(&copy), snap.to_vec(), "seed {seed}: state re-encodes identically");
        for step in 60..120 {
            let c = random(&mut rng, step);
            let bytes = Bytes::from(encode_command(&c));
            let c2 = decode_command(&bytes).unwrap();
            assert_eq!(apply(&mut m, step + 1, c), apply(&mut copy, step + 1, c2), "seed {seed} step {step}");
        }
    }
}

/// A queue machine in a durable group keeps its messages, properties and unacked state
/// across a restart; after a snapshot it holds no bodies, reads them from the log, and the log
/// is purged only behind the oldest live message.
#[tokio::test(flavor = "multi_thread")]
async fn a_durable_queue_survives_restart_with_bodies_in_the_log() {
    use crate::storage::Storage;
    let dir = tempfile::tempdir().unwrap();
    let config = || QueueConfig::new(QueueKey::new("/", "orders"));
    let opts = || GroupOptions { purge_batch: 1, ..GroupOptions::default() };
    let get = |no_ack| Command::Get { holder: Holder::Get(ConnectionId(1), ChannelId(1)), no_ack };
    let id;
    let mut ids = Vec::new();
    {
        let s = Storage::open(dir.path()).unwrap();
        id = s.allocate_group().unwrap();
        let g = DurableGroup::open(s.group(id), QueueMachine::durable(config()), opts()).await.unwrap();
        for i in 0..50 {
            let (r, _) = g.propose(1, Command::Enqueue { msg: message(&format!("m{i}")) }).await.unwrap();
            let Reply::Enqueued(id) = r else { panic!("{r:?}") };
            ids.push(id.0);
        }
        for _ in 0..10 {
            assert!(matches!(g.propose(2, get(true)).await.unwrap().0, Reply::Got(Some(_))));
        }
        // One fetched, unacked: it comes back after the restart.
        assert!(matches!(g.propose(2, get(false)).await.unwrap().0, Reply::Got(Some(_))));
        g.snapshot().await.unwrap();
        for _ in 0..100 {
            if g.snapshots_built() > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(g.snapshots_built(), 1);
        // The next proposal purges the log behind the oldest live message (m10).
        g.propose(3, Command::Stats).await.unwrap();
        for _ in 0..100 {
            if g.read_commands(&[ids[9]]).unwrap()[0].is_none() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let read = g.read_commands(&[ids[0], ids[9], ids[10], ids[49]]).unwrap();
        assert!(read[0].is_none() && read[1].is_none(), "gone messages' entries are purged");
        assert!(read[2].is_some() && read[3].is_some(), "live messages' entries are kept");
        g.shutdown().await.unwrap();
        s.close(std::time::Duration::from_secs(10)).await.unwrap();
    }
    let s = Storage::open(dir.path()).unwrap();
    let g = DurableGroup::open(s.group(id), QueueMachine::durable(config()), opts()).await.unwrap();
    assert_eq!(g.read(|m| (m.ready_count(), m.unacked_count(), m.held_bytes())), (39, 1, 0));
    g.propose(4, Command::Recover { drop_transient: false }).await.unwrap();
    let (got, _) = g.propose(5, get(true)).await.unwrap();
    let Reply::Got(Some(got)) = got else { panic!("a message") };
    assert!(got.msg.is_none() && got.redelivered && got.id.0 == ids[10]);
    let Some(Command::Enqueue { msg }) = g.read_commands(&[got.id.0]).unwrap().pop().flatten() else {
        panic!("the body is in the log")
    };
    assert_eq!(msg.body.to_vec(), b"m10");
    assert_eq!(msg.properties.delivery_mode(), &Some(2));
    g.shutdown().await.unwrap();
}
