//! Virtual hosts and their firehose tracing flag: `add_vhost`, `delete_vhost`, `list_vhosts`,
//! `trace_on`, `trace_off`.
//!
//! On RabbitMQ a `PUT /api/vhosts/{name}` replaces the vhost's metadata: `{"tracing":true}`
//! alone wipes its description and tags. So `trace_on`/`trace_off` read the vhost first and
//! send them back, and `add_vhost` leaves an existing vhost alone (as rabbitmqctl).

use super::columns::VHOSTS;
use super::http::path;
use super::{CtlError, Ctx};
use serde_json::{Value, json};

fn no_vhost(vhost: &str) -> CtlError {
    CtlError::NoVhost(format!("Virtual host '{vhost}' does not exist"))
}

pub fn add_vhost(ctx: &Ctx, name: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Adding vhost \"{name}\" ..."));
    if ctx.api.get_opt(&path(&["vhosts", name]))?.is_some() {
        return Ok(());
    }
    ctx.api.put(&path(&["vhosts", name]), &json!({}))
}

pub fn delete_vhost(ctx: &Ctx, name: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Deleting vhost \"{name}\" ..."));
    ctx.api.delete(&path(&["vhosts", name])).map_err(|e| e.if_not_found(|| no_vhost(name)))
}

pub fn list_vhosts(ctx: &Ctx, asked: &[String]) -> Result<(), CtlError> {
    VHOSTS.select(asked)?;
    ctx.out.info("Listing vhosts ...");
    let rows = ctx.api.list(&path(&["vhosts"]))?;
    VHOSTS.show(&ctx.out, &rows, asked)
}

/// `trace_on` (`on`) and `trace_off`.
pub fn trace(ctx: &Ctx, vhost: &str, on: bool) -> Result<(), CtlError> {
    let verb = if on { "Starting" } else { "Stopping" };
    ctx.out.info(&format!("{verb} tracing for vhost \"{vhost}\" ..."));
    let p = path(&["vhosts", vhost]);
    let current = ctx.api.object(&p).map_err(|e| e.if_not_found(|| no_vhost(vhost)))?;
    ctx.api.put(&p, &keep_metadata(&current, on))?;
    // The result, not information: rabbitmqctl prints it even with -q and -s.
    println!("Trace {} for vhost {vhost}", if on { "enabled" } else { "disabled" });
    Ok(())
}

/// The body that sets `tracing` and keeps what a PUT would otherwise reset.
fn keep_metadata(current: &serde_json::Map<String, Value>, tracing: bool) -> Value {
    let meta = current.get("metadata");
    let description = current.get("description").or_else(|| meta.and_then(|m| m.get("description")));
    let tags = current.get("tags").or_else(|| meta.and_then(|m| m.get("tags")));
    let mut body = json!({ "tracing": tracing });
    if let Some(d) = description.filter(|d| d.is_string()) {
        body["description"] = d.clone();
    }
    if let Some(t) = tags.filter(|t| t.is_array() || t.is_string()) {
        body["tags"] = t.clone();
    }
    if let Some(q) = current.get("default_queue_type").filter(|q| q.is_string() && q.as_str() != Some("undefined")) {
        body["default_queue_type"] = q.clone();
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_keeps_description_and_tags() {
        let v = json!({"name": "v", "description": "d", "tags": ["a"], "default_queue_type": "undefined", "tracing": false});
        let Value::Object(m) = v else { unreachable!() };
        assert_eq!(keep_metadata(&m, true), json!({"tracing": true, "description": "d", "tags": ["a"]}));
        let v = json!({"metadata": {"description": "x", "tags": []}, "default_queue_type": "quorum"});
        let Value::Object(m) = v else { unreachable!() };
        assert_eq!(
            keep_metadata(&m, false),
            json!({"tracing": false, "description": "x", "tags": [], "default_queue_type": "quorum"})
        );
    }
}
