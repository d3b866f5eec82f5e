//! The admin HTTP endpoint: `GET /metrics` (Prometheus text format) and `GET /health`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::telemetry::Metrics;

/// Binds the admin listener now (so a bad address fails the start) and returns its task.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> anyhow::Result<impl Future<Output = ()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("S102 cannot bind admin HTTP {addr}"))?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = Arc::clone(&metrics);
                async move {
                    (
                        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        metrics.render(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/health", get(|| async { "ok\n" }));
    tracing::info!("S003 admin HTTP on http://{addr}/metrics");
    Ok(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("S104 admin HTTP stopped: {e}");
        }
    })
}
