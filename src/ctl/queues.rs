//! Queues, exchanges and bindings: `list_queues`, `list_exchanges`, `list_bindings`,
//! `purge_queue`, `delete_queue`.

use super::columns::{BINDINGS, EXCHANGES, Listing, QUEUES};
use super::http::path;
use super::{CtlError, Ctx};
use serde_json::Value;

fn no_vhost(vhost: &str) -> CtlError {
    CtlError::NoVhost(format!("Virtual host '{vhost}' does not exist"))
}

/// The objects of one kind in a vhost (`queues`, `exchanges`, `bindings`, `consumers`).
pub fn in_vhost(ctx: &Ctx, kind: &str, vhost: &str) -> Result<Vec<Value>, CtlError> {
    ctx.api.list(&path(&[kind, vhost])).map_err(|e| e.if_not_found(|| no_vhost(vhost)))
}

/// Checks the columns, prints the informational line, lists and prints.
pub fn listing(ctx: &Ctx, l: &Listing, kind: &str, vhost: &str, asked: &[String], info: &str) -> Result<(), CtlError> {
    l.select(asked)?;
    ctx.out.info(info);
    let rows = in_vhost(ctx, kind, vhost)?;
    l.show(&ctx.out, &rows, asked)
}

pub fn list_queues(ctx: &Ctx, vhost: &str, asked: &[String]) -> Result<(), CtlError> {
    QUEUES.select(asked)?;
    ctx.out.info(&format!("Timeout: {:.1} seconds ...", ctx.timeout.as_secs_f64()));
    listing(ctx, &QUEUES, "queues", vhost, asked, &format!("Listing queues for vhost {vhost} ..."))
}

pub fn list_exchanges(ctx: &Ctx, vhost: &str, asked: &[String]) -> Result<(), CtlError> {
    listing(ctx, &EXCHANGES, "exchanges", vhost, asked, &format!("Listing exchanges for vhost {vhost} ..."))
}

pub fn list_bindings(ctx: &Ctx, vhost: &str, asked: &[String]) -> Result<(), CtlError> {
    // (sic: no space before the dots in rabbitmqctl 3.10)
    listing(ctx, &BINDINGS, "bindings", vhost, asked, &format!("Listing bindings for vhost {vhost}..."))
}

fn no_queue() -> CtlError {
    CtlError::NotFound("Queue not found".into())
}

pub fn purge_queue(ctx: &Ctx, vhost: &str, queue: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Purging queue '{queue}' in vhost '{vhost}' ..."));
    ctx.api.delete(&path(&["queues", vhost, queue, "contents"])).map_err(|e| e.if_not_found(no_queue))
}

pub fn delete_queue(ctx: &Ctx, vhost: &str, queue: &str, if_empty: bool, if_unused: bool) -> Result<(), CtlError> {
    let mut conditions = Vec::new();
    if if_empty {
        conditions.push("if queue is empty");
    }
    if if_unused {
        conditions.push("if queue is unused");
    }
    let when = if conditions.is_empty() { String::new() } else { format!(" {}", conditions.join(" and ")) };
    ctx.out.info(&format!("Deleting queue '{queue}' on vhost '{vhost}'{when} ..."));
    let p = path(&["queues", vhost, queue]);
    // The API does not say how many messages went with the queue: read the count first.
    let q = ctx.api.object(&p).map_err(|e| e.if_not_found(no_queue))?;
    let ready = q.get("messages_ready").and_then(Value::as_u64).unwrap_or(0);
    let mut query = Vec::new();
    if if_empty {
        query.push("if-empty=true");
    }
    if if_unused {
        query.push("if-unused=true");
    }
    let target = if query.is_empty() { p } else { format!("{p}?{}", query.join("&")) };
    ctx.api.delete(&target).map_err(|e| e.if_not_found(no_queue))?;
    // The result, not information: rabbitmqctl prints it even with -q and -s.
    println!("Queue was successfully deleted with {ready} ready messages");
    Ok(())
}
