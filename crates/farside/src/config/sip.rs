//! `[sip]`: the SIP registrar and NAT edge, and `[sip.keepalive]`. Every value is typed as it is
//! read (listeners, mode, upstream, Contact fix, algorithms, keep-alive interval and method), so
//! what loads is what runs; the cores' settings are built from it in one place each.

use std::net::{IpAddr, SocketAddr};

use farside_sip::digest::Algorithm;
use farside_sip::edge::ContactFix;
use farside_sip::keepalive::{KeepaliveConfig, Method};
use farside_sip::nat::Transport;
use farside_sip::registrar::RegistrarConfig;
use farside_sip::server::{self, SipServerConfig};
use serde::Deserialize;

use super::{Config, ConfigError, invalid};

/// `[sip]`: the SIP registrar and NAT edge.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Serve SIP (left out: when the host gives it a domain, see `config::host`).
    pub enabled: super::values::Switch,
    /// Listeners: `"udp:address:port"`, `"tcp:…"`, `"tls:…"`, `"ws:…"`, `"wss:…"`; default:
    /// UDP and TCP on port 5060 of every host address.
    pub listen: Vec<Listener>,
    /// Most connections (TCP, TLS, WebSocket) open at once.
    pub max_connections: usize,
    /// Most connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// A connection that has not delivered a whole message this long after it opened is
    /// closed, seconds.
    pub first_message_timeout: u64,
    /// A connection idle this long is closed (unless a registration rides on it), seconds.
    pub idle_timeout: u64,
    /// A TLS handshake unfinished after this long is closed, seconds.
    pub tls_handshake_timeout: u64,
    /// Web pages (`Origin`s, `"https://host[:port]"`) whose scripts may open SIP WebSocket
    /// connections besides those served from the host connected to; `"*"`: any page.
    /// Clients that send no `Origin` (not browsers) are not judged by it.
    pub ws_origins: Vec<WsOrigin>,
    /// Bytes queued for a peer that does not read, at most (then it is closed).
    pub max_queued: usize,
    /// Check the certificate of a phone Farside dials over TLS (its own connection gone):
    /// it must chain to a CA of `tls_ca` and name the Contact's address. Off: any
    /// certificate (phones with self-signed ones).
    pub tls_verify: bool,
    /// The CA bundle (PEM) for `tls_verify`; default: the system's.
    pub tls_ca: Option<std::path::PathBuf>,
    /// The domain whose users register here; default: the host's address (or name).
    pub domain: String,
    /// `"registrar"` (Farside authenticates and routes) or `"edge"` (in front of `upstream`).
    pub mode: Mode,
    /// Edge mode: the registrar or PBX behind the edge, `"sip:host[:port]"`.
    pub upstream: Option<Upstream>,
    /// Edge mode, for an upstream that keeps no Path: `"none"`, `"rewrite"` or `"alias"`.
    pub contact_fix: ContactFixFile,
    /// The Digest realm; default: the domain.
    pub realm: Option<String>,
    /// Shortest registration accepted, seconds (423 below).
    pub min_expires: u32,
    /// Longest registration granted, seconds.
    pub max_expires: u32,
    /// Granted when a phone asks for none, seconds.
    pub default_expires: u32,
    /// Seconds a Digest nonce stays valid (then `stale=true`).
    pub nonce_lifetime: u64,
    /// Most contacts per address of record.
    pub max_bindings_per_aor: usize,
    /// Most addresses of record.
    pub max_aors: usize,
    /// Digest algorithms offered, most preferred first: `"MD5"`, `"SHA-256"`.
    pub digest_algorithms: Vec<DigestAlgorithm>,
    /// Failed authentications per source IP per minute before its REGISTERs are ignored.
    pub auth_failures_per_minute: u32,
    /// How late a refresh (a later expiry, keep-alive counts) may reach the store; new and
    /// removed bindings go at once. 0: write-through, a REGISTER's 2xx waits for the store.
    pub write_behind: WriteBehind,
    /// Answers Farside writes itself over UDP (401, 4xx, 5xx, answers to OPTIONS) per source
    /// IP and second; beyond, they are dropped unsent, so a forged source draws no flood
    /// (0 = no limit). Responses forwarded from phones are not counted.
    pub refusals_per_second: u32,
    /// Source addresses whose SIP ALG verdict is remembered (each judged by its first request).
    pub alg_sources: usize,
    /// The mirror service's reserved user: a request for it is answered with what arrived.
    /// Empty: no mirror.
    pub mirror_user: String,
    /// The echo service's reserved user: an INVITE for it is answered with the RTP relay's
    /// ports in echo mode, so its media comes back. Empty: no echo.
    pub echo_user: String,
    /// Echo calls at once (486 Busy Here beyond).
    pub echo_calls: usize,
    /// Seconds an echo call runs at most.
    pub echo_seconds: u64,
    /// `[sip.keepalive]`.
    pub keepalive: KeepaliveFile,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            enabled: super::values::Switch::Auto,
            listen: Vec::new(),
            domain: String::new(),
            mode: Mode::Registrar,
            upstream: None,
            contact_fix: ContactFixFile::None,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            first_message_timeout: 30,
            idle_timeout: 600,
            tls_handshake_timeout: 10,
            ws_origins: Vec::new(),
            max_queued: 1 << 20,
            tls_verify: true,
            tls_ca: None,
            realm: None,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            nonce_lifetime: 300,
            max_bindings_per_aor: 16,
            max_aors: 100_000,
            digest_algorithms: vec![DigestAlgorithm(Algorithm::Md5)],
            auth_failures_per_minute: 20,
            write_behind: WriteBehind(10),
            refusals_per_second: 50,
            alg_sources: 100_000,
            mirror_user: farside_sip::mirror::DEFAULT_USER.into(),
            echo_user: farside_sip::echo::DEFAULT_USER.into(),
            echo_calls: farside_sip::echo::DEFAULT_MAX_CALLS,
            echo_seconds: farside_sip::echo::DEFAULT_MAX_DURATION.as_secs(),
            keepalive: KeepaliveFile::default(),
        }
    }
}

/// One `[sip] ws_origins` entry: `"*"`, or an origin `scheme://host[:port]` (RFC 6454) with
/// scheme `http` or `https` and nothing after the host and port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct WsOrigin(pub String);

impl TryFrom<String> for WsOrigin {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if s == "*" {
            return Ok(WsOrigin(s));
        }
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ', '@']) => {
                Ok(WsOrigin(s))
            }
            _ => Err(format!(
                "{s:?}: expected \"*\" or an origin such as \"https://app.example.com\" (scheme, host and port only)"
            )),
        }
    }
}

/// One `[sip] listen` entry: a transport and an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Listener {
    /// UDP, TCP, TLS, WS or WSS.
    pub transport: Transport,
    /// Where.
    pub address: SocketAddr,
}

impl TryFrom<String> for Listener {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?}: expected \"udp:\", \"tcp:\", \"tls:\", \"ws:\" or \"wss:\" and address:port"
            )
        };
        let (kind, address) = s.split_once(':').ok_or_else(bad)?;
        let transport = Transport::from_name(kind.as_bytes()).ok_or_else(bad)?;
        let address = address.parse().map_err(|_| bad())?;
        Ok(Listener { transport, address })
    }
}

/// `[sip] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Farside authenticates phones and routes their calls.
    Registrar,
    /// Farside is the NAT edge in front of `upstream`, which authenticates and routes.
    Edge,
}

/// `[sip] upstream`: `sip:host[:port]` (port 5060 when absent, URI parameters ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Upstream {
    /// A host name or an IP address (without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl TryFrom<String> for Upstream {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        upstream(&s).ok_or_else(|| format!("{s:?}: expected \"sip:host[:port]\""))
    }
}

fn upstream(s: &str) -> Option<Upstream> {
    let rest = s.strip_prefix("sip:")?;
    let hostport = rest.split(';').next()?;
    if hostport.contains('@') || hostport.is_empty() {
        return None;
    }
    let of = |host: String, port| Some(Upstream { host, port });
    if let Ok(a) = hostport.parse::<SocketAddr>() {
        return of(a.ip().to_string(), a.port());
    }
    if let Some(v6) = hostport.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return of(v6.parse::<IpAddr>().ok()?.to_string(), 5060);
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, 5060),
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    ok.then(|| of(host.to_owned(), port)).flatten()
}

/// `[sip] contact_fix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContactFixFile {
    /// Leave Contacts as they are.
    None,
    /// nathelper's `fix_nated_contact`.
    Rewrite,
    /// nathelper's `add_contact_alias`.
    Alias,
}

impl From<ContactFixFile> for ContactFix {
    fn from(f: ContactFixFile) -> ContactFix {
        match f {
            ContactFixFile::None => ContactFix::None,
            ContactFixFile::Rewrite => ContactFix::Rewrite,
            ContactFixFile::Alias => ContactFix::Alias,
        }
    }
}

/// One of `[sip] digest_algorithms` (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DigestAlgorithm(pub Algorithm);

impl TryFrom<String> for DigestAlgorithm {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Ok(DigestAlgorithm(Algorithm::Md5)),
            "SHA-256" => Ok(DigestAlgorithm(Algorithm::Sha256)),
            _ => Err(format!("{s:?}: one of \"MD5\", \"SHA-256\"")),
        }
    }
}

/// `[sip.keepalive]`: pings that keep registered phones' NAT bindings open.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveFile {
    /// Ping registered phones.
    pub enabled: bool,
    /// Each binding once per this long: `"25s"`, `"1m"`, or seconds (1 s to 1 h).
    pub interval: Interval,
    /// `"OPTIONS"`, `"NOTIFY"`, `"CRLF"` or `"UDP4"` (any case).
    pub method: KeepaliveMethod,
    /// From of SIP pings; default `sip:keepalive@<domain>`.
    pub from: Option<String>,
    /// SIP pings missed in a row before a binding is dropped.
    pub max_failures: u32,
    /// Ping every binding, not only those the NAT tests flag.
    pub all_contacts: bool,
}

impl Default for KeepaliveFile {
    fn default() -> Self {
        KeepaliveFile {
            enabled: true,
            interval: Interval(25),
            method: KeepaliveMethod(Method::Options),
            from: None,
            max_failures: 3,
            all_contacts: false,
        }
    }
}

/// A keep-alive interval in seconds, written `"25s"`, `"1m"`, `"30"` or `30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub struct Interval(pub u64);

impl TryFrom<toml::Value> for Interval {
    type Error = String;

    fn try_from(v: toml::Value) -> Result<Self, String> {
        seconds(&v)
            .filter(|n| (1..=3600).contains(n))
            .map(Interval)
            .ok_or_else(|| format!("{v}: expected \"25s\", \"1m\" or seconds, 1 s to 1 h"))
    }
}

/// `[sip] write_behind`: how late a refresh may reach the store, in seconds (0 to 1 h), written
/// as [`Interval`] is; 0 is write-through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub struct WriteBehind(pub u64);

impl TryFrom<toml::Value> for WriteBehind {
    type Error = String;

    fn try_from(v: toml::Value) -> Result<Self, String> {
        seconds(&v)
            .filter(|n| *n <= 3600)
            .map(WriteBehind)
            .ok_or_else(|| {
                format!("{v}: expected \"10s\", \"1m\" or seconds, 0 (write-through) to 1 h")
            })
    }
}

/// Seconds written `"25s"`, `"1m"`, `"30"` or `30`.
fn seconds(v: &toml::Value) -> Option<u64> {
    match v {
        toml::Value::Integer(n) => u64::try_from(*n).ok(),
        toml::Value::String(s) => {
            let s = s.trim();
            let (n, unit) = match s.strip_suffix('s') {
                Some(n) => (n, 1),
                None => match s.strip_suffix('m') {
                    Some(n) => (n, 60),
                    None => (s, 1),
                },
            };
            n.trim().parse::<u64>().ok().map(|n| n * unit)
        }
        _ => None,
    }
}

/// `[sip.keepalive] method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct KeepaliveMethod(pub Method);

impl TryFrom<String> for KeepaliveMethod {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let m = match s.to_ascii_uppercase().as_str() {
            "OPTIONS" => Method::Options,
            "NOTIFY" => Method::Notify,
            "CRLF" => Method::Crlf,
            "UDP4" => Method::Udp4,
            _ => {
                return Err(format!(
                    "{s:?}: one of \"OPTIONS\", \"NOTIFY\", \"CRLF\", \"UDP4\""
                ));
            }
        };
        Ok(KeepaliveMethod(m))
    }
}

impl SipConfig {
    /// The Digest realm.
    pub fn realm(&self) -> &str {
        self.realm.as_deref().unwrap_or(&self.domain)
    }

    /// The registrar's settings.
    pub fn registrar(&self) -> RegistrarConfig {
        RegistrarConfig {
            domain: self.domain.clone(),
            realm: self.realm().to_owned(),
            min_expires: self.min_expires,
            max_expires: self.max_expires,
            default_expires: self.default_expires,
            max_bindings_per_aor: self.max_bindings_per_aor,
            max_aors: self.max_aors,
            nonce_lifetime: std::time::Duration::from_secs(self.nonce_lifetime),
            algorithms: self.digest_algorithms.iter().map(|a| a.0).collect(),
            auth_failures_per_minute: self.auth_failures_per_minute,
            // RFC 5626 phones keep their own flows: they are told the interval this server
            // keeps other phones' bindings with.
            flow_timer: Some(self.keepalive.interval.0 as u32),
        }
    }

    /// What a reload may change in the running SIP server.
    pub fn settings(&self) -> crate::sip::SipSettings {
        crate::sip::SipSettings {
            registrar: self.registrar(),
            keepalive: self.keepalive(),
            refusals_per_second: self.refusals_per_second,
        }
    }

    /// The keep-alive settings, `None` when keep-alives are off.
    pub fn keepalive(&self) -> Option<KeepaliveConfig> {
        let k = &self.keepalive;
        k.enabled.then(|| KeepaliveConfig {
            interval_ms: k.interval.0 * 1000,
            method: k.method.0,
            from: k
                .from
                .clone()
                .unwrap_or_else(|| format!("sip:keepalive@{}", self.domain)),
            max_failures: k.max_failures,
            all_contacts: k.all_contacts,
        })
    }

    /// The SIP server's settings; `upstream` is edge mode's upstream, resolved at start.
    pub fn server(
        &self,
        upstream: Option<SocketAddr>,
        software: Option<String>,
        relay: farside_sip::media::RelayPolicy,
    ) -> SipServerConfig {
        let mode = match (self.mode, upstream) {
            (Mode::Edge, Some(upstream)) => server::Mode::Edge {
                upstream,
                contact_fix: self.contact_fix.into(),
            },
            _ => server::Mode::Registrar,
        };
        SipServerConfig {
            registrar: self.registrar(),
            mode,
            keepalive: self.keepalive(),
            listeners: self
                .listen
                .iter()
                .map(|l| (l.address, l.transport))
                .collect(),
            limits: server::Limits {
                refusals_per_second: self.refusals_per_second,
                alg_sources: self.alg_sources,
                echo_calls: self.echo_calls,
                echo_max_duration: std::time::Duration::from_secs(self.echo_seconds),
                ..server::Limits::default()
            },
            software,
            relay,
            mirror_user: self.mirror_user.clone(),
            echo_user: self.echo_user.clone(),
        }
    }

    /// Which pages may open SIP WebSocket connections.
    pub fn ws_origins(&self) -> farside_sip::websocket::Origins {
        farside_sip::websocket::Origins {
            any: self.ws_origins.iter().any(|o| o.0 == "*"),
            allowed: self
                .ws_origins
                .iter()
                .filter(|o| o.0 != "*")
                .map(|o| o.0.clone())
                .collect(),
        }
    }

    /// The limits of SIP connections.
    pub fn stream_limits(&self) -> crate::net::stream::Limits {
        crate::net::stream::Limits {
            max_connections: self.max_connections,
            max_per_ip: self.max_connections_per_ip,
            first_message: std::time::Duration::from_secs(self.first_message_timeout),
            idle: std::time::Duration::from_secs(self.idle_timeout),
            tls_handshake: std::time::Duration::from_secs(self.tls_handshake_timeout),
            max_queued: self.max_queued,
            max_message: farside_sip::MAX_MESSAGE,
        }
    }

    /// Whether SIP can dial TLS: it has a `tls:` listener to dial from.
    pub fn dials_tls(&self) -> bool {
        self.listen.iter().any(|l| l.transport == Transport::Tls)
    }

    /// Whether a listener needs the `[tls]` certificate (TLS or WSS).
    pub fn needs_tls(&self) -> bool {
        self.listen
            .iter()
            .any(|l| matches!(l.transport, Transport::Tls | Transport::Wss))
    }
}

impl Config {
    pub(super) fn validate_sip(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message| invalid(origin, key, message);
        let sip = &self.sip;
        if !sip.enabled.wanted() {
            return Ok(());
        }
        // An empty domain or listen list is the host's to fill (`config::host`).
        if sip.domain.len() > 253 {
            return Err(invalid("sip.domain", "at most 253 characters".into()));
        }
        if sip.mode == Mode::Edge && sip.upstream.is_none() {
            return Err(invalid(
                "sip.upstream",
                "edge mode needs the registrar behind it, as \"sip:host[:port]\"".into(),
            ));
        }
        if sip.needs_tls() && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return Err(invalid(
                "sip.listen",
                "a \"tls:\" or \"wss:\" listener needs [tls] cert and key (PEM files)".into(),
            ));
        }
        if let Some((field, why)) = sip.stream_limits().problem() {
            use crate::net::stream::LimitField;
            let key = match field {
                LimitField::MaxConnections => "sip.max_connections",
                LimitField::MaxPerIp => "sip.max_connections_per_ip",
                LimitField::FirstMessage => "sip.first_message_timeout",
                LimitField::Idle => "sip.idle_timeout",
                LimitField::TlsHandshake => "sip.tls_handshake_timeout",
                LimitField::MaxQueued => "sip.max_queued",
            };
            return Err(invalid(key, why));
        }
        if sip.min_expires == 0
            || sip.max_expires < sip.min_expires
            || !(sip.min_expires..=sip.max_expires).contains(&sip.default_expires)
        {
            return Err(invalid(
                "sip.max_expires",
                "need 0 < min_expires <= default_expires <= max_expires".into(),
            ));
        }
        if sip.nonce_lifetime == 0 {
            return Err(invalid(
                "sip.nonce_lifetime",
                "must be at least 1 second".into(),
            ));
        }
        if !(1..=86_400).contains(&sip.echo_seconds) {
            return Err(invalid(
                "sip.echo_seconds",
                "must be 1 to 86400 seconds".into(),
            ));
        }
        if !sip.echo_user.is_empty() && sip.echo_user == sip.mirror_user {
            return Err(invalid(
                "sip.echo_user",
                "must differ from sip.mirror_user".into(),
            ));
        }
        if sip.keepalive.max_failures == 0 {
            return Err(invalid(
                "sip.keepalive.max_failures",
                "must be at least 1".into(),
            ));
        }
        if sip.digest_algorithms.is_empty() {
            return Err(invalid(
                "sip.digest_algorithms",
                "one or both of \"MD5\", \"SHA-256\"".into(),
            ));
        }
        Ok(())
    }
}
