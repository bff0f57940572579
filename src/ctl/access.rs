//! Users and permissions: `add_user`, `delete_user`, `change_password`, `set_user_tags`,
//! `list_users`, `set_permissions`, `clear_permissions`, `list_permissions`,
//! `list_user_permissions`.
//!
//! A `PUT /api/users/{name}` replaces the whole user on RabbitMQ: without `tags` the tags are
//! cleared, and without `password` or `password_hash` the password is wiped. So
//! `change_password` sends the user's tags back and `set_user_tags` its password hash.

use super::columns::{PERMISSIONS, USER_PERMISSIONS, USERS};
use super::http::path;
use super::{CtlError, Ctx};
use serde_json::{Value, json};

fn no_user(name: &str) -> CtlError {
    CtlError::NoUser(format!("User \"{name}\" does not exist"))
}

fn no_vhost(vhost: &str) -> CtlError {
    CtlError::NoVhost(format!("Virtual host '{vhost}' does not exist"))
}

/// The user as the API shows it, or `NoUser`.
fn user(ctx: &Ctx, name: &str) -> Result<serde_json::Map<String, Value>, CtlError> {
    ctx.api.object(&path(&["users", name])).map_err(|e| e.if_not_found(|| no_user(name)))
}

pub fn add_user(ctx: &Ctx, name: &str, password: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Adding user \"{name}\" ..."));
    // PUT would silently change an existing user's password; rabbitmqctl refuses instead.
    if ctx.api.get_opt(&path(&["users", name]))?.is_some() {
        return Err(CtlError::Exists(format!("User \"{name}\" already exists")));
    }
    ctx.api.put(&path(&["users", name]), &json!({ "password": password, "tags": [] }))?;
    ctx.out.info(
        "Done. Don't forget to grant the user permissions to some virtual hosts! \
         See 'warren ctl set_permissions --help' to learn more.",
    );
    Ok(())
}

pub fn delete_user(ctx: &Ctx, name: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Deleting user \"{name}\" ..."));
    ctx.api.delete(&path(&["users", name])).map_err(|e| e.if_not_found(|| no_user(name)))
}

pub fn change_password(ctx: &Ctx, name: &str, password: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Changing password for user \"{name}\" ..."));
    let u = user(ctx, name)?;
    let tags = u.get("tags").cloned().unwrap_or(json!([]));
    ctx.api.put(&path(&["users", name]), &json!({ "password": password, "tags": tags }))
}

pub fn set_user_tags(ctx: &Ctx, name: &str, tags: &[String]) -> Result<(), CtlError> {
    ctx.out.info(&format!("Setting tags for user \"{name}\" to [{}] ...", tags.join(", ")));
    let u = user(ctx, name)?;
    let mut body = json!({ "tags": tags });
    for key in ["password_hash", "hashing_algorithm"] {
        if let Some(v) = u.get(key) {
            body[key] = v.clone();
        }
    }
    ctx.api.put(&path(&["users", name]), &body)
}

pub fn list_users(ctx: &Ctx) -> Result<(), CtlError> {
    ctx.out.info("Listing users ...");
    let rows = ctx.api.list(&path(&["users"]))?;
    USERS.show(&ctx.out, &rows, &[])
}

/// After a refused permissions change: which of the two is missing, if any.
fn missing(ctx: &Ctx, vhost: &str, name: &str) -> Result<Option<CtlError>, CtlError> {
    if ctx.api.get_opt(&path(&["users", name]))?.is_none() {
        return Ok(Some(CtlError::NoUser(format!("User {name} does not exist"))));
    }
    if ctx.api.get_opt(&path(&["vhosts", vhost]))?.is_none() {
        return Ok(Some(no_vhost(vhost)));
    }
    Ok(None)
}

pub fn set_permissions(ctx: &Ctx, vhost: &str, name: &str, [conf, write, read]: [&str; 3]) -> Result<(), CtlError> {
    ctx.out.info(&format!("Setting permissions for user \"{name}\" in vhost \"{vhost}\" ..."));
    let body = json!({ "configure": conf, "write": write, "read": read });
    match ctx.api.put(&path(&["permissions", vhost, name]), &body) {
        Err(e @ CtlError::Api { status: 400 | 404, .. }) => Err(missing(ctx, vhost, name)?.unwrap_or(e)),
        r => r,
    }
}

pub fn clear_permissions(ctx: &Ctx, vhost: &str, name: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Clearing permissions for user \"{name}\" in vhost \"{vhost}\" ..."));
    match ctx.api.delete(&path(&["permissions", vhost, name])) {
        // Both exist but there was nothing to clear: done, as rabbitmqctl.
        Err(CtlError::Api { status: 404, .. }) => missing(ctx, vhost, name)?.map_or(Ok(()), Err),
        r => r,
    }
}

pub fn list_permissions(ctx: &Ctx, vhost: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Listing permissions for vhost \"{vhost}\" ..."));
    let rows =
        ctx.api.list(&path(&["vhosts", vhost, "permissions"])).map_err(|e| e.if_not_found(|| no_vhost(vhost)))?;
    PERMISSIONS.show(&ctx.out, &rows, &[])
}

pub fn list_user_permissions(ctx: &Ctx, name: &str) -> Result<(), CtlError> {
    ctx.out.info(&format!("Listing permissions for user \"{name}\" ..."));
    let rows = ctx.api.list(&path(&["users", name, "permissions"])).map_err(|e| e.if_not_found(|| no_user(name)))?;
    USER_PERMISSIONS.show(&ctx.out, &rows, &[])
}
