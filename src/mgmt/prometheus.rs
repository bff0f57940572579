//! The Prometheus endpoint (`GET /metrics` on its own port, RabbitMQ's 15692), in the text
//! exposition format with the metric names of RabbitMQ's `rabbitmq_prometheus` plugin
//! (aggregated form), so its Grafana "RabbitMQ-Overview" dashboard reads Warren unchanged:
//! identity and build info, global message counters (`rabbitmq_global_messages_*_total`,
//! label `protocol="amqp091"`), object counts, queue message gauges summed over queues,
//! resident memory, disk and file descriptors, and the Raft families of quorum queues
//! (`rabbitmq_raft_*`, summed over the group members the node runs).

use super::{Api, queues};
use crate::node::clients::ConnState;
use crate::stats::Stat;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::fmt::Write;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `/metrics` on `listener` until the node shuts down.
pub async fn serve(node: Api, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let app = Router::new().route("/metrics", get(metrics)).with_state(node);
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::error!(error = %e, "prometheus listener failed");
    }
}

/// Appends one metric family with a single sample.
fn family(out: &mut String, name: &str, kind: &str, help: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# TYPE {name} {kind}\n# HELP {name} {help}\n{name}{labels} {value}");
}

fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// RabbitMQ's Raft families (`rabbitmq_raft_*`, from its ra metrics), summed over the
/// members this node runs as the aggregated form sums every per-object metric; plus how
/// many of them lead (Warren's).
fn raft_families(out: &mut String, members: &[crate::raft::durable::MemberStatus]) {
    let sum = |f: fn(&crate::raft::durable::MemberStatus) -> u64| members.iter().map(f).sum::<u64>();
    for (metric, kind, help, value) in [
        ("rabbitmq_raft_term_total", "counter", "Current Raft term number", sum(|m| m.term)),
        ("rabbitmq_raft_log_snapshot_index", "gauge", "Raft log snapshot index", sum(|m| m.snapshot_index)),
        ("rabbitmq_raft_log_last_applied_index", "gauge", "Raft log last applied index", sum(|m| m.last_applied)),
        ("rabbitmq_raft_log_commit_index", "gauge", "Raft log commit index", sum(|m| m.commit_index)),
        ("rabbitmq_raft_log_last_written_index", "gauge", "Raft log last written index", sum(|m| m.last_log_index)),
        ("warren_raft_members", "gauge", "Raft group members on this node", members.len() as u64),
        (
            "warren_raft_leaders",
            "gauge",
            "Raft group members on this node that lead their group",
            members.iter().filter(|m| m.raft_state == "leader").count() as u64,
        ),
    ] {
        family(out, metric, kind, help, "", value);
    }
}

async fn metrics(State(node): State<Api>) -> impl IntoResponse {
    // The queues this node hosts (a classic queue's home, a replicated queue's leader), as
    // RabbitMQ reports each queue on its own node only: dashboards sum over the nodes.
    let handles: Vec<_> = {
        let topo = node.topology();
        let hosted = |k: &crate::ids::QueueKey| {
            let rec = topo.meta.vhosts.get(k.vhost.as_str()).and_then(|v| v.queues.get(k.name.as_str()));
            rec.is_none_or(|r| node.queue_node(r) == node.id())
        };
        topo.queues.iter().filter(|(k, _)| hosted(k)).map(|(_, h)| h.clone()).collect()
    };
    let t = queues::totals(&handles).await;
    let (ready, unacked, consumers, bytes) = (t.messages, t.unacked, t.consumers, t.bytes);
    let clients = node.clients().all();
    let channels: u64 = clients.iter().map(|c| c.channel_count()).sum();
    let name = label_value(node.name());
    let cluster = label_value(&super::overview::cluster_name_of(&node));
    let mut out = String::with_capacity(8 * 1024);
    family(
        &mut out,
        "rabbitmq_identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
        &format!(
            "{{rabbitmq_node=\"{name}\",rabbitmq_cluster=\"{cluster}\",rabbitmq_cluster_permanent_id=\"{cluster}\"}}"
        ),
        1,
    );
    family(
        &mut out,
        "rabbitmq_build_info",
        "untyped",
        "RabbitMQ & Erlang/OTP version info",
        &format!(
            "{{rabbitmq_version=\"{}\",prometheus_plugin_version=\"{}\",prometheus_client_version=\"none\",erlang_version=\"none\",product_name=\"Warren\",product_version=\"{}\"}}",
            super::overview::RABBITMQ_VERSION,
            super::overview::RABBITMQ_VERSION,
            env!("CARGO_PKG_VERSION")
        ),
        1,
    );
    let amqp = "{protocol=\"amqp091\"}";
    let s = node.stats();
    for (metric, help, value) in [
        ("received", "Total number of messages received from publishers", s.get(Stat::Publish)),
        ("confirmed", "Total number of messages confirmed to publishers", s.get(Stat::Confirm)),
        (
            "routed",
            "Total number of messages routed to queues or streams",
            s.get(Stat::Publish).saturating_sub(s.get(Stat::ReturnUnroutable) + s.get(Stat::DropUnroutable)),
        ),
        (
            "unroutable_dropped",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            s.get(Stat::DropUnroutable),
        ),
        (
            "unroutable_returned",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            s.get(Stat::ReturnUnroutable),
        ),
        (
            "delivered",
            "Total number of messages delivered to consumers",
            s.get(Stat::Deliver) + s.get(Stat::DeliverNoAck) + s.get(Stat::Get) + s.get(Stat::GetNoAck),
        ),
        (
            "delivered_consume_manual_ack",
            "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
            s.get(Stat::Deliver),
        ),
        (
            "delivered_consume_auto_ack",
            "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
            s.get(Stat::DeliverNoAck),
        ),
        (
            "delivered_get_manual_ack",
            "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
            s.get(Stat::Get),
        ),
        (
            "delivered_get_auto_ack",
            "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
            s.get(Stat::GetNoAck),
        ),
        ("get_empty", "Total number of times basic.get operations fetched no message", s.get(Stat::GetEmpty)),
        ("redelivered", "Total number of messages redelivered to consumers", s.get(Stat::Redeliver)),
        ("acknowledged", "Total number of message acknowledgements received from consumers", s.get(Stat::Ack)),
    ] {
        family(&mut out, &format!("rabbitmq_global_messages_{metric}_total"), "counter", help, amqp, value);
    }
    let fds = crate::alarm::open_fds().unwrap_or(0);
    for (metric, help, value) in [
        ("rabbitmq_connections", "Connections currently open", clients.len() as u64),
        ("rabbitmq_channels", "Channels currently open", channels),
        ("rabbitmq_consumers", "Consumers currently connected", consumers),
        ("rabbitmq_queues", "Queues available", handles.len() as u64),
        ("rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers", ready),
        ("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged", unacked),
        ("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages - total queue depth", ready + unacked),
        ("rabbitmq_queue_messages_bytes", "Size in bytes of ready and unacknowledged messages", bytes),
        ("rabbitmq_process_resident_memory_bytes", "Memory used in bytes", crate::alarm::resident_bytes().unwrap_or(0)),
        ("rabbitmq_resident_memory_limit_bytes", "Memory high watermark in bytes", node.memory_limit()),
        (
            "rabbitmq_disk_space_available_bytes",
            "Disk space available in bytes",
            crate::alarm::free_bytes(&node.config().data_dir).unwrap_or(0),
        ),
        ("rabbitmq_disk_space_available_limit_bytes", "Free disk space low watermark in bytes", node.disk_free_limit()),
        ("rabbitmq_process_open_fds", "Open file descriptors", fds),
        ("rabbitmq_process_max_fds", "Open file descriptors limit", crate::alarm::fd_limit().unwrap_or(0)),
        (
            "warren_connections_flow",
            "Connections whose reads are held by a queue behind its consumers (state flow)",
            clients.iter().filter(|c| c.state() == ConnState::Flow).count() as u64,
        ),
        (
            "warren_queues_flow",
            "Queues holding their publishers while their consumers catch up",
            handles.iter().filter(|h| h.flow.is_closed()).count() as u64,
        ),
    ] {
        family(&mut out, metric, "gauge", help, "", value);
    }
    let alarms = node.local_alarms();
    family(
        &mut out,
        "rabbitmq_alarms_memory_used_watermark",
        "gauge",
        "is 1 if VM memory watermark alarm is in effect",
        "",
        u8::from(alarms.memory),
    );
    family(
        &mut out,
        "rabbitmq_alarms_free_disk_space_watermark",
        "gauge",
        "is 1 if free disk space watermark alarm is in effect",
        "",
        u8::from(alarms.disk),
    );
    raft_families(&mut out, &node.local_raft_members().await);
    family(&mut out, "rabbitmq_erlang_uptime_seconds", "gauge", "Node uptime", "", node.uptime_ms() as f64 / 1000.0);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}
