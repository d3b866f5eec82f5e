//! The admin HTTP endpoint: `GET /metrics` (Prometheus text format), `GET /health`, the
//! JSON API (`control/api.rs`) and the dashboard (`control/dashboard`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::control::api::{self, Api};
use crate::control::dashboard::{self, Dashboard};
use crate::net::tls_listener::Peer;
use crate::telemetry::Metrics;

/// Binds the admin listener (at start, so that a bad address fails it before anything runs).
pub async fn listen(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("S102 cannot bind admin HTTP {addr}"))
}

/// Serves the endpoint on `listener` until the runtime stops.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    api: Arc<Api>,
    dashboard: Arc<Dashboard>,
    tls: Option<crate::net::tls_reload::TlsFiles>,
) {
    let addr = listener.local_addr().ok();
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
        .route("/health", get(|| async { "ok\n" }))
        .merge(api::routes(api))
        .merge(dashboard::routes(dashboard));
    if let Some(addr) = addr {
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(
            "S003 admin HTTP on {scheme}://{addr}/ (dashboard), /metrics, API on /api/v1/"
        );
    }
    // The dashboard's lockout needs each request's source address.
    let app = app.into_make_service_with_connect_info::<Peer>();
    let served = match tls {
        None => axum::serve(listener, app).await,
        Some(files) => match crate::net::tls_listener::TlsListener::new(listener, files) {
            Ok(l) => axum::serve(l, app).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = served {
        tracing::error!("S104 admin HTTP stopped: {e}");
    }
}
