//! `farside status`, `farside sessions` and `farside reload`: clients of a running server's
//! admin API (`control/api.rs`), found where the configuration says (`admin.listen`) and
//! authorized with the token beside its store (`control/token.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;

/// How long a command waits for the server.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server is.
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// The server's configuration file (its `admin.listen` and store locate it); without
    /// one, the embedded defaults' (http://127.0.0.1:9478/).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the API's JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `farside status`.
pub fn status(args: &AdminArgs) -> ExitCode {
    run(args, "GET", "/api/v1/status", |v| {
        let mut out = format!(
            "farside {} up {}\n",
            v["version"].as_str().unwrap_or("?"),
            duration(v["uptime_s"].as_u64().unwrap_or(0))
        );
        for part in v["running"].as_array().into_iter().flatten() {
            out.push_str(&format!("  {}\n", part.as_str().unwrap_or("?")));
        }
        let live = &v["live"];
        for (key, what) in [
            ("allocations", "TURN allocations"),
            ("bindings", "SIP registered contacts"),
            ("calls", "calls on the RTP relay"),
        ] {
            if let Some(n) = live[key].as_u64() {
                out.push_str(&format!("  {what}: {n}\n"));
            }
        }
        out
    })
}

/// `farside sessions`.
pub fn sessions(args: &AdminArgs) -> ExitCode {
    run(args, "GET", "/api/v1/sessions", |v| {
        let mut out = String::new();
        let allocations = v["allocations"].as_array().cloned().unwrap_or_default();
        out.push_str(&format!("TURN allocations: {}\n", allocations.len()));
        for a in &allocations {
            out.push_str(&format!(
                "  {} {} user {:?} relayed {} expires in {} s, {} permissions, {} channels\n",
                a["transport"].as_str().unwrap_or("?"),
                a["client"].as_str().unwrap_or("?"),
                a["username"].as_str().unwrap_or("?"),
                a["relayed"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                a["expires_in_s"],
                a["permissions"],
                a["channels"],
            ));
        }
        let registrations = v["registrations"].as_array().cloned().unwrap_or_default();
        out.push_str(&format!("SIP registrations: {}\n", registrations.len()));
        for r in &registrations {
            out.push_str(&format!(
                "  {} at {} over {} from {}, expires in {} s, NAT tests: {}, keep-alives missed: {}\n",
                r["aor"].as_str().unwrap_or("?"),
                r["contact"].as_str().unwrap_or("?"),
                r["transport"].as_str().unwrap_or("?"),
                r["remote"].as_str().unwrap_or("?"),
                r["expires_in_s"],
                r["nat_tests"].as_str().unwrap_or("?"),
                r["keepalive_failures"],
            ));
        }
        if let Some(n) = v["calls"].as_u64() {
            out.push_str(&format!("Calls on the RTP relay: {n}\n"));
        }
        out
    })
}

/// `farside reload`.
pub fn reload(args: &AdminArgs) -> ExitCode {
    run(args, "POST", "/api/v1/reload", |v| {
        let list = |k: &str| {
            v[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (applied, restart) = (list("applied"), list("restart"));
        match (applied.is_empty(), restart.is_empty()) {
            (true, true) => "reloaded: nothing changed\n".into(),
            (false, true) => format!("reloaded: applied {applied}\n"),
            (true, false) => format!("reloaded: {restart} changed, applies at the next restart\n"),
            (false, false) => format!(
                "reloaded: applied {applied}; {restart} changed, applies at the next restart\n"
            ),
        }
    })
}

fn run(args: &AdminArgs, method: &str, path: &str, text: impl Fn(&Value) -> String) -> ExitCode {
    match call(args, method, path) {
        Ok(v) if args.json => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Ok(v) => {
            print!("{}", text(&v));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("farside: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One API request; the answer's JSON, or the error it carried.
fn call(args: &AdminArgs, method: &str, path: &str) -> Result<Value, String> {
    let (config, _) = Config::load_settled(args.config.as_deref()).map_err(|e| e.to_string())?;
    let addr = config
        .admin
        .address()
        .ok_or("admin.listen is \"off\" in this configuration: no API to ask")?;
    let token_file = crate::control::token::path(&config);
    let token = crate::control::token::read(&token_file).map_err(|e| {
        format!(
            "cannot read the API token {}: {e} (is the server running with this configuration, \
             and may this user read its data directory?)",
            token_file.display()
        )
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (status, body) = runtime
        .block_on(async {
            tokio::time::timeout(TIMEOUT, request(addr, method, path, &token)).await
        })
        .map_err(|_| format!("http://{addr}{path}: no answer within {TIMEOUT:?}"))??;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("http://{addr}{path}: not JSON ({e}), status {status}"))?;
    if !(200..300).contains(&status) {
        let why = v["error"].as_str().unwrap_or("no reason given");
        return Err(format!("http://{addr}{path}: {status}: {why}"));
    }
    Ok(v)
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
) -> Result<(u16, Vec<u8>), String> {
    use http_body_util::BodyExt as _;
    let fail = |e: &dyn std::fmt::Display| format!("http://{addr}{path}: {e}");
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail(&format!("{e} (is farside serve running?)")))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| fail(&e))?;
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| fail(&e))?;
    let response = sender.send_request(request).await.map_err(|e| fail(&e))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(&e))?
        .to_bytes();
    Ok((status, body.to_vec()))
}

/// "2 h 5 min", "3 min 7 s", "42 s".
fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}
