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
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(node)
}

/// The largest request body the API reads (RabbitMQ's `management.http.max_body_size`,
/// 20 MiB since its fix for CVE-2023-46118: a definitions file with some 200,000 queues);
/// a larger one is answered 413 without being read.
pub const MAX_BODY: usize = 20 * 1024 * 1024;

/// What the web UI may load: its own three files and the API, nothing inline, never framed.
/// The UI builds every element with DOM calls (no `innerHTML`, no inline styles), so the
/// policy can forbid everything else: a value that slipped through unescaped still could
/// not run (the XSS class of RabbitMQ's UI CVEs), and no page can frame it (clickjacking).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers on every answer: the content policy, no MIME sniffing, no framing, no referrer,
/// and nothing cached (answers carry what only a logged-in user may see).
async fn security_headers(mut res: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    res
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
