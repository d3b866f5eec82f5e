//! The JSON API on the admin listener, version 1 (`/api/v1/`): what `farside status`,
//! `farside sessions` and `farside reload` use, and scripts may too. Documented in
//! `docs/api.md`.
//!
//! Every request needs `Authorization: Bearer TOKEN`, the token of `control/token.rs`;
//! one without it, or with another, gets 401 and is counted
//! (`farside_admin_refused_total`). Tokens are compared in constant time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use crate::control::reload::Reload;
use crate::control::sessions::TurnBoard;
use crate::runtime::lock::lock;
use crate::telemetry::Metrics;

/// What the API reads and acts on.
pub struct Api {
    /// The bearer token.
    pub token: String,
    /// When the server started.
    pub started: Instant,
    /// What runs where (the S010 line, part by part).
    pub running: Vec<String>,
    /// The counters and gauges.
    pub metrics: Arc<Metrics>,
    /// TURN's allocations, when TURN runs.
    pub turn: Option<Arc<TurnBoard>>,
    /// TURN's drain, when TURN runs.
    pub drain: Option<Arc<crate::control::drain::Drain>>,
    /// The store, for the SIP registrations it holds, when SIP runs.
    pub registrations_from: Option<String>,
    /// Where registration removals go, when SIP runs.
    pub sip: Option<Arc<crate::control::sessions::SipBoard>>,
    /// The RTP relay's calls, when it runs.
    pub calls: Option<Arc<crate::control::sessions::CallBoard>>,
    /// The reload a `POST /api/v1/reload` runs (the one SIGHUP runs).
    pub reload: Arc<Mutex<Reload>>,
    /// The last log messages.
    pub log: Arc<crate::telemetry::log_ring::LogRing>,
    /// The effective configuration, secrets redacted.
    pub config_text: String,
    /// The store (users and secrets).
    pub store_url: String,
    /// The realms a user is added to (`Config::user_realms`).
    pub realms: Vec<String>,
}

/// The `/api/v1` routes, behind the token check.
pub fn routes(api: Arc<Api>) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sources", get(sources))
        .route("/api/v1/log", get(log))
        .route("/api/v1/config", get(config))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/allocations/{relayed}", delete(end_allocation))
        .route(
            "/api/v1/drain",
            get(drain).post(start_drain).delete(stop_drain),
        )
        .route("/api/v1/registrations", delete(remove_registration))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/users/{name}", delete(remove_user))
        .route("/api/v1/secrets", get(list_secrets).post(add_secret))
        .route("/api/v1/secrets/{id}", delete(remove_secret))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&api), authorize))
        .with_state(api)
}

async fn authorize(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(given.trim().as_bytes(), api.token.as_bytes()) {
        api.metrics
            .admin_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "a valid bearer token is needed (see docs/api.md)"})),
        )
            .into_response();
    }
    next.run(request).await
}

/// Constant-time equality of secrets (tokens, passwords, CSRF tokens; the lengths are not
/// secret), as the protocol cores compare MACs: `subtle`.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

async fn status(State(api): State<Arc<Api>>) -> Json<Value> {
    Json(status_value(&api))
}

/// `GET /api/v1/sources`'s answer: per client address, STUN figures from the data-plane
/// workers and live TURN allocations with their relayed bytes, sorted by `sort`
/// (`last_seen`, the default, `requests`, `errors`, `allocations`, `relayed_bytes`, `address`),
/// most first.
pub fn sources_value(api: &Api, sort: &str) -> Value {
    use std::collections::HashMap;
    use std::net::IpAddr;
    let mut rows: HashMap<IpAddr, (crate::telemetry::sources::SourceStats, u64, u64)> =
        HashMap::new();
    for (ip, s) in api.metrics.sources.snapshot() {
        rows.entry(ip).or_default().0 = s;
    }
    for a in api
        .turn
        .as_ref()
        .map(|b| b.allocations())
        .unwrap_or_default()
    {
        let r = rows.entry(a.five.client.ip()).or_default();
        r.1 += 1;
        r.2 += a.relayed_bytes;
    }
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_by(|(ia, a), (ib, b)| match sort {
        "requests" => b.0.requests.cmp(&a.0.requests),
        "errors" => b.0.errors.cmp(&a.0.errors),
        "allocations" => b.1.cmp(&a.1),
        "relayed_bytes" => b.2.cmp(&a.2),
        "address" => ia.cmp(ib),
        _ => b.0.last_seen_ms.cmp(&a.0.last_seen_ms),
    });
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(ip, (s, allocations, bytes))| {
            json!({
                "address": ip.to_string(),
                "last_seen_unix_ms": s.last_seen_ms,
                "requests": s.requests,
                "no_change": s.no_change,
                "change_ip": s.change_ip,
                "change_port": s.change_port,
                "errors": s.errors,
                "allocations": allocations,
                "relayed_bytes": bytes,
            })
        })
        .collect();
    json!({ "sources": rows })
}

/// `GET /api/v1/status`'s answer.
pub fn status_value(api: &Api) -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": api.started.elapsed().as_secs(),
        "running": api.running,
        "live": api.metrics.live(),
    })
}

async fn sessions(State(api): State<Arc<Api>>) -> Response {
    match sessions_value(&api).await {
        Ok(v) => Json(v).into_response(),
        Err(why) => failure(why),
    }
}

/// `GET /api/v1/sessions`'s answer: allocations, registrations, the RTP relay's calls (each
/// with its SIP ALG verdict), and the recent calls in which a SIP ALG was suspected, relayed
/// or not (`alg_calls`, newest first).
pub async fn sessions_value(api: &Api) -> Result<Value, String> {
    let now = crate::runtime::clock::now();
    let allocations: Vec<Value> = api
        .turn
        .as_ref()
        .map(|b| b.allocations())
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            json!({
                "client": a.five.client.to_string(),
                "server": a.five.server.to_string(),
                "transport": format!("{:?}", a.five.transport).to_ascii_lowercase(),
                "realm": a.realm,
                "username": a.username,
                "relayed": a.relayed.iter().map(SocketAddr::to_string).collect::<Vec<_>>(),
                "tcp": a.tcp,
                "expires_in_s": a.expires.unix_secs().saturating_sub(now.unix_secs()),
                "permissions": a.permissions,
                "channels": a.channels,
            })
        })
        .collect();
    let registrations = match api.registrations_from.clone() {
        None => Vec::new(),
        Some(url) => {
            let secs = i64::try_from(now.unix_secs()).unwrap_or(i64::MAX);
            let rows = tokio::task::spawn_blocking(move || {
                farside_store::open(&url).and_then(|mut s| s.load_registrations(secs))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read the registrations: {e}"))?;
            rows.into_iter()
                .map(|r| {
                    let nat = farside_sip::nat::NatTests(u16::try_from(r.nat).unwrap_or(0));
                    json!({
                        "aor": r.aor,
                        "contact": r.contact,
                        "transport": r.transport,
                        "local": r.local,
                        "remote": r.remote,
                        "expires_in_s": (r.expires_at - secs).max(0),
                        "nat_tests": nat.names(),
                        "sip_alg": match nat.any(farside_sip::nat::NatTests::ALG_SUSPECTED) {
                            true => "suspected",
                            false => "none",
                        },
                        "keepalive_failures": r.keepalive_failures,
                        "node": r.node,
                    })
                })
                .collect()
        }
    };
    let alg_calls = api.sip.as_ref().map(|b| b.alg_calls()).unwrap_or_default();
    let mut alg_by_call: std::collections::HashMap<&str, Vec<&crate::control::sessions::AlgCall>> =
        std::collections::HashMap::new();
    for a in &alg_calls {
        alg_by_call.entry(a.call_id.as_str()).or_default().push(a);
    }
    let calls: Vec<Value> = api
        .calls
        .as_ref()
        .map(|b| b.calls())
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let alg = alg_by_call
                .get(c.call_id.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut v = json!(c);
            v["sip_alg"] = json!(if alg.is_empty() { "none" } else { "suspected" });
            v["sip_alg_evidence"] = json!(alg);
            v
        })
        .collect();
    Ok(json!({
        "allocations": allocations,
        "registrations": registrations,
        "calls": calls,
        "recent_calls": api.calls.as_ref().map(|b| b.recent()).unwrap_or_default(),
        "alg_calls": alg_calls,
    }))
}

#[derive(serde::Deserialize)]
struct Sort {
    sort: Option<String>,
}

async fn sources(
    State(api): State<Arc<Api>>,
    axum::extract::Query(q): axum::extract::Query<Sort>,
) -> Json<Value> {
    Json(sources_value(
        &api,
        q.sort.as_deref().unwrap_or("last_seen"),
    ))
}

#[derive(serde::Deserialize)]
struct LevelQuery {
    level: Option<String>,
}

async fn log(
    State(api): State<Arc<Api>>,
    axum::extract::Query(q): axum::extract::Query<LevelQuery>,
) -> Json<Value> {
    let level = crate::telemetry::log_ring::parse_level(q.level.as_deref().unwrap_or("info"));
    Json(json!({ "messages": api.log.entries(level) }))
}

async fn config(State(api): State<Arc<Api>>) -> Json<Value> {
    Json(json!({ "config": api.config_text }))
}

async fn reload(State(api): State<Arc<Api>>) -> Response {
    let done = tokio::task::spawn_blocking(move || lock(&api.reload).apply()).await;
    match done {
        Ok(Ok(outcome)) => Json(json!(outcome)).into_response(),
        Ok(Err(why)) => error(StatusCode::UNPROCESSABLE_ENTITY, why),
        Err(e) => failure(e.to_string()),
    }
}

async fn end_allocation(State(api): State<Arc<Api>>, Path(relayed): Path<String>) -> Response {
    let Ok(relayed) = relayed.parse::<SocketAddr>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected a relayed address, IP:port",
        );
    };
    match api.turn.as_ref().map(|b| b.end(relayed)) {
        Some(true) => (
            StatusCode::ACCEPTED,
            Json(json!({"ending": relayed.to_string()})),
        )
            .into_response(),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no allocation relays at {relayed}"),
        ),
    }
}

/// `GET /api/v1/drain`: where new allocations go (none: not draining) and how many allocations
/// are left here.
async fn drain(State(api): State<Arc<Api>>) -> Response {
    match &api.drain {
        Some(d) => Json(drain_state(&api, d)).into_response(),
        None => not_running("TURN"),
    }
}

#[derive(serde::Deserialize)]
struct DrainQuery {
    /// Comma-separated `IP:port`s.
    to: String,
}

/// `POST /api/v1/drain?to=IP:port[,IP:port]`: new Allocates get 300 Try Alternate naming the
/// first of these of the client's family; allocations here run on until they end.
async fn start_drain(
    State(api): State<Arc<Api>>,
    axum::extract::Query(q): axum::extract::Query<DrainQuery>,
) -> Response {
    let Some(d) = &api.drain else {
        return not_running("TURN");
    };
    let parsed: Result<Vec<SocketAddr>, _> = q.to.split(',').map(|a| a.trim().parse()).collect();
    match parsed {
        Ok(to) if !to.is_empty() => {
            tracing::info!(
                "S310 TURN draining: new allocations are sent to {}",
                to.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            d.set(to);
            (StatusCode::OK, Json(drain_state(&api, d))).into_response()
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "expected to=IP:port[,IP:port]: where new allocations go",
        ),
    }
}

/// `DELETE /api/v1/drain`: allocations are made here again.
async fn stop_drain(State(api): State<Arc<Api>>) -> Response {
    let Some(d) = &api.drain else {
        return not_running("TURN");
    };
    if !d.alternates().is_empty() {
        tracing::info!("S310 TURN no longer draining: new allocations are made here");
    }
    d.set(Vec::new());
    Json(drain_state(&api, d)).into_response()
}

fn drain_state(api: &Api, d: &crate::control::drain::Drain) -> Value {
    let left = api.turn.as_ref().map_or(0, |b| b.allocations().len());
    json!({
        "draining": !d.alternates().is_empty(),
        "to": d.alternates().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "allocations": left,
    })
}

fn not_running(part: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("{part} is not running on this server"),
    )
}

#[derive(serde::Deserialize)]
struct BindingQuery {
    aor: String,
    contact: String,
}

async fn remove_registration(
    State(api): State<Arc<Api>>,
    axum::extract::Query(q): axum::extract::Query<BindingQuery>,
) -> Response {
    match &api.sip {
        Some(board) => {
            board.remove(q.aor.clone(), q.contact.clone());
            (
                StatusCode::ACCEPTED,
                Json(json!({"removing": {"aor": q.aor, "contact": q.contact}})),
            )
                .into_response()
        }
        None => error(StatusCode::NOT_FOUND, "SIP does not run here"),
    }
}

/// Runs a blocking store job; its answer, or 400 with its error.
async fn store_job<T: serde::Serialize + Send + 'static>(
    ok: StatusCode,
    job: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(job).await {
        Ok(Ok(v)) => (ok, Json(json!(v))).into_response(),
        Ok(Err(why)) => error(StatusCode::BAD_REQUEST, why),
        Err(e) => failure(e.to_string()),
    }
}

async fn list_users(State(api): State<Arc<Api>>) -> Response {
    let url = api.store_url.clone();
    store_job(StatusCode::OK, move || {
        let (users, _) = crate::control::users::list(&url)?;
        Ok(json!({"users": users.iter().map(|u| json!({"realm": u.realm, "name": u.name, "created_unix": u.created})).collect::<Vec<_>>()}))
    })
    .await
}

#[derive(serde::Deserialize)]
struct NewUser {
    name: String,
    password: String,
}

async fn add_user(State(api): State<Arc<Api>>, Json(u): Json<NewUser>) -> Response {
    store_job(StatusCode::CREATED, move || {
        crate::control::users::add_user(&api.store_url, &api.realms, &u.name, &u.password)?;
        Ok(json!({"added": u.name, "realms": api.realms}))
    })
    .await
}

async fn remove_user(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    store_job(
        StatusCode::OK,
        move || match crate::control::users::remove_user(&api.store_url, &name)? {
            0 => Err(format!("no user {name}")),
            n => Ok(json!({"removed": name, "realms": n})),
        },
    )
    .await
}

async fn list_secrets(State(api): State<Arc<Api>>) -> Response {
    let url = api.store_url.clone();
    store_job(StatusCode::OK, move || {
        let (_, secrets) = crate::control::users::list(&url)?;
        Ok(json!({"secrets": secrets.iter().map(|s| json!({"id": s.id, "masked": s.masked, "created_unix": s.created})).collect::<Vec<_>>()}))
    })
    .await
}

#[derive(serde::Deserialize)]
struct NewSecret {
    /// The secret; a random one is made (and returned once) without it.
    secret: Option<String>,
}

async fn add_secret(State(api): State<Arc<Api>>, Json(n): Json<NewSecret>) -> Response {
    store_job(StatusCode::CREATED, move || {
        let (id, made) = crate::control::users::add_secret(&api.store_url, n.secret)?;
        Ok(json!({"id": id, "secret": made}))
    })
    .await
}

async fn remove_secret(State(api): State<Arc<Api>>, Path(id): Path<i64>) -> Response {
    store_job(StatusCode::OK, move || {
        crate::control::users::remove_secret(&api.store_url, id)?;
        Ok(json!({"removed": id}))
    })
    .await
}

fn failure(why: String) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, why)
}

/// An error answer: `{"error": why}` with `status`.
fn error(status: StatusCode, why: impl Into<String>) -> Response {
    (status, Json(json!({"error": why.into()}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"abc"));
    }
}
