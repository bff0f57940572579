//! Quorum queues' members and leaders, as `rabbitmq-queues` names the commands:
//! `quorum_status`, `transfer_leadership`, `rebalance` (over `/api/queues/quorum/…` and
//! `/api/rebalance/queues`).

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
