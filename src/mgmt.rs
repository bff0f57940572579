//! The management HTTP API and web UI (RabbitMQ's port 15672), on axum + hyper.
//!
//! Routes, JSON field names, status codes and error bodies follow RabbitMQ's management
//! plugin (`rabbit_mgmt_dispatcher.erl`; `../shared/reference/rabbitmq-semantics.md` §4), so
//! `rabbitmqadmin`, scripts and the UI that work against RabbitMQ work here. Every request is
//! authenticated with HTTP basic auth against Warren's users ([`auth`]); changes go through the
//! node's metadata and queue commands like an AMQP client's, never around them.

mod admin;
mod auth;
mod columns;
mod connections;
mod definitions;
mod error;
mod exchanges;
mod json;
mod overview;
mod policies;
pub mod prometheus;
mod queues;
mod quorum;
mod rates;
pub mod starting;
mod tracer;
mod ui;

use crate::node::Node;
use axum::Router;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::ApiError;

/// What every handler gets: the node.
pub type Api = Arc<Node>;

/// All routes.
pub fn router(node: Api) -> Router {
    Router::new()
        .merge(ui::routes())
        .merge(overview::routes())
        .merge(admin::routes())
        .merge(exchanges::routes())
        .merge(queues::routes())
        .merge(quorum::routes())
        .merge(connections::routes())
        .merge(policies::routes())
        .merge(definitions::routes())
        .merge(tracer::routes())
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::middleware::from_fn(columns::select))
        .with_state(node)
}

/// RabbitMQ's routes answer the same with a trailing slash (`/api/queues/` is `/api/queues`;
/// cowboy's dispatch ignores it): one slash at the end of an `/api/` path is dropped before
/// routing, so every route, listing or not, has both spellings.
async fn trim_trailing_slash(mut req: axum::extract::Request) -> axum::extract::Request {
    let uri = req.uri();
    let path = uri.path();
    if path.len() > "/api/".len() && path.starts_with("/api/") && path.ends_with('/') {
        let trimmed = &path[..path.len() - 1];
        let rebuilt = match uri.query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        if let Ok(pq) = rebuilt.parse::<axum::http::uri::PathAndQuery>() {
            let mut parts = uri.clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(u) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = u;
            }
        }
    }
    req
}

/// The routes behind the path normalisation (a layer on the outer router runs before the
/// inner one routes).
pub fn app(node: Api) -> Router {
    Router::new().fallback_service(router(node)).layer(axum::middleware::map_request(trim_trailing_slash))
}

/// Serves the API on `listener` until the node shuts down.
pub async fn serve(node: Api, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    connections::answer_peeks(&node);
    let app = app(node);
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::error!(error = %e, "management listener failed");
    }
}
