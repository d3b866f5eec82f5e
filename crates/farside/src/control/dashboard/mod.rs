//! The dashboard: server-rendered pages on the admin listener, behind a login
//! ([`auth`]). Overview, TURN allocations (end one), SIP registrations (with the NAT tests that
//! fired and keep-alive health; a check of each, [`phone`]), the log (the last messages,
//! numbered, by level), users (add, remove) and the effective configuration with secrets
//! redacted. Each page's data is also in the JSON API (`control/api.rs`). No script: plain HTML
//! forms, so it works from any browser and a test can drive it.

pub mod auth;
mod html;
mod phone;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use crate::control::api::{self, Api};
use crate::control::users;
use crate::net::tls_listener::Peer;
use crate::telemetry::log_ring::parse_level;
use auth::{Auth, COOKIE, Refused, Session};
use html::{esc, page, table};

/// What the pages read and act on.
pub struct Dashboard {
    /// The API's state (status, sessions, reload).
    pub api: Arc<Api>,
    /// Logins.
    pub auth: Auth,
}

/// The dashboard's routes.
pub fn routes(d: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/allocations", get(allocations))
        .route("/allocations/end", post(end_allocation))
        .route("/registrations", get(registrations))
        .route("/registrations/remove", post(remove_registration))
        .route("/registrations/check", get(phone::check))
        .route("/sources", get(sources))
        .route("/calls", get(calls))
        .route("/log", get(log))
        .route("/users", get(users))
        .route("/users/add", post(add_user))
        .route("/users/remove", post(remove_user))
        .route("/secrets/add", post(add_secret))
        .route("/secrets/remove", post(remove_secret))
        .route("/config", get(config))
        .with_state(d)
}

/// Why a request gets no page.
pub enum Denied {
    /// No live session: to the login page.
    Login,
    /// A form without its session's CSRF token.
    Forbidden,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Login => Redirect::to("/login").into_response(),
            Denied::Forbidden => (
                StatusCode::FORBIDDEN,
                "stale or missing form token: reload the page",
            )
                .into_response(),
        }
    }
}

/// Every page but the login takes the session its cookie names, or goes to the login page.
impl axum::extract::FromRequestParts<Arc<Dashboard>> for Session {
    type Rejection = Denied;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        d: &Arc<Dashboard>,
    ) -> Result<Self, Denied> {
        let cookie = parts
            .headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok());
        d.auth.session(cookie).ok_or(Denied::Login)
    }
}

impl Session {
    /// The session, if a form's CSRF token is its own.
    fn check(self, csrf: &str) -> Result<Session, Denied> {
        if !api::same(self.csrf.as_bytes(), csrf.as_bytes()) {
            return Err(Denied::Forbidden);
        }
        Ok(self)
    }
}

async fn login_form() -> Html<String> {
    Html(html::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    password: String,
}

async fn login(
    State(d): State<Arc<Dashboard>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Form(f): Form<LoginForm>,
) -> Response {
    let d2 = Arc::clone(&d);
    let result = tokio::task::spawn_blocking(move || d2.auth.login(peer.ip(), &f.password)).await;
    match result {
        Ok(Ok((id, _))) => {
            tracing::info!("S016 dashboard login from {}", peer.ip());
            (
                [(
                    header::SET_COOKIE,
                    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"),
                )],
                Redirect::to("/"),
            )
                .into_response()
        }
        Ok(Err(why)) => {
            d.api
                .metrics
                .admin_login_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (code, text) = match why {
                Refused::Wrong => (StatusCode::UNAUTHORIZED, "Wrong password."),
                Refused::LockedOut => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many wrong passwords from this address: try again in 15 minutes.",
                ),
            };
            crate::runtime::log_once::login_refused(
                peer.ip(),
                match why {
                    Refused::Wrong => "wrong password",
                    Refused::LockedOut => "locked out",
                },
            );
            (code, Html(html::login(Some(text)))).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    s: Session,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = s.check(&f.csrf) {
        return r.into_response();
    }
    d.auth
        .logout(headers.get(header::COOKIE).and_then(|v| v.to_str().ok()));
    Redirect::to("/login").into_response()
}

async fn overview(State(d): State<Arc<Dashboard>>, s: Session) -> Response {
    let v = api::status_value(&d.api);
    let mut body = format!(
        "<p>Farside {} up {} s.</p><h2>Running</h2><ul>",
        esc(v["version"].as_str().unwrap_or("")),
        v["uptime_s"]
    );
    for part in v["running"].as_array().into_iter().flatten() {
        body.push_str(&format!("<li>{}</li>", esc(part.as_str().unwrap_or(""))));
    }
    body.push_str("</ul><h2>Now</h2>");
    let live = &v["live"];
    let rows: Vec<Vec<String>> = [
        ("TURN allocations", "allocations"),
        ("SIP registered contacts", "bindings"),
        ("Calls on the RTP relay", "calls"),
    ]
    .iter()
    .filter(|(_, k)| !live[*k].is_null())
    .map(|(name, k)| vec![esc(name), live[*k].to_string()])
    .collect();
    body.push_str(&table("live", &["what", "now"], &rows));
    body.push_str("<p><a href=\"/metrics\">All metrics</a> (Prometheus)</p>");
    Html(page("Overview", &s, &body)).into_response()
}

async fn allocations(State(d): State<Arc<Dashboard>>, s: Session) -> Response {
    let v = match api::sessions_value(&d.api).await {
        Ok(v) => v,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    let rows: Vec<Vec<String>> = v["allocations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let relayed: Vec<&str> = a["relayed"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            vec![
                esc(a["username"].as_str().unwrap_or("")),
                esc(a["client"].as_str().unwrap_or("")),
                esc(a["transport"].as_str().unwrap_or("")),
                esc(&relayed.join(" ")),
                a["expires_in_s"].to_string(),
                a["permissions"].to_string(),
                a["channels"].to_string(),
                format!(
                    "<form method=\"post\" action=\"/allocations/end\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"relayed\" value=\"{}\"><button class=\"end\" type=\"submit\">End</button></form>",
                    s.csrf,
                    esc(relayed.first().copied().unwrap_or(""))
                ),
            ]
        })
        .collect();
    let body = format!(
        "<p>{} allocations (listed at most a second late).</p>{}",
        rows.len(),
        table(
            "allocations",
            &[
                "user",
                "client",
                "transport",
                "relayed",
                "expires in (s)",
                "permissions",
                "channels",
                ""
            ],
            &rows
        )
    );
    Html(page("TURN allocations", &s, &body)).into_response()
}

#[derive(Deserialize)]
struct EndForm {
    csrf: String,
    relayed: String,
}

async fn end_allocation(
    State(d): State<Arc<Dashboard>>,
    s: Session,
    Form(f): Form<EndForm>,
) -> Response {
    if let Err(r) = s.check(&f.csrf) {
        return r.into_response();
    }
    if let (Ok(relayed), Some(board)) = (f.relayed.parse::<SocketAddr>(), &d.api.turn) {
        board.end(relayed);
    }
    Redirect::to("/allocations").into_response()
}

async fn registrations(State(d): State<Arc<Dashboard>>, s: Session) -> Response {
    let v = match api::sessions_value(&d.api).await {
        Ok(v) => v,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    let rows: Vec<Vec<String>> = v["registrations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let missed = r["keepalive_failures"].as_i64().unwrap_or(0);
            vec![
                esc(r["aor"].as_str().unwrap_or("")),
                esc(r["contact"].as_str().unwrap_or("")),
                esc(r["transport"].as_str().unwrap_or("")),
                esc(r["remote"].as_str().unwrap_or("")),
                r["expires_in_s"].to_string(),
                esc(r["nat_tests"].as_str().unwrap_or("")),
                if missed == 0 {
                    "answering".into()
                } else {
                    format!("{missed} missed")
                },
                format!(
                    "<a class=\"check\" href=\"/registrations/check?aor={}&amp;contact={}\">Check</a> <form class=\"inline\" method=\"post\" action=\"/registrations/remove\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"aor\" value=\"{}\"><input type=\"hidden\" name=\"contact\" value=\"{}\"><button type=\"submit\">Remove</button></form>",
                    html::query_value(r["aor"].as_str().unwrap_or("")),
                    html::query_value(r["contact"].as_str().unwrap_or("")),
                    s.csrf,
                    esc(r["aor"].as_str().unwrap_or("")),
                    esc(r["contact"].as_str().unwrap_or(""))
                ),
            ]
        })
        .collect();
    let body = format!(
        "<p>{} registered contacts.</p>{}",
        rows.len(),
        table(
            "registrations",
            &[
                "address of record",
                "contact",
                "transport",
                "from",
                "expires in (s)",
                "NAT tests fired",
                "keep-alives",
                ""
            ],
            &rows
        )
    );
    Html(page("SIP registrations", &s, &body)).into_response()
}

#[derive(Deserialize)]
struct BindingForm {
    csrf: String,
    aor: String,
    contact: String,
}

async fn remove_registration(
    State(d): State<Arc<Dashboard>>,
    s: Session,
    Form(f): Form<BindingForm>,
) -> Response {
    if let Err(r) = s.check(&f.csrf) {
        return r.into_response();
    }
    if let Some(board) = &d.api.sip {
        board.remove(f.aor, f.contact);
    }
    Redirect::to("/registrations").into_response()
}

async fn calls(State(d): State<Arc<Dashboard>>, s: Session) -> Response {
    let now_ms = crate::runtime::clock::now().unix_millis();
    let alg_calls = d
        .api
        .sip
        .as_ref()
        .map(|b| b.alg_calls())
        .unwrap_or_default();
    let alg = alg_table(&alg_calls, now_ms);
    let Some(board) = &d.api.calls else {
        let body = format!("<p>The RTP relay does not run here (<code>[rtp]</code>).</p>{alg}");
        return Html(page("Calls", &s, &body)).into_response();
    };
    let rows: Vec<Vec<String>> = board
        .calls()
        .iter()
        .map(|c| {
            let suspected = alg_calls.iter().any(|a| a.call_id == c.call_id);
            vec![
                esc(&c.call_id),
                format!("{} s", now_ms.saturating_sub(c.created_unix_ms) / 1000),
                c.streams.to_string(),
                c.packets.to_string(),
                c.bytes.to_string(),
                c.errors.to_string(),
                if suspected { "suspected" } else { "none" }.to_string(),
            ]
        })
        .collect();
    let counters: Vec<Vec<String>> = d
        .api
        .metrics
        .rtp_counters()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| vec![esc(k), v.to_string()])
        .collect();
    let body = format!(
        "<p>{} calls (published once a second).</p>{}{alg}<h2>Relay counters</h2>{}",
        rows.len(),
        table(
            "calls",
            &[
                "Call-ID",
                "age",
                "streams",
                "packets relayed",
                "bytes",
                "not relayed",
                "SIP ALG"
            ],
            &rows
        ),
        table("relay", &["what", "since start"], &counters)
    );
    Html(page("Calls", &s, &body)).into_response()
}

/// The recent calls in which a SIP ALG was suspected on one side, relayed or not.
pub(crate) fn alg_table(calls: &[crate::control::sessions::AlgCall], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = calls
        .iter()
        .map(|a| {
            vec![
                esc(&a.call_id),
                format!("{} s ago", now_ms.saturating_sub(a.seen_unix_ms) / 1000),
                a.side.to_string(),
                a.source.to_string(),
                esc(&a.evidence),
            ]
        })
        .collect();
    format!(
        "<h2>Calls with a SIP ALG suspected</h2><p>{} (the newest {}).</p>{}",
        rows.len(),
        crate::control::sessions::ALG_CALLS_KEPT,
        table(
            "alg-calls",
            &["Call-ID", "seen", "side", "from", "evidence"],
            &rows
        )
    )
}

#[derive(Deserialize)]
struct SortQuery {
    sort: Option<String>,
}

async fn sources(
    State(d): State<Arc<Dashboard>>,
    s: Session,
    Query(q): Query<SortQuery>,
) -> Response {
    let v = api::sources_value(&d.api, q.sort.as_deref().unwrap_or("last_seen"));
    let now_ms = crate::runtime::clock::now().unix_millis();
    let rows: Vec<Vec<String>> = v["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let seen = r["last_seen_unix_ms"].as_u64().unwrap_or(0);
            vec![
                esc(r["address"].as_str().unwrap_or("")),
                if seen == 0 {
                    "-".into()
                } else {
                    format!("{} s ago", now_ms.saturating_sub(seen) / 1000)
                },
                r["requests"].to_string(),
                r["no_change"].to_string(),
                r["change_ip"].to_string(),
                r["change_port"].to_string(),
                r["errors"].to_string(),
                r["allocations"].to_string(),
                r["relayed_bytes"].to_string(),
            ]
        })
        .collect();
    let sort_link = |key: &str, name: &str| format!("<a href=\"/sources?sort={key}\">{name}</a>");
    let headers = [
        sort_link("address", "address"),
        sort_link("last_seen", "last seen"),
        sort_link("requests", "requests"),
        "no change".into(),
        "change IP".into(),
        "change port".into(),
        sort_link("errors", "errors"),
        sort_link("allocations", "TURN allocations"),
        sort_link("relayed_bytes", "relayed bytes"),
    ];
    let mut body = format!(
        "<p>{} addresses (per data-plane worker at most <code>admin.source_table_size</code>, the least recently seen dropped first; published once a second). Click a heading to sort.</p>",
        rows.len()
    );
    body.push_str(&html::table_raw("sources", &headers, &rows));
    Html(page("Sources", &s, &body)).into_response()
}

#[derive(Deserialize)]
struct LogQuery {
    level: Option<String>,
}

async fn log(State(d): State<Arc<Dashboard>>, s: Session, Query(q): Query<LogQuery>) -> Response {
    let level = parse_level(q.level.as_deref().unwrap_or("info"));
    let mut body = String::from("<p>Level: ");
    for l in ["error", "warn", "info", "debug"] {
        body.push_str(&format!("<a href=\"/log?level={l}\">{l}</a> "));
    }
    body.push_str("</p>");
    let rows: Vec<Vec<String>> = d
        .api
        .log
        .entries(level)
        .iter()
        .rev()
        .map(|e| vec![e.seq.to_string(), e.level.to_string(), esc(&e.message)])
        .collect();
    body.push_str(&table("log", &["#", "level", "message"], &rows));
    Html(page("Log", &s, &body)).into_response()
}

async fn users(State(d): State<Arc<Dashboard>>, s: Session) -> Response {
    let url = d.api.store_url.clone();
    let (users, secrets) = match tokio::task::spawn_blocking(move || users::list(&url)).await {
        Ok(Ok(both)) => both,
        Ok(Err(e)) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let button = |action: &str, field: &str, value: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"{field}\" value=\"{}\"><button type=\"submit\">{label}</button></form>",
            s.csrf,
            esc(value)
        )
    };
    let user_rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                esc(&u.name),
                esc(&u.realm),
                button("/users/remove", "name", &u.name, "Remove"),
            ]
        })
        .collect();
    let secret_rows: Vec<Vec<String>> = secrets
        .iter()
        .map(|x| {
            vec![
                x.id.to_string(),
                esc(&x.masked),
                button("/secrets/remove", "id", &x.id.to_string(), "Remove"),
            ]
        })
        .collect();
    let body = format!(
        "{}<h2>Add a user</h2><p>Added to the realms {} (TURN and SIP).</p><form method=\"post\" action=\"/users/add\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><label>Name <input name=\"name\" required></label> <label>Password <input name=\"password\" type=\"password\" required></label> <button type=\"submit\">Add</button></form>\
         <h2>Shared secrets</h2><p>For ephemeral (REST) TURN credentials, as coturn's <code>static-auth-secret</code>; secrets in the configuration file are not listed.</p>{}\
         <form method=\"post\" action=\"/secrets/add\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Make a new secret</button></form>",
        table("users", &["name", "realm", ""], &user_rows),
        esc(&d.api.realms.join(", ")),
        table("secrets", &["id", "secret", ""], &secret_rows),
        csrf = s.csrf,
    );
    Html(page("Users and secrets", &s, &body)).into_response()
}

#[derive(Deserialize)]
struct UserForm {
    csrf: String,
    name: String,
    #[serde(default)]
    password: String,
}

async fn add_user(
    State(d): State<Arc<Dashboard>>,
    s: Session,
    Form(f): Form<UserForm>,
) -> Response {
    if let Err(r) = s.check(&f.csrf) {
        return r.into_response();
    }
    let d2 = Arc::clone(&d);
    let done = tokio::task::spawn_blocking(move || {
        users::add_user(&d2.api.store_url, &d2.api.realms, &f.name, &f.password)
    })
    .await;
    match done {
        Ok(Ok(())) => Redirect::to("/users").into_response(),
        Ok(Err(e)) => (
            StatusCode::BAD_REQUEST,
            Html(format!(
                "<p>{}</p><p><a href=\"/users\">Back</a></p>",
                esc(&e)
            )),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn remove_user(
    State(d): State<Arc<Dashboard>>,
    s: Session,
    Form(f): Form<UserForm>,
) -> Response {
    if let Err(r) = s.check(&f.csrf) {
        return r.into_response();
    }
    let url = d.api.store_url.clone();
    let _ = tokio::task::spawn_blocking(move || users::remove_user(&url, &f.name)).await;
    Redirect::to("/users").into_response()
}

async fn add_secret(
    State(d): State<Arc<Dashboard>>,
    s: Session,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match s.check(&f.csrf) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let url = d.api.store_url.clone();
    match tokio::task::spawn_blocking(move || users::add_secret(&url, None)).await {
        Ok(Ok((id, Some(secret)))) => {
            let body = format!(
                "<p>Secret {id}, shown this once: <code id=\"secret\">{}</code></p><p><a href=\"/users\">Back</a></p>",
                esc(&secret)
            );
            Html(page("New shared secret", &s, &body)).into_response()
        }
        Ok(Ok((_, None))) => Redirect::to("/users").into_response(),
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, e).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct SecretForm {
    csrf: String,
    id: i64,
}

async fn remove_secret(
    State(d): State<Arc<Dashboard>>,
    s: Session,
    Form(f): Form<SecretForm>,
) -> Response {
    if let Err(r) = s.check(&f.csrf) {
        return r.into_response();
    }
    let url = d.api.store_url.clone();
    let _ = tokio::task::spawn_blocking(move || users::remove_secret(&url, f.id)).await;
    Redirect::to("/users").into_response()
}

async fn config(State(d): State<Arc<Dashboard>>, s: Session) -> Response {
    let body = format!(
        "<p>As running (after what was taken from the host); secrets shown as <code>(redacted)</code>.</p><pre>{}</pre>",
        esc(&d.api.config_text)
    );
    Html(page("Configuration", &s, &body)).into_response()
}

/// The configuration as the dashboard shows it: secrets replaced.
pub fn redacted(config: &crate::config::Config) -> String {
    let mut c = config.clone();
    for s in c
        .turn
        .auth_secrets
        .iter_mut()
        .chain(c.stun.partner_secrets.iter_mut())
    {
        *s = "(redacted)".into();
    }
    format!("{c:#?}")
}
