//! HTTP basic authentication against Warren's users, and RabbitMQ's tag-based access: any of
//! `management`, `policymaker`, `monitoring`, `administrator` may use the API; `monitoring` and
//! `administrator` see every vhost, others only those they have permissions in; users, vhosts,
//! permissions and definitions need `administrator` (RabbitMQ's `rabbit_mgmt_util`).

use super::{Api, ApiError};
use crate::broker::password;
use crate::broker::permission::Access;
use crate::broker::permission::may_log_in_from;
use crate::meta::Vhost;
use crate::node::Topology;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use std::net::SocketAddr;
use std::sync::Arc;

/// The authenticated user of a request.
pub struct User {
    pub name: String,
    pub tags: Vec<String>,
}

const MANAGEMENT_TAGS: &[&str] = &["management", "policymaker", "monitoring", "administrator"];

impl User {
    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    pub fn is_admin(&self) -> bool {
        self.has("administrator")
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() { Ok(()) } else { Err(ApiError::not_authorised("Not administrator user")) }
    }

    /// May read and change policies (policymaker, administrator).
    pub fn require_policymaker(&self) -> Result<(), ApiError> {
        if self.is_admin() || self.has("policymaker") {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not policymaker user"))
        }
    }

    /// Sees every vhost and every connection (administrator, monitoring).
    pub fn sees_all(&self) -> bool {
        self.is_admin() || self.has("monitoring")
    }

    /// Whether the user may see the objects of `vhost`.
    pub fn sees_vhost(&self, topo: &Topology, vhost: &str) -> bool {
        self.sees_all() || topo.meta.vhosts.get(vhost).is_some_and(|v| v.permissions.contains_key(&self.name))
    }

    /// The vhosts a listing covers: every one the user may see, or only `only` (404 if it
    /// does not exist or is not theirs to see).
    pub fn vhosts<'a>(&self, topo: &'a Topology, only: Option<&str>) -> Result<Vec<&'a Arc<Vhost>>, ApiError> {
        if only.is_some_and(|v| !topo.meta.vhosts.contains_key(v) || !self.sees_vhost(topo, v)) {
            return Err(ApiError::not_found());
        }
        Ok(topo
            .meta
            .vhosts
            .values()
            .filter(|v| only.is_none_or(|o| o == v.name) && self.sees_vhost(topo, &v.name))
            .collect())
    }

    /// Checks a vhost exists and the user may act on `resource` there as an AMQP client of
    /// theirs could (configure to declare and delete, write to publish, read to get and purge).
    pub fn check(&self, topo: &Topology, vhost: &str, access: Access, resource: &str) -> Result<(), ApiError> {
        let Some(v) = topo.meta.vhosts.get(vhost) else { return Err(ApiError::not_found()) };
        let allowed = v.permissions.get(&self.name).is_some_and(|p| p.allows(access, resource));
        if allowed { Ok(()) } else { Err(ApiError::not_authorised("Access refused.")) }
    }
}

impl FromRequestParts<Api> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, node: &Api) -> Result<Self, ApiError> {
        let (name, pass) = basic_credentials(parts).ok_or_else(ApiError::login_failed)?;
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let topo = node.topology();
        let known = topo.meta.users.get(&name).filter(|u| password::verify(&pass, &u.password_hash));
        // As RabbitMQ: `loopback_users` (guest) may use the API only from loopback too.
        let from_here = peer.is_none_or(|p| may_log_in_from(&name, p.ip(), &node.config().loopback_users));
        let Some(user) = known.filter(|_| from_here) else {
            tracing::warn!(user = %name, peer = ?peer, "management API login refused");
            return Err(ApiError::login_failed());
        };
        let user = User { name, tags: user.tags.clone() };
        if !MANAGEMENT_TAGS.iter().any(|t| user.has(t)) {
            return Err(ApiError::not_authorised("Not management user"));
        }
        Ok(user)
    }
}

/// The user and password of an `Authorization: Basic` header.
fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}
