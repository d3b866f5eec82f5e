//! `farside status`, `farside sessions`, `farside reload` and `farside drain`: clients of a running server's
//! admin API (`control/api.rs`), found where the configuration says (`admin.listen`) and
//! authorized with the token beside its store (`control/token.rs`). Over HTTPS
//! (`admin.tls`) the server must present exactly the configured `tls.cert`: the client pins
//! it, so a self-signed certificate works and no other does.

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
        let calls = v["calls"].as_array().cloned().unwrap_or_default();
        out.push_str(&format!("Calls on the RTP relay: {}\n", calls.len()));
        for c in &calls {
            out.push_str(&format!(
                "  {} {} streams, {} packets relayed, {} not\n",
                c["call_id"].as_str().unwrap_or("?"),
                c["streams"],
                c["packets"],
                c["errors"],
            ));
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

/// What `farside drain` asks.
#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    /// Where new TURN allocations go: `IP:port` of another node (several: the first of the
    /// client's address family is named).
    #[arg(
        long,
        value_name = "IP:PORT",
        value_delimiter = ',',
        conflicts_with = "stop"
    )]
    to: Vec<SocketAddr>,
    /// Stop draining: allocations are made here again.
    #[arg(long)]
    stop: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// `farside drain`: starts, stops, or (with neither `--to` nor `--stop`) shows the drain.
pub fn drain(args: &DrainArgs) -> ExitCode {
    let to = args
        .to
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let (method, path) = match (args.stop, to.is_empty()) {
        (true, _) => ("DELETE", "/api/v1/drain".to_string()),
        (false, true) => ("GET", "/api/v1/drain".to_string()),
        (false, false) => ("POST", format!("/api/v1/drain?to={to}")),
    };
    run(&args.admin, method, &path, |v| {
        let left = v["allocations"].as_u64().unwrap_or(0);
        let to: Vec<&str> = v["to"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match v["draining"].as_bool() {
            Some(true) => format!(
                "draining: new TURN allocations go to {}; {left} allocations left here\n",
                to.join(", ")
            ),
            _ => format!("not draining: TURN allocations are made here; {left} now\n"),
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
    let pinned = match (&config.admin.tls, &config.tls.cert) {
        (true, Some(cert)) => Some(pinned_cert(cert)?),
        _ => None,
    };
    let (status, body) = runtime
        .block_on(async {
            tokio::time::timeout(TIMEOUT, request(addr, method, path, &token, pinned)).await
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
    pinned: Option<rustls::pki_types::CertificateDer<'static>>,
) -> Result<(u16, Vec<u8>), String> {
    let fail = |e: &dyn std::fmt::Display| format!("{addr}{path}: {e}");
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail(&format!("{e} (is farside serve running?)")))?;
    let Some(cert) = pinned else {
        return exchange(stream, addr, method, path, token).await;
    };
    let config = crate::net::tls_client::config(&crate::net::tls_client::Verify::Pinned(cert))
        .map_err(|e| fail(&format!("{e:#}")))?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| fail(&format!("TLS: {e}")))?;
    exchange(tls, addr, method, path, token).await
}

/// One HTTP/1.1 request over `io`.
async fn exchange<IO>(
    io: IO,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
) -> Result<(u16, Vec<u8>), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt as _;
    let fail = |e: &dyn std::fmt::Display| format!("{addr}{path}: {e}");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
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

/// The first certificate of the PEM file `path`.
fn pinned_cert(
    path: &std::path::Path,
) -> Result<rustls::pki_types::CertificateDer<'static>, String> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("tls.cert {}: {e}", path.display()))?
        .next()
        .ok_or_else(|| format!("tls.cert {}: no certificate", path.display()))?
        .map_err(|e| format!("tls.cert {}: {e}", path.display()))
}

/// "2 h 5 min", "3 min 7 s", "42 s".
fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}
