//! The phone check: what the server can tell about one registration without the phone's help
//! (issue 18's dashboard page): its binding and keep-alive health, the NAT tests its REGISTER
//! fired, in words, the SIP ALG evidence (S424, from the log), and the media quality of its
//! calls on the RTP relay now (each side whose RTP comes from the phone's address: loss,
//! jitter, round trip, and the E-model's MOS). It ends with what to do, in plain words.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::Dashboard;
use super::auth::Session;
use super::html::{esc, page, table};
use crate::control::api;
use crate::control::sessions::CallSummary;

/// Which registration.
#[derive(Deserialize)]
pub struct Which {
    aor: String,
    contact: String,
}

/// What each NAT test that fired says about the phone, in words.
fn meaning(test: &str) -> &'static str {
    match test {
        "private_contact" => {
            "its Contact names a private address: it is behind NAT and does not know its public one"
        }
        "via_received" => "its Via names another address than the one its packets come from",
        "private_via" => "its Via names a private address",
        "private_sdp" => "its SDP names a private address for media",
        "via_port" => {
            "its Via names another port than the one its packets come from: the NAT changed it"
        }
        "private_source" => "its packets come from a private address (on the server's own network)",
        "websocket" => "it connects over a WebSocket (a browser)",
        "contact_port" => "its Contact names another port than the one its packets come from",
        "alg_suspected" => "its REGISTER looked rewritten by a SIP ALG on its way",
        _ => "",
    }
}

/// `/registrations/check?aor=..&contact=..`.
pub async fn check(
    State(d): State<Arc<Dashboard>>,
    s: Session,
    Query(w): Query<Which>,
) -> Response {
    let v = match api::sessions_value(&d.api).await {
        Ok(v) => v,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    let Some(r) = v["registrations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["aor"] == w.aor.as_str() && r["contact"] == w.contact.as_str())
    else {
        let body = format!(
            "<p>No registration of {} with the Contact {} now (it expired or was removed).</p><p><a href=\"/registrations\">Registrations</a></p>",
            esc(&w.aor),
            esc(&w.contact)
        );
        return Html(page("Phone check", &s, &body)).into_response();
    };
    let text = |k: &str| r[k].as_str().unwrap_or("").to_owned();
    let remote = text("remote");
    let missed = r["keepalive_failures"].as_i64().unwrap_or(0);
    let mut advice = Vec::new();
    let mut body = String::new();

    body.push_str(&table(
        "binding",
        &["", ""],
        &[
            vec!["address of record".into(), esc(&text("aor"))],
            vec!["contact".into(), esc(&text("contact"))],
            vec!["transport".into(), esc(&text("transport"))],
            vec!["from (its NAT's public address)".into(), esc(&remote)],
            vec!["node".into(), esc(&text("node"))],
            vec!["expires in (s)".into(), r["expires_in_s"].to_string()],
        ],
    ));

    body.push_str("<h2>Keep-alives</h2>");
    if missed == 0 {
        body.push_str("<p id=\"keepalives\">answering: the phone answered the last keep-alive (or none was due yet).</p>");
    } else {
        body.push_str(&format!(
            "<p id=\"keepalives\">{missed} missed in a row: its NAT may have forgotten the flow, or the phone is gone.</p>"
        ));
        advice.push(
            "the phone misses keep-alives: have it register or send keep-alives more often, or use TCP or TLS",
        );
    }

    body.push_str("<h2>NAT tests fired</h2>");
    let tests = text("nat_tests");
    if tests == "none" || tests.is_empty() {
        body.push_str(
            "<p id=\"nat\">none: the phone writes the address its packets come from.</p>",
        );
    } else {
        let rows: Vec<Vec<String>> = tests
            .split(',')
            .map(|t| vec![esc(t), esc(meaning(t))])
            .collect();
        body.push_str(&table("nat", &["test", "what it means"], &rows));
    }

    body.push_str("<h2>SIP ALG</h2>");
    if r["sip_alg"] == "suspected" {
        let evidence: Vec<String> = d
            .api
            .log
            .entries(tracing::Level::WARN)
            .iter()
            .filter(|e| {
                e.message.contains("S424") && e.message.contains(&format!("from {remote}:"))
            })
            .map(|e| esc(&e.message))
            .collect();
        body.push_str("<p id=\"alg\">suspected: its REGISTER looked rewritten on its way (see <a href=\"/log?level=warn\">S424</a>).</p>");
        for e in &evidence {
            body.push_str(&format!("<pre>{e}</pre>"));
        }
        advice.push("ask the user to turn off \"SIP ALG\" (\"SIP helper\") on their router, or run farside doctor from their network");
        let calls: Vec<_> = d
            .api
            .sip
            .as_ref()
            .map(|b| b.alg_calls())
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.source.to_string() == remote)
            .collect();
        let now_ms = crate::runtime::clock::now().unix_millis();
        body.push_str(&super::alg_table(&calls, now_ms));
    } else {
        body.push_str(
            "<p id=\"alg\">not suspected: nothing in its requests looked rewritten on the way.</p>",
        );
    }

    body.push_str("<h2>Media of its calls on the relay, now and lately</h2>");
    let ip = remote.parse::<SocketAddr>().ok().map(|a| a.ip());
    match (&d.api.calls, ip) {
        (None, _) => body.push_str("<p id=\"media\">The RTP relay does not run here (<code>[rtp]</code>): no media to measure.</p>"),
        (Some(board), Some(ip)) => {
            let mut calls = board.calls();
            calls.extend(board.recent());
            let (rows, lossy) = media_rows(&calls, ip);
            if lossy {
                advice.push("its calls lose audio on the way to the relay: check the user's uplink");
            }
            if rows.is_empty() {
                body.push_str("<p id=\"media\">No call of this phone is on the relay now, or ended on it lately.</p>");
            } else {
                body.push_str(&table(
                    "media",
                    &["Call-ID", "when", "its RTP from", "packets", "lost", "jitter", "round trip", "MOS"],
                    &rows,
                ));
            }
        }
        (Some(_), None) => body.push_str("<p id=\"media\">Its address is not an IP address: no media to match.</p>"),
    }

    body.push_str("<h2>Verdict</h2>");
    advice.dedup();
    if advice.is_empty() {
        body.push_str(
            "<p id=\"verdict\">Nothing to do: the server sees nothing wrong with this phone.</p>",
        );
    } else {
        body.push_str("<ul id=\"verdict\">");
        for a in &advice {
            body.push_str(&format!("<li>{}</li>", esc(a)));
        }
        body.push_str("</ul>");
    }
    Html(page(&format!("Phone check: {}", text("aor")), &s, &body)).into_response()
}

/// A row for each side of the relay's `calls` (live or ended) whose RTP comes from `ip`, and
/// whether any loses 1 % or more.
fn media_rows(calls: &[CallSummary], ip: IpAddr) -> (Vec<Vec<String>>, bool) {
    let mut lossy = false;
    let mut rows = Vec::new();
    let now_ms = crate::runtime::clock::now().unix_millis();
    for c in calls {
        let when = match &c.ended {
            None => "on now".to_string(),
            Some(e) => format!(
                "ended {} s ago ({})",
                now_ms.saturating_sub(e.unix_ms) / 1000,
                e.reason
            ),
        };
        for side in c
            .sides
            .iter()
            .filter(|s| s.endpoint.map(|e| e.ip()) == Some(ip))
        {
            let lost = side.lost.max(0) as f64;
            let expected = side.received as f64 + lost;
            let loss = if expected > 0.0 { lost / expected } else { 0.0 };
            lossy |= loss >= 0.01;
            let mos = farside_media::quality::call_mos(
                Duration::from_secs_f64(side.rtt_ms.unwrap_or(0.0) / 1000.0),
                Duration::from_secs_f64(side.jitter_ms / 1000.0),
                loss,
            );
            rows.push(vec![
                esc(&c.call_id),
                when.clone(),
                side.endpoint.map_or_else(String::new, |e| e.to_string()),
                side.received.to_string(),
                format!("{:.1} %", loss * 100.0),
                format!("{:.1} ms", side.jitter_ms),
                side.rtt_ms
                    .map_or_else(|| "not yet".into(), |r| format!("{r:.1} ms")),
                format!("{mos:.2}"),
            ]);
        }
    }
    (rows, lossy)
}
