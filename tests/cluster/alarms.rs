//! A resource alarm on one node blocks publishers on every node, as RabbitMQ's alarms do:
//! with node 2's memory threshold set to one byte (`warren ctl set_vm_memory_high_watermark
//! absolute 1`), a publisher connected to node 1 gets no confirm (its connection is no longer
//! read), node 1's `alarms` health check and `/api/nodes` name node 2 (its `local-alarms` check
//! stays green; `/api/nodes` shows node 2 as node 2 describes itself); once node 2's threshold
//! is back, the publish is confirmed.

use super::{channel, harness::Cluster};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use std::time::Duration;

/// How long the health checks may take to see an alarm come or go.
const WAIT: Duration = Duration::from_secs(20);

async fn publish(ch: &Channel, body: &str) -> lapin::PublisherConfirm {
    let props = BasicProperties::default().with_delivery_mode(2);
    ch.basic_publish("".into(), "held".into(), BasicPublishOptions::default(), body.as_bytes(), props).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_on_one_node_blocks_publishers_on_every_node() {
    let mut c = Cluster::new(3);
    c.start_all();
    let (_c0, ch) = channel(&c, 0).await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("held".into(), durable, args).await.unwrap();
    assert!(publish(&ch, "before").await.await.unwrap().is_ack());

    let out = c.ctl(1, &["set_vm_memory_high_watermark", "absolute", "1"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.until_http(0, "/api/health/checks/alarms", "node 2's memory alarm", WAIT, |s, b| {
        s == 503 && b.contains("warren@n2") && b.contains("memory")
    })
    .await;
    let (status, _) = c.http_get(0, "/api/health/checks/local-alarms").await;
    assert_eq!(status, 200, "node 1 has no alarm of its own");
    let (_, nodes) = c.http_get(0, "/api/nodes").await;
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    let n2 = nodes.as_array().unwrap().iter().find(|n| n["name"] == "warren@n2").expect("node 2 listed");
    assert_eq!(n2["mem_alarm"], true, "{n2}");
    // Described by node 2 itself, as RabbitMQ's nodes table shows every node: its threshold,
    // its memory in use, its uptime.
    assert_eq!(n2["mem_limit"], 1, "{n2}");
    assert!(n2["mem_used"].as_u64().unwrap_or(0) > 0 && n2["uptime"].as_u64().is_some(), "{n2}");

    // Node 1 blocks its publisher (lapin then holds its writes) and reads nothing from it:
    // the publish is not confirmed while the alarm holds.
    let held = tokio::spawn({
        let ch = ch.clone();
        async move { publish(&ch, "held back").await.await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!held.is_finished(), "confirmed during the alarm");

    let out = c.ctl(1, &["set_vm_memory_high_watermark", "0.9"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let confirm = tokio::time::timeout(Duration::from_secs(15), held).await.expect("confirmed after the alarm cleared");
    assert!(confirm.unwrap().unwrap().is_ack());
    c.until_http(0, "/api/health/checks/alarms", "no alarm", WAIT, |s, _| s == 200).await;
}
