//! What the management port answers while its node starts: a member of a cluster waits (up
//! to five minutes, as RabbitMQ waits for its peers at boot) until a majority of its cluster
//! is up before it serves. Meanwhile every request gets 503 with the reason at once, so a
//! health check (HAProxy's, a Kubernetes probe, `warren ctl check_ready`) fails quickly and
//! says why instead of timing out on a port that accepts connections and never answers.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The answering task, until [`Starting::stop`].
pub struct Starting {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Starting {
    /// Stops answering (requests under way finish) before the node's own API takes over.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Answers 503 on a copy of `listener` until stopped; `listener` itself is handed back for
/// the node's API. No copy (`None`) if the socket cannot be shared: then the port only
/// answers once the node serves.
pub fn answer(listener: TcpListener) -> std::io::Result<(TcpListener, Option<Starting>)> {
    let std = listener.into_std()?;
    let copy = std.try_clone().and_then(TcpListener::from_std);
    let listener = TcpListener::from_std(std)?;
    let copy = match copy {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "the management port stays silent until the node serves");
            return Ok((listener, None));
        }
    };
    let (stop, stopped) = oneshot::channel();
    let app = Router::new().fallback(starting);
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = stopped.await;
        };
        if let Err(e) = axum::serve(copy, app).with_graceful_shutdown(stop).await {
            tracing::warn!(error = %e, "answering while starting");
        }
    });
    Ok((listener, Some(Starting { stop, task })))
}

async fn starting() -> impl IntoResponse {
    let reason = "the node is starting: it serves once a majority of its cluster is up and its data is recovered";
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "failed", "error": "unavailable", "reason": reason })))
}
