//! The seed notes' working modes, end to end with lapin: hello world, work queues (including
//! the fair-dispatch experiment), publish/subscribe, routing, topics and RPC.

mod common;

use common::Broker;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Receives `n` bodies from a consumer (auto-ack), or fails after 5 s.
async fn take(ch: &Channel, q: &str, n: usize) -> Vec<String> {
    let mut c = ch
        .basic_consume(
            q.into(),
            "".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let d =
            tokio::time::timeout(Duration::from_secs(5), c.next()).await.expect("delivery in time").unwrap().unwrap();
        out.push(String::from_utf8(d.data).unwrap());
    }
    out
}

async fn drained(ch: &Channel, q: &str) -> bool {
    ch.basic_get(q.into(), BasicGetOptions { no_ack: true }).await.unwrap().is_none()
}

#[tokio::test(flavor = "multi_thread")]
async fn hello_world() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    common::declare(&ch, "hello").await;
    for i in 0..100 {
        common::publish(&ch, "", "hello", format!("Hello World {i}!").as_bytes()).await;
    }
    let got = take(&ch, "hello", 100).await;
    assert_eq!(got[0], "Hello World 0!");
    assert_eq!(got[99], "Hello World 99!");
    b.stop().await;
}

/// The seed's dispatch experiment: 10 messages, a slow and a fast consumer. Without prefetch
/// they split 5/5; with prefetch 1 the slow one gets about 1; with auto-ack 5/5 again.
async fn dispatch(prefetch: Option<u16>, auto_ack: bool) -> (usize, usize) {
    let b = Broker::start().await;
    let (_pc, pch) = b.channel().await;
    pch.exchange_declare("e".into(), ExchangeKind::Direct, ExchangeDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    common::declare(&pch, "q").await;
    pch.queue_bind("q".into(), "e".into(), "q".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let total = Arc::new(AtomicUsize::new(0));
    let mut counts = Vec::new();
    let mut conns = Vec::new();
    for slow in [true, false] {
        let (c, ch) = b.channel().await;
        if let Some(n) = prefetch {
            ch.basic_qos(n, BasicQosOptions::default()).await.unwrap();
        }
        let mut consumer = ch
            .basic_consume(
                "q".into(),
                "".into(),
                BasicConsumeOptions { no_ack: auto_ack, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let (count2, total2) = (count.clone(), total.clone());
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                if slow {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                count2.fetch_add(1, Ordering::SeqCst);
                total2.fetch_add(1, Ordering::SeqCst);
                if !auto_ack {
                    d.ack(BasicAckOptions::default()).await.unwrap();
                }
            }
        });
        counts.push(count);
        conns.push((c, ch));
    }
    for i in 0..10 {
        common::publish(&pch, "e", "q", i.to_string().as_bytes()).await;
    }
    common::eventually(|| total.load(Ordering::SeqCst) == 10, "all 10 messages consumed").await;
    let r = (counts[0].load(Ordering::SeqCst), counts[1].load(Ordering::SeqCst));
    b.stop().await;
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn work_queue_round_robin_without_prefetch() {
    assert_eq!(dispatch(None, false).await, (5, 5));
}

#[tokio::test(flavor = "multi_thread")]
async fn work_queue_fair_dispatch_with_prefetch_one() {
    let (slow, fast) = dispatch(Some(1), false).await;
    assert!(slow <= 2 && fast >= 8, "slow {slow}, fast {fast}");
}

#[tokio::test(flavor = "multi_thread")]
async fn work_queue_auto_ack_ignores_prefetch() {
    assert_eq!(dispatch(Some(1), true).await, (5, 5));
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_subscribe_fanout_to_server_named_queues() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.exchange_declare(
        "pubsub".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut queues = Vec::new();
    for _ in 0..3 {
        let q = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap();
        assert!(q.name().as_str().starts_with("amq.gen-"));
        ch.queue_bind(q.name().clone(), "pubsub".into(), "".into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .unwrap();
        queues.push(q.name().to_string());
    }
    common::publish(&ch, "pubsub", "ignored", b"news").await;
    for q in &queues {
        assert_eq!(take(&ch, q, 1).await, vec!["news"]);
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_direct_by_severity() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.exchange_declare("log".into(), ExchangeKind::Direct, ExchangeDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    common::declare(&ch, "errors").await;
    common::declare(&ch, "all").await;
    ch.queue_bind("errors".into(), "log".into(), "ERROR".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
    for sev in ["ERROR", "WARN", "INFO"] {
        ch.queue_bind("all".into(), "log".into(), sev.into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .unwrap();
    }
    for sev in ["INFO", "ERROR", "WARN", "DEBUG"] {
        common::publish(&ch, "log", sev, sev.as_bytes()).await;
    }
    assert_eq!(take(&ch, "errors", 1).await, vec!["ERROR"]);
    assert_eq!(take(&ch, "all", 3).await, vec!["INFO", "ERROR", "WARN"]);
    assert!(drained(&ch, "errors").await && drained(&ch, "all").await);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_wildcards() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.exchange_declare("t".into(), ExchangeKind::Topic, ExchangeDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let bindings = [("star", "*.orange.*"), ("hash", "lazy.#"), ("rabbit", "*.*.rabbit"), ("all", "#")];
    for (q, key) in bindings {
        common::declare(&ch, q).await;
        ch.queue_bind(q.into(), "t".into(), key.into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .unwrap();
    }
    for rk in [
        "quick.orange.rabbit",
        "lazy.orange.elephant",
        "quick.orange.fox",
        "lazy.brown.fox",
        "lazy",
        "quick.brown.fox",
        "orange",
        "quick.orange.male.rabbit",
    ] {
        common::publish(&ch, "t", rk, rk.as_bytes()).await;
    }
    assert_eq!(take(&ch, "star", 3).await, vec!["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox"]);
    assert_eq!(take(&ch, "hash", 3).await, vec!["lazy.orange.elephant", "lazy.brown.fox", "lazy"]);
    assert_eq!(take(&ch, "rabbit", 1).await, vec!["quick.orange.rabbit"]);
    assert_eq!(take(&ch, "all", 8).await.len(), 8);
    for (q, _) in bindings {
        assert!(drained(&ch, q).await, "{q} has extra messages");
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_with_reply_queue_and_correlation_id() {
    let b = Broker::start().await;
    let (_sc, server) = b.channel().await;
    common::declare(&server, "rpc_queue").await;
    let mut requests = server
        .basic_consume("rpc_queue".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let srv = server.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = requests.next().await {
            let n: u64 = String::from_utf8_lossy(&d.data).parse().unwrap();
            let reply_to = d.properties.reply_to().clone().unwrap();
            let props = BasicProperties::default().with_correlation_id(d.properties.correlation_id().clone().unwrap());
            srv.basic_publish(
                "".into(),
                reply_to,
                BasicPublishOptions::default(),
                (n * n).to_string().as_bytes(),
                props,
            )
            .await
            .unwrap();
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
    let (_cc, client) = b.channel().await;
    let callback = client
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    let mut replies = client
        .basic_consume(
            callback.name().clone(),
            "".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for n in [3u64, 7] {
        let corr = format!("req-{n}");
        let props =
            BasicProperties::default().with_reply_to(callback.name().clone()).with_correlation_id(corr.as_str().into());
        client
            .basic_publish(
                "".into(),
                "rpc_queue".into(),
                BasicPublishOptions::default(),
                n.to_string().as_bytes(),
                props,
            )
            .await
            .unwrap();
        let d = common::next_delivery(&mut replies).await;
        assert_eq!(d.properties.correlation_id().as_ref().map(|s| s.as_str()), Some(corr.as_str()));
        assert_eq!(String::from_utf8(d.data).unwrap(), (n * n).to_string());
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_with_direct_reply_to() {
    let b = Broker::start().await;
    let (_sc, server) = b.channel().await;
    common::declare(&server, "rpc").await;
    let mut requests = server
        .basic_consume(
            "rpc".into(),
            "".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let srv = server.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = requests.next().await {
            let reply_to = d.properties.reply_to().clone().unwrap();
            assert!(reply_to.as_str().starts_with("amq.rabbitmq.reply-to."), "{reply_to:?}");
            let mut body = d.data.clone();
            body.reverse();
            srv.basic_publish("".into(), reply_to, BasicPublishOptions::default(), &body, BasicProperties::default())
                .await
                .unwrap();
        }
    });
    let (_cc, client) = b.channel().await;
    let mut replies = client
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let props = BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into());
    client.basic_publish("".into(), "rpc".into(), BasicPublishOptions::default(), b"abc", props).await.unwrap();
    let d = common::next_delivery(&mut replies).await;
    assert_eq!(d.data, b"cba");
    b.stop().await;
}
