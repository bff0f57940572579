//! Policies: `set_policy`, `clear_policy`, `list_policies`.

use super::cli::ApplyTo;
use super::columns::POLICIES;
use super::http::path;
use super::queues::listing;
use super::{CtlError, Ctx};
use serde_json::{Value, json};

/// A policy definition must be a JSON object (checked here, before anything is sent).
pub fn parse_definition(definition: &str) -> Result<Value, CtlError> {
    let usage = |message: String| CtlError::Usage { command: "set_policy".into(), message };
    match serde_json::from_str::<Value>(definition) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(usage(format!("policy definition must be a JSON object, got {definition}"))),
        Err(e) => Err(usage(format!("policy definition is not valid JSON: {e}"))),
    }
}

pub fn set_policy(
    ctx: &Ctx,
    vhost: &str,
    name: &str,
    pattern: &str,
    definition: &str,
    priority: i64,
    apply_to: ApplyTo,
) -> Result<(), CtlError> {
    let def = parse_definition(definition)?;
    ctx.out.info(&format!(
        "Setting policy \"{name}\" for pattern \"{pattern}\" to \"{definition}\" with priority \"{priority}\" \
         for vhost \"{vhost}\" ..."
    ));
    let body = json!({ "pattern": pattern, "definition": def, "priority": priority, "apply-to": apply_to.as_str() });
    ctx.api
        .put(&path(&["policies", vhost, name]), &body)
        .map_err(|e| e.if_not_found(|| CtlError::NoVhost(format!("Virtual host '{vhost}' does not exist"))))
}

pub fn clear_policy(ctx: &Ctx, vhost: &str, name: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Clearing policy \"{name}\" on vhost \"{vhost}\" ..."));
    ctx.api
        .delete(&path(&["policies", vhost, name]))
        .map_err(|e| e.if_not_found(|| CtlError::NotFound("Parameter does not exist".into())))
}

pub fn list_policies(ctx: &Ctx, vhost: &str) -> Result<(), CtlError> {
    listing(ctx, &POLICIES, "policies", vhost, &[], &format!("Listing policies for vhost \"{vhost}\" ..."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_must_be_json_objects() {
        assert_eq!(parse_definition(r#"{"max-length":1}"#).unwrap(), json!({"max-length": 1}));
        assert_eq!(parse_definition("notjson").unwrap_err().exit_code(), 64);
        assert_eq!(parse_definition("[1]").unwrap_err().exit_code(), 64);
    }
}
