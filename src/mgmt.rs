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
mod rates;
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
        .merge(connections::routes())
        .merge(policies::routes())
        .merge(definitions::routes())
        .merge(tracer::routes())
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::middleware::from_fn(columns::select))
        .with_state(node)
}

/// Serves the API on `listener` until the node shuts down.
pub async fn serve(node: Api, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let app = router(node);
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::error!(error = %e, "management listener failed");
    }
}
