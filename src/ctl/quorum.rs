//! Quorum queues' members and leaders, as `rabbitmq-queues` names the commands:
//! `quorum_status`, `add_member`, `delete_member`, `grow`, `shrink`, `transfer_leadership`,
//! `rebalance` (over `/api/queues/quorum/…` and `/api/rebalance/queues`).

use super::http::path;
use super::{CtlError, Ctx};
use serde_json::{Value, json};

/// The columns of `quorum_status`, in RabbitMQ's order (its "Machine Version" aside).
const STATUS: [&str; 8] = [
    "node_name",
    "raft_state",
    "membership",
    "last_log_index",
    "last_applied",
    "commit_index",
    "snapshot_index",
    "term",
];

pub fn quorum_status(ctx: &Ctx, vhost: &str, queue: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Status of quorum queue {queue} on node {} ...", ctx.api.base()));
    let rows = ctx.api.list(&path(&["queues", "quorum", vhost, queue, "status"]))?;
    let columns: Vec<String> = STATUS.iter().map(|c| c.to_string()).collect();
    let cells: Vec<Vec<Value>> =
        rows.iter().map(|r| STATUS.iter().map(|c| r.get(*c).cloned().unwrap_or(Value::Null)).collect()).collect();
    ctx.out.table(&columns, &cells);
    Ok(())
}

pub fn transfer_leadership(ctx: &Ctx, vhost: &str, queue: &str, node: Option<&str>) -> Result<(), CtlError> {
    let to = node.unwrap_or("the best candidate");
    ctx.out.info(&format!("Transferring leadership of quorum queue {queue} in vhost {vhost} to {to} ..."));
    let body = node.map_or_else(|| json!({}), |n| json!({ "node": n }));
    let answer =
        ctx.api.call("POST", &path(&["queues", "quorum", vhost, queue, "transfer_leadership"]), Some(&body))?;
    let leader = answer.get("leader").and_then(Value::as_str).unwrap_or("?");
    println!("Leader is now {leader}");
    Ok(())
}

pub fn rebalance(ctx: &Ctx, kind: &str) -> Result<(), CtlError> {
    if kind != "quorum" && kind != "all" {
        return Err(CtlError::Usage {
            command: "rebalance".into(),
            message: format!("only quorum queues have leaders to rebalance, not '{kind}'"),
        });
    }
    ctx.out.info("Rebalancing leaders of quorum queues ...");
    let answer = ctx.api.call("POST", &path(&["rebalance", "queues"]), Some(&json!({})))?;
    let columns = vec!["node_name".to_string(), "number_of_quorum_leaders".to_string()];
    let rows: Vec<Vec<Value>> = answer
        .get("leaders")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(n, c)| vec![Value::String(n.clone()), c.clone()]).collect())
        .unwrap_or_default();
    ctx.out.table(&columns, &rows);
    Ok(())
}

pub fn add_member(ctx: &Ctx, vhost: &str, queue: &str, node: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Adding a replica for queue {queue} on node {node}..."));
    ctx.api.call(
        "POST",
        &path(&["queues", "quorum", vhost, queue, "replicas", "add"]),
        Some(&json!({ "node": node })),
    )?;
    Ok(())
}

pub fn delete_member(ctx: &Ctx, vhost: &str, queue: &str, node: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Removing a replica of queue {queue} on node {node}..."));
    let p = path(&["queues", "quorum", vhost, queue, "replicas", "delete"]);
    ctx.api.call("DELETE", &p, Some(&json!({ "node": node })))?;
    Ok(())
}

pub fn grow(
    ctx: &Ctx,
    node: &str,
    strategy: &str,
    vhost_pattern: &str,
    queue_pattern: &str,
    errors_only: bool,
) -> Result<(), CtlError> {
    ctx.out.info(&format!("Growing {strategy} quorum queues matching {queue_pattern} in {vhost_pattern} on {node}..."));
    let body = json!({ "strategy": strategy, "vhost_pattern": vhost_pattern, "queue_pattern": queue_pattern });
    let rows = ctx.api.call("POST", &path(&["queues", "quorum", "replicas", "on", node, "grow"]), Some(&body))?;
    changes(ctx, &rows, errors_only);
    Ok(())
}

pub fn shrink(ctx: &Ctx, node: &str, errors_only: bool) -> Result<(), CtlError> {
    ctx.out.info(&format!("Shrinking quorum queues on {node}..."));
    let rows = ctx.api.call("DELETE", &path(&["queues", "quorum", "replicas", "on", node, "shrink"]), None)?;
    changes(ctx, &rows, errors_only);
    Ok(())
}

/// `grow` and `shrink` results as rabbitmq-queues prints them: vhost, name, size, result.
fn changes(ctx: &Ctx, rows: &Value, errors_only: bool) {
    let columns: Vec<String> = ["vhost", "name", "size", "result"].iter().map(|c| c.to_string()).collect();
    let cells: Vec<Vec<Value>> = rows
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|r| !errors_only || r["result"] != "ok")
        .map(|r| columns.iter().map(|c| r.get(c).cloned().unwrap_or(Value::Null)).collect())
        .collect();
    ctx.out.table(&columns, &cells);
}
