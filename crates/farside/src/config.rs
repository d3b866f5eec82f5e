//! The configuration file: one TOML document, every key optional, safe defaults embedded.
//!
//! Every key is documented in `docs/configuration.md`; keep the two in step.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[stun]`: the STUN server.
    pub stun: StunConfig,
    /// `[turn]`: the TURN relay.
    pub turn: TurnConfigFile,
    /// `[store]`: where users and secrets live.
    pub store: StoreConfig,
    /// `[tls]`: STUN and TURN over TLS.
    pub tls: TlsConfig,
    /// `[sip]`: the SIP registrar.
    pub sip: SipConfig,
    /// `[admin]`: the HTTP endpoint for metrics and health.
    pub admin: AdminConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
}

/// `[sip]`: the SIP registrar and NAT edge (issue 5; UDP registrar so far).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Serve SIP.
    pub enabled: bool,
    /// Listeners: `"udp:address:port"`, `"tcp:…"`, `"tls:…"`, `"ws:…"`, `"wss:…"`.
    pub listen: Vec<String>,
    /// Most TCP connections open at once.
    pub max_connections: usize,
    /// The domain whose users register here.
    pub domain: String,
    /// `"registrar"` (Farside authenticates and routes) or `"edge"` (in front of `upstream`).
    pub mode: String,
    /// Edge mode: the registrar or PBX behind the edge, `"sip:host[:port]"`.
    pub upstream: Option<String>,
    /// Edge mode, for an upstream that keeps no Path: `"none"`, `"rewrite"` or `"alias"`.
    pub contact_fix: String,
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
    pub digest_algorithms: Vec<String>,
    /// Failed authentications per source IP per minute before its REGISTERs are ignored.
    pub auth_failures_per_minute: u32,
    /// `[sip.keepalive]`.
    pub keepalive: KeepaliveFile,
}

/// `[sip.keepalive]`: pings that keep registered phones' NAT bindings open.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveFile {
    /// Ping registered phones.
    pub enabled: bool,
    /// Each binding once per this long: `"25s"`, `"1m"`, or seconds.
    pub interval: String,
    /// `"OPTIONS"`, `"NOTIFY"`, `"CRLF"` or `"UDP4"`.
    pub method: String,
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
            interval: "25s".into(),
            method: "OPTIONS".into(),
            from: None,
            max_failures: 3,
            all_contacts: false,
        }
    }
}

impl KeepaliveFile {
    /// The interval in seconds (validated: 1 to 3600).
    pub fn interval_secs(&self) -> Option<u64> {
        let s = self.interval.trim();
        let (n, unit) = match s.strip_suffix('s') {
            Some(n) => (n, 1),
            None => match s.strip_suffix('m') {
                Some(n) => (n, 60),
                None => (s, 1),
            },
        };
        n.trim()
            .parse::<u64>()
            .ok()
            .map(|n| n * unit)
            .filter(|n| (1..=3600).contains(n))
    }

    /// The method (validated).
    pub fn method(&self) -> Option<farside_sip::keepalive::Method> {
        use farside_sip::keepalive::Method;
        match self.method.to_ascii_uppercase().as_str() {
            "OPTIONS" => Some(Method::Options),
            "NOTIFY" => Some(Method::Notify),
            "CRLF" => Some(Method::Crlf),
            "UDP4" => Some(Method::Udp4),
            _ => None,
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            enabled: false,
            listen: vec!["udp:127.0.0.1:5060".into()],
            domain: String::new(),
            mode: "registrar".into(),
            upstream: None,
            contact_fix: "none".into(),
            max_connections: 10_000,
            realm: None,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            nonce_lifetime: 300,
            max_bindings_per_aor: 16,
            max_aors: 100_000,
            digest_algorithms: vec!["MD5".into()],
            auth_failures_per_minute: 20,
            keepalive: KeepaliveFile::default(),
        }
    }
}

impl SipConfig {
    /// The UDP listen addresses (validated: every entry is `udp:address:port`).
    pub fn udp_listen(&self) -> Vec<SocketAddr> {
        self.listen
            .iter()
            .filter_map(|l| l.strip_prefix("udp:")?.parse().ok())
            .collect()
    }

    /// The Contact fix for edge mode (validated).
    pub fn contact_fix(&self) -> Option<farside_sip::edge::ContactFix> {
        use farside_sip::edge::ContactFix;
        match self.contact_fix.as_str() {
            "none" => Some(ContactFix::None),
            "rewrite" => Some(ContactFix::Rewrite),
            "alias" => Some(ContactFix::Alias),
            _ => None,
        }
    }

    /// The connection listeners (validated): TCP, TLS, WebSocket and secure WebSocket.
    pub fn stream_listen(&self) -> Vec<(SocketAddr, farside_sip::nat::Transport)> {
        use farside_sip::nat::Transport;
        self.listen
            .iter()
            .filter_map(|l| {
                let (kind, addr) = l.split_once(':')?;
                let t = match kind {
                    "tcp" => Transport::Tcp,
                    "tls" => Transport::Tls,
                    "ws" => Transport::Ws,
                    "wss" => Transport::Wss,
                    _ => return None,
                };
                Some((addr.parse().ok()?, t))
            })
            .collect()
    }

    /// The Digest algorithms, in order (validated).
    pub fn algorithms(&self) -> Vec<farside_sip::digest::Algorithm> {
        self.digest_algorithms
            .iter()
            .filter_map(|a| match a.to_ascii_uppercase().as_str() {
                "MD5" => Some(farside_sip::digest::Algorithm::Md5),
                "SHA-256" => Some(farside_sip::digest::Algorithm::Sha256),
                _ => None,
            })
            .collect()
    }

    /// The Digest realm.
    pub fn realm(&self) -> &str {
        self.realm.as_deref().unwrap_or(&self.domain)
    }

    /// Edge mode's upstream as host and port (validated: `sip:host[:port]`, port 5060 when
    /// absent, URI parameters ignored).
    pub fn upstream_host_port(&self) -> Option<(String, u16)> {
        let rest = self.upstream.as_deref()?.strip_prefix("sip:")?;
        let hostport = rest.split(';').next()?;
        if hostport.contains('@') || hostport.is_empty() {
            return None;
        }
        if let Ok(a) = hostport.parse::<SocketAddr>() {
            return Some((a.ip().to_string(), a.port()));
        }
        if let Some(v6) = hostport.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return v6.parse::<IpAddr>().ok().map(|ip| (ip.to_string(), 5060));
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
        ok.then(|| (host.to_owned(), port))
    }
}

/// `[stun]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StunConfig {
    /// Primary `address:port`s, each served over UDP (and TCP when `tcp` is on).
    pub listen: Vec<SocketAddr>,
    /// A second IP address of this host: enables RFC 5780 behaviour discovery.
    pub alternate_address: Option<IpAddr>,
    /// The second port for RFC 5780; default: the primary port + 1.
    pub alternate_port: Option<u16>,
    /// Also serve STUN over TCP on each primary `listen` address.
    pub tcp: bool,
    /// Data-plane threads; 0 = one per CPU this process may run on.
    pub workers: usize,
    /// SOFTWARE attribute in responses; none by default.
    pub software: Option<String>,
    /// Requested kernel receive buffer per UDP socket, bytes.
    pub recv_buffer: usize,
    /// Requested kernel send buffer per UDP socket, bytes.
    pub send_buffer: usize,
    /// Datagrams taken per `recvmmsg` call.
    pub batch: usize,
    /// Most simultaneous TCP connections; more are refused (closed at once) and counted.
    pub tcp_max_connections: usize,
    /// Most simultaneous TCP connections from one client IP address.
    pub tcp_max_connections_per_ip: usize,
    /// A TCP connection silent this long is closed, seconds.
    pub tcp_idle_timeout: u64,
    /// Partner mode: IP addresses of partner Farside servers (one address each, same two
    /// ports) that answer change-IP requests for this one-address server.
    pub partners: Vec<IpAddr>,
    /// Shared secrets for partner messages; the first signs, any verifies.
    pub partner_secrets: Vec<String>,
    /// Partner messages older (or further ahead) than this are refused, seconds.
    pub partner_max_age: u64,
    /// Forwards sent, and forwards answered, per second per worker.
    pub partner_rate_limit: u32,
    /// How often to greet each partner, seconds; silent for three and it is skipped.
    pub partner_heartbeat: u64,
}

impl Default for StunConfig {
    fn default() -> Self {
        StunConfig {
            listen: vec![
                SocketAddr::from(([0, 0, 0, 0], 3478)),
                SocketAddr::from(([0u16; 8], 3478)),
            ],
            alternate_address: None,
            alternate_port: None,
            tcp: true,
            workers: 0,
            software: None,
            recv_buffer: 8 << 20,
            send_buffer: 4 << 20,
            batch: 32,
            tcp_max_connections: 4096,
            tcp_max_connections_per_ip: 64,
            tcp_idle_timeout: 30,
            partners: Vec::new(),
            partner_secrets: Vec::new(),
            partner_max_age: 10,
            partner_rate_limit: 500,
            partner_heartbeat: 2,
        }
    }
}

/// `[turn]`: the TURN relay (RFC 8656), off unless enabled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfigFile {
    /// Serve TURN on the STUN UDP addresses.
    pub enabled: bool,
    /// REALM of the long-term credentials.
    pub realm: String,
    /// Addresses relayed from (one IPv4, one IPv6 at most); default: the first specific
    /// `stun.listen` address of each family.
    pub relay_address: Vec<IpAddr>,
    /// Relay port range, `"first-last"`.
    pub relay_ports: String,
    /// Peer ranges relayed to although the defaults refuse them.
    pub allowed_peers: Vec<String>,
    /// Peer ranges refused on top of the defaults.
    pub denied_peers: Vec<String>,
    /// Shared secrets for ephemeral (REST) credentials, besides those in the store.
    pub auth_secrets: Vec<String>,
    /// Most allocations on this server.
    pub max_allocations: usize,
    /// Most allocations per username (0 = no limit).
    pub max_allocations_per_user: usize,
    /// Allocation lifetime when the client asks for none, seconds.
    pub default_lifetime: u64,
    /// Longest allocation lifetime granted, seconds.
    pub max_lifetime: u64,
    /// Seconds a NONCE stays valid.
    pub nonce_lifetime: u64,
    /// Failed authentications per source IP per minute before it is ignored.
    pub auth_failures_per_minute: u32,
    /// Relayed bits per second per allocation, both directions together (0 = no cap).
    pub max_bps: u64,
    /// Grant TCP allocations (RFC 6062) to clients on TCP or TLS.
    pub tcp_relay: bool,
    /// Most TCP connections with peers per TCP allocation.
    pub max_tcp_connections: usize,
}

impl Default for TurnConfigFile {
    fn default() -> Self {
        TurnConfigFile {
            enabled: false,
            realm: "farside".into(),
            relay_address: Vec::new(),
            relay_ports: "49152-65535".into(),
            allowed_peers: Vec::new(),
            denied_peers: Vec::new(),
            auth_secrets: Vec::new(),
            max_allocations: 100_000,
            max_allocations_per_user: 64,
            default_lifetime: 600,
            max_lifetime: 3600,
            nonce_lifetime: 600,
            auth_failures_per_minute: 20,
            max_bps: 0,
            tcp_relay: true,
            max_tcp_connections: 64,
        }
    }
}

impl TurnConfigFile {
    /// The relay port range.
    pub fn port_range(&self) -> Option<(u16, u16)> {
        let (a, b) = self.relay_ports.split_once('-')?;
        let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (0 < a && a <= b).then_some((a, b))
    }

    /// The relay addresses: configured, or the first specific STUN address of each family.
    pub fn relay_addresses(&self, stun: &StunConfig) -> (Option<IpAddr>, Option<IpAddr>) {
        let pick = |v4: bool| {
            self.relay_address
                .iter()
                .copied()
                .find(|a| a.is_ipv4() == v4)
                .or_else(|| {
                    if !self.relay_address.is_empty() {
                        return None;
                    }
                    stun.listen
                        .iter()
                        .map(|a| a.ip())
                        .find(|ip| ip.is_ipv4() == v4 && !ip.is_unspecified())
                })
        };
        (pick(true), pick(false))
    }

    /// The peer policy from `allowed_peers` and `denied_peers`.
    pub fn peer_policy(&self) -> Result<farside_turn::PeerPolicy, String> {
        let parse = |list: &[String]| {
            list.iter()
                .map(|s| s.parse::<farside_turn::Cidr>())
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(farside_turn::PeerPolicy {
            allowed: parse(&self.allowed_peers)?,
            denied: parse(&self.denied_peers)?,
        })
    }
}

/// `[tls]`: STUN and TURN over TLS (RFC 8489 §6.2.3, RFC 8656 §3.1), served with TURN.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// `address:port`s to accept TLS on (coturn's 5349); none by default.
    pub listen: Vec<SocketAddr>,
    /// The certificate chain, PEM.
    pub cert: Option<std::path::PathBuf>,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<std::path::PathBuf>,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH`; default: `farside.db` in the data directory.
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: format!(
                "sqlite://{}",
                default_data_dir().join("farside.db").display()
            ),
        }
    }
}

/// Where Farside keeps its database by default: systemd's `$STATE_DIRECTORY`, else
/// `/var/lib/farside` for root, else `$XDG_STATE_HOME/farside` or `~/.local/state/farside`.
pub fn default_data_dir() -> std::path::PathBuf {
    // /proc/self belongs to the process's effective user (libc::geteuid would need `unsafe`,
    // which this crate denies).
    let root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    };
    data_dir_from(
        std::env::var_os("STATE_DIRECTORY"),
        root,
        std::env::var_os("XDG_STATE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// [`default_data_dir`] from its inputs (tests cannot safely change the environment).
fn data_dir_from(
    state_directory: Option<std::ffi::OsString>,
    root: bool,
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(d) = state_directory.filter(|d| !d.is_empty()) {
        // systemd may list several, separated by ':'; the first is ours.
        let d = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        return PathBuf::from(d);
    }
    if root {
        return PathBuf::from("/var/lib/farside");
    }
    if let Some(x) = xdg_state_home.filter(|d| !d.is_empty()) {
        return PathBuf::from(x).join("farside");
    }
    let home = home.map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/farside")
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where to serve `GET /metrics` (Prometheus) and `GET /health`; `"off"` disables it.
    pub listen: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some("127.0.0.1:9478".into()),
        }
    }
}

impl AdminConfig {
    /// The parsed listen address, or `None` when disabled (validated by [`Config::validate`]).
    pub fn address(&self) -> Option<SocketAddr> {
        match self.listen.as_deref() {
            None | Some("off") | Some("") => None,
            Some(s) => s.parse().ok(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`; or a full `tracing` filter directive.
    /// The `RUST_LOG` environment variable overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// A configuration problem, rendered as one line naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or a value of the wrong type.
    #[error("{path}:{line}: {key}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// The dotted key, as well as it could be told.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value that parses but cannot work.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses and validates a TOML document; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start).min(text.len());
            let (line, key) = locate(text, start);
            ConfigError::Parse {
                path: origin.to_string(),
                line,
                key,
                // toml's messages end in a newline and sometimes span lines; keep one line.
                message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
            }
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks what the types cannot.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message| invalid(origin, key, message);
        let stun = &self.stun;
        if stun.listen.is_empty() {
            return Err(invalid(
                "stun.listen",
                "needs at least one address:port".into(),
            ));
        }
        for (i, a) in stun.listen.iter().enumerate() {
            if a.port() == 0 {
                return Err(invalid(
                    "stun.listen",
                    format!("{a}: port 0 is not allowed"),
                ));
            }
            if stun.listen[..i].contains(a) {
                return Err(invalid("stun.listen", format!("{a} is listed twice")));
            }
        }
        if let Some(alt) = stun.alternate_address {
            let Some(primary) = stun.rfc5780_primary() else {
                return Err(invalid(
                    "stun.alternate_address",
                    format!(
                        "{alt}: stun.listen has no specific (non-wildcard) {} address to pair it with",
                        if alt.is_ipv4() { "IPv4" } else { "IPv6" }
                    ),
                ));
            };
            if alt.is_unspecified() || alt == primary.ip() {
                return Err(invalid(
                    "stun.alternate_address",
                    format!("{alt}: must be a second, specific address of this host"),
                ));
            }
            let alt_port = stun.rfc5780_alternate_port(primary);
            if alt_port == primary.port() || alt_port == 0 {
                return Err(invalid(
                    "stun.alternate_port",
                    format!(
                        "{alt_port}: must differ from the primary port {}",
                        primary.port()
                    ),
                ));
            }
        } else if !stun.partners.is_empty() {
            self.validate_partners(origin)?;
        } else if stun.alternate_port.is_some() {
            return Err(invalid(
                "stun.alternate_port",
                "set, but neither stun.alternate_address nor stun.partners is: RFC 5780 needs a second IP".into(),
            ));
        }
        if stun.partners.is_empty() && !stun.partner_secrets.is_empty() {
            return Err(invalid(
                "stun.partner_secrets",
                "set, but stun.partners is empty".into(),
            ));
        }
        if stun
            .software
            .as_deref()
            .is_some_and(|s| s.chars().count() >= 128)
        {
            // RFC 8489 §14.14: fewer than 128 characters; every byte of it is sent in every
            // answer, so a long one makes the server a better reflector.
            return Err(invalid(
                "stun.software",
                "must be fewer than 128 characters".into(),
            ));
        }
        if !(1..=1024).contains(&stun.batch) {
            return Err(invalid(
                "stun.batch",
                format!("{}: must be 1..=1024", stun.batch),
            ));
        }
        if stun.workers > 1024 {
            return Err(invalid(
                "stun.workers",
                format!("{}: at most 1024", stun.workers),
            ));
        }
        if stun.tcp_max_connections_per_ip == 0 {
            return Err(invalid(
                "stun.tcp_max_connections_per_ip",
                "must be at least 1".into(),
            ));
        }
        if stun.tcp_idle_timeout == 0 {
            return Err(invalid(
                "stun.tcp_idle_timeout",
                "must be at least 1 second".into(),
            ));
        }
        self.validate_turn(origin)?;
        self.validate_sip(origin)?;
        if !self.tls.listen.is_empty() {
            if self.tls.cert.is_none() || self.tls.key.is_none() {
                return Err(invalid(
                    "tls.cert",
                    "tls.listen is set: tls.cert and tls.key (PEM files) are needed".into(),
                ));
            }
            if !self.turn.enabled {
                return Err(invalid(
                    "tls.listen",
                    "TLS is served with TURN: set turn.enabled = true".into(),
                ));
            }
            if let Some(a) = self.tls.listen.iter().find(|a| stun.listen.contains(a)) {
                return Err(invalid(
                    "tls.listen",
                    format!("{a} is also a stun.listen address (TCP): use another port, e.g. 5349"),
                ));
            }
        }
        let url = &self.store.url;
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(invalid(
                "store.url",
                "PostgreSQL is not supported yet: use sqlite://PATH".into(),
            ));
        }
        if url.strip_prefix("sqlite://").is_none_or(str::is_empty) {
            // Name the scheme only: a database URL may carry a password.
            let scheme = url.split_once("://").map_or("no scheme", |(s, _)| s);
            return Err(invalid(
                "store.url",
                format!("{scheme}: expected sqlite://PATH"),
            ));
        }
        if let Some(s) = self.admin.listen.as_deref()
            && !matches!(s, "off" | "")
            && s.parse::<SocketAddr>().is_err()
        {
            return Err(invalid(
                "admin.listen",
                format!("{s:?}: expected address:port or \"off\""),
            ));
        }
        if !valid_log_level(&self.log.level) {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?}: expected error, warn, info, debug or trace",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }
}

impl Config {
    fn validate_sip(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message| invalid(origin, key, message);
        let sip = &self.sip;
        if !sip.enabled {
            return Ok(());
        }
        if sip.domain.is_empty() || sip.domain.len() > 253 {
            return Err(invalid(
                "sip.domain",
                "SIP is enabled: set the domain whose users register here".into(),
            ));
        }
        match sip.mode.as_str() {
            "registrar" => {}
            "edge" => {
                if sip.upstream_host_port().is_none() {
                    return Err(invalid(
                        "sip.upstream",
                        format!(
                            "{:?}: edge mode needs the registrar behind it, as \"sip:host[:port]\"",
                            sip.upstream.as_deref().unwrap_or("")
                        ),
                    ));
                }
            }
            other => {
                return Err(invalid(
                    "sip.mode",
                    format!("{other:?}: expected \"registrar\" or \"edge\""),
                ));
            }
        }
        if sip.listen.is_empty() {
            return Err(invalid("sip.listen", "needs at least one listener".into()));
        }
        for l in &sip.listen {
            let ok = l
                .strip_prefix("udp:")
                .or_else(|| l.strip_prefix("tcp:"))
                .or_else(|| l.strip_prefix("tls:"))
                .or_else(|| l.strip_prefix("ws:"))
                .or_else(|| l.strip_prefix("wss:"))
                .is_some_and(|a| a.parse::<SocketAddr>().is_ok());
            if !ok {
                return Err(invalid(
                    "sip.listen",
                    format!(
                        "{l:?}: expected \"udp:\", \"tcp:\", \"tls:\", \"ws:\" or \"wss:\" and address:port"
                    ),
                ));
            }
        }
        let secure = sip.stream_listen().iter().any(|(_, t)| {
            matches!(
                t,
                farside_sip::nat::Transport::Tls | farside_sip::nat::Transport::Wss
            )
        });
        if secure && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return Err(invalid(
                "sip.listen",
                "a \"tls:\" or \"wss:\" listener needs [tls] cert and key (PEM files)".into(),
            ));
        }
        if sip.contact_fix().is_none() {
            return Err(invalid(
                "sip.contact_fix",
                format!(
                    "{:?}: expected \"none\", \"rewrite\" or \"alias\"",
                    sip.contact_fix
                ),
            ));
        }
        if sip.max_connections == 0 {
            return Err(invalid("sip.max_connections", "must be at least 1".into()));
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
        if sip.keepalive.interval_secs().is_none() {
            return Err(invalid(
                "sip.keepalive.interval",
                format!(
                    "{:?}: expected \"25s\", \"1m\" or seconds, 1 s to 1 h",
                    sip.keepalive.interval
                ),
            ));
        }
        if sip.keepalive.method().is_none() {
            return Err(invalid(
                "sip.keepalive.method",
                format!(
                    "{:?}: one of \"OPTIONS\", \"NOTIFY\", \"CRLF\", \"UDP4\"",
                    sip.keepalive.method
                ),
            ));
        }
        if sip.keepalive.max_failures == 0 {
            return Err(invalid(
                "sip.keepalive.max_failures",
                "must be at least 1".into(),
            ));
        }
        if sip.algorithms().len() != sip.digest_algorithms.len() || sip.digest_algorithms.is_empty()
        {
            return Err(invalid(
                "sip.digest_algorithms",
                format!(
                    "{:?}: one or both of \"MD5\", \"SHA-256\"",
                    sip.digest_algorithms
                ),
            ));
        }
        Ok(())
    }

    fn validate_turn(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message| invalid(origin, key, message);
        let turn = &self.turn;
        if turn.port_range().is_none() {
            return Err(invalid(
                "turn.relay_ports",
                format!(
                    "{:?}: expected \"first-last\", 1 <= first <= last <= 65535",
                    turn.relay_ports
                ),
            ));
        }
        turn.peer_policy()
            .map_err(|e| invalid("turn.allowed_peers / turn.denied_peers", e))?;
        if turn.realm.is_empty() || turn.realm.len() > 127 {
            return Err(invalid("turn.realm", "must be 1 to 127 characters".into()));
        }
        if turn.relay_address.iter().any(|a| a.is_unspecified()) {
            return Err(invalid(
                "turn.relay_address",
                "must be specific addresses: clients are told the relayed address".into(),
            ));
        }
        // The same bounds as secrets in the store.
        let len = farside_store::SECRET_LEN;
        if turn.auth_secrets.iter().any(|s| !len.contains(&s.len())) {
            return Err(invalid(
                "turn.auth_secrets",
                format!("each secret needs {} to {} bytes", len.start(), len.end()),
            ));
        }
        if turn.default_lifetime == 0 || turn.max_lifetime < turn.default_lifetime {
            return Err(invalid(
                "turn.max_lifetime",
                "need 0 < default_lifetime <= max_lifetime".into(),
            ));
        }
        if turn.nonce_lifetime == 0 {
            return Err(invalid(
                "turn.nonce_lifetime",
                "must be at least 1 second".into(),
            ));
        }
        if !(1..=4096).contains(&turn.max_tcp_connections) {
            return Err(invalid(
                "turn.max_tcp_connections",
                "must be 1 to 4096".into(),
            ));
        }
        if turn.enabled {
            let (v4, v6) = turn.relay_addresses(&self.stun);
            if v4.is_none() && v6.is_none() {
                return Err(invalid(
                    "turn.relay_address",
                    "TURN is enabled but stun.listen has only wildcard addresses: set the address to relay from".into(),
                ));
            }
        }
        Ok(())
    }

    fn validate_partners(&self, origin: &str) -> Result<(), ConfigError> {
        use farside_stun::partner::{MAX_PARTNERS, MAX_SECRETS, MIN_SECRET_LEN};
        let invalid = |key, message| invalid(origin, key, message);
        let stun = &self.stun;
        if stun.alternate_address.is_some() {
            return Err(invalid(
                "stun.partners",
                "set together with stun.alternate_address: choose one (partners are for hosts with one address)".into(),
            ));
        }
        if stun.partners.len() > MAX_PARTNERS {
            return Err(invalid(
                "stun.partners",
                format!("at most {MAX_PARTNERS} partners"),
            ));
        }
        let Some(primary) = stun.rfc5780_primary() else {
            return Err(invalid(
                "stun.partners",
                format!(
                    "stun.listen has no specific (non-wildcard) {} address: partner messages must leave from and arrive on one",
                    if stun.partners[0].is_ipv4() {
                        "IPv4"
                    } else {
                        "IPv6"
                    }
                ),
            ));
        };
        for (i, p) in stun.partners.iter().enumerate() {
            if p.is_ipv4() != primary.is_ipv4() {
                return Err(invalid(
                    "stun.partners",
                    format!(
                        "{p}: all partners must be of the primary address's family ({primary})"
                    ),
                ));
            }
            if p.is_unspecified() || p.is_multicast() || *p == primary.ip() {
                return Err(invalid(
                    "stun.partners",
                    format!("{p}: must be another host's specific unicast address"),
                ));
            }
            if stun.partners[..i].contains(p) {
                return Err(invalid("stun.partners", format!("{p} is listed twice")));
            }
        }
        let alt_port = stun.rfc5780_alternate_port(primary);
        if alt_port == primary.port() || alt_port == 0 {
            return Err(invalid(
                "stun.alternate_port",
                format!(
                    "{alt_port}: must differ from the primary port {}",
                    primary.port()
                ),
            ));
        }
        if stun.partner_secrets.is_empty() || stun.partner_secrets.len() > MAX_SECRETS {
            return Err(invalid(
                "stun.partner_secrets",
                format!("partner mode needs 1 to {MAX_SECRETS} shared secrets (the first signs)"),
            ));
        }
        if stun
            .partner_secrets
            .iter()
            .any(|s| s.len() < MIN_SECRET_LEN)
        {
            return Err(invalid(
                "stun.partner_secrets",
                format!(
                    "each secret needs at least {MIN_SECRET_LEN} bytes (try `openssl rand -hex 32`)"
                ),
            ));
        }
        if !(1..=300).contains(&stun.partner_max_age) {
            return Err(invalid(
                "stun.partner_max_age",
                format!("{}: must be 1..=300 seconds", stun.partner_max_age),
            ));
        }
        if !(1..=100_000).contains(&stun.partner_rate_limit) {
            return Err(invalid(
                "stun.partner_rate_limit",
                format!("{}: must be 1..=100000 per second", stun.partner_rate_limit),
            ));
        }
        if !(1..=60).contains(&stun.partner_heartbeat) {
            return Err(invalid(
                "stun.partner_heartbeat",
                format!("{}: must be 1..=60 seconds", stun.partner_heartbeat),
            ));
        }
        Ok(())
    }
}

impl StunConfig {
    /// The listen address RFC 5780 pairs with `alternate_address` (or with the partners):
    /// the first specific address of the same family.
    pub fn rfc5780_primary(&self) -> Option<SocketAddr> {
        let alt = self
            .alternate_address
            .or_else(|| self.partners.first().copied())?;
        self.listen
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == alt.is_ipv4() && !a.ip().is_unspecified())
    }

    /// The alternate port for `primary`.
    pub fn rfc5780_alternate_port(&self, primary: SocketAddr) -> u16 {
        self.alternate_port
            .unwrap_or_else(|| primary.port().wrapping_add(1))
    }
}

/// A plain level, or a `tracing` filter with at least one `target=level` directive (a bare word
/// would silently be taken as a target name and log nothing).
fn valid_log_level(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let s = s.trim();
    if LEVELS.contains(&s.to_ascii_lowercase().as_str()) {
        return true;
    }
    s.split(',').all(|d| {
        let level = d.rsplit_once('=').map_or(d, |(_, l)| l).trim();
        LEVELS.contains(&level.to_ascii_lowercase().as_str())
    }) && tracing_subscriber::EnvFilter::try_new(s).is_ok()
}

/// A value that parses but cannot work, named by its key.
fn invalid(origin: &str, key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: origin.to_string(),
        key,
        message,
    }
}

/// The line number and the dotted key at byte `offset` of a TOML document.
fn locate(text: &str, offset: usize) -> (usize, String) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let mut table = String::new();
    for l in before.lines() {
        let t = l.trim();
        if t.starts_with('[') && !t.starts_with("[[") {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    let line_text = text.lines().nth(line - 1).unwrap_or("").trim();
    let key = if line_text.starts_with('[') {
        line_text
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string()
    } else {
        let k = line_text.split('=').next().unwrap_or("").trim();
        match (table.is_empty(), k.is_empty()) {
            (_, true) => table,
            (true, false) => k.to_string(),
            (false, false) => format!("{table}.{k}"),
        }
    };
    (
        line,
        if key.is_empty() {
            "(top level)".into()
        } else {
            key
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, "f.toml")
            .expect_err("should fail")
            .to_string()
    }

    #[test]
    fn no_file_means_dual_stack_3478_with_tcp() {
        let c = Config::parse("", "f.toml").expect("empty config is valid");
        assert_eq!(c.stun.listen.len(), 2);
        assert!(c.stun.listen.iter().all(|a| a.port() == 3478));
        assert!(c.stun.tcp);
        assert!(c.stun.software.is_none());
        assert!(c.stun.alternate_address.is_none());
    }

    #[test]
    fn documented_rfc5780_keys_work() {
        let c = Config::parse(
            "[stun]\nlisten = [\"127.0.0.1:3478\"]\nalternate_address = \"127.0.0.2\"\nalternate_port = 3479\n",
            "f.toml",
        )
        .expect("valid");
        let p = c.stun.rfc5780_primary().expect("paired");
        assert_eq!(p, "127.0.0.1:3478".parse().expect("addr"));
        assert_eq!(c.stun.rfc5780_alternate_port(p), 3479);
    }

    #[test]
    fn alternate_port_defaults_to_primary_plus_one() {
        let c = Config::parse(
            "[stun]\nlisten = [\"127.0.0.1:4000\"]\nalternate_address = \"127.0.0.2\"\n",
            "f.toml",
        )
        .expect("valid");
        let p = c.stun.rfc5780_primary().expect("paired");
        assert_eq!(c.stun.rfc5780_alternate_port(p), 4001);
    }

    #[test]
    fn errors_name_the_key_on_one_line() {
        let e = err("[stun]\nlisten = [\"nonsense\"]\n");
        assert!(e.starts_with("f.toml:2: stun.listen: "), "{e}");
        assert!(!e.contains('\n'), "{e}");

        let e = err("[stun]\nlsten = []\n");
        assert!(e.starts_with("f.toml:2: stun.lsten: unknown field"), "{e}");

        let e = err("[stun]\nlisten = [\"0.0.0.0:3478\"]\nalternate_address = \"127.0.0.2\"\n");
        assert!(e.starts_with("f.toml: stun.alternate_address: "), "{e}");

        let e = err("[stun]\nlisten = []\n");
        assert_eq!(e, "f.toml: stun.listen: needs at least one address:port");

        let e = err("[admin]\nlisten = \"x\"\n");
        assert!(e.starts_with("f.toml: admin.listen: "), "{e}");

        let e = err("[log]\nlevel = \"loud\"\n");
        assert!(e.starts_with("f.toml: log.level: "), "{e}");
        Config::parse("[log]\nlevel = \"info,farside=debug\"\n", "f.toml")
            .expect("directives are valid");

        let partner = "[stun]\nlisten = [\"192.0.2.1:3478\"]\npartners = [\"198.51.100.2\"]\n";
        let e = err(partner);
        assert!(e.starts_with("f.toml: stun.partner_secrets: "), "{e}");
        let e = err(&format!("{partner}partner_secrets = [\"short\"]\n"));
        assert!(e.contains("at least 16 bytes"), "{e}");
        let e = err(
            "[stun]\nlisten = [\"0.0.0.0:3478\"]\npartners = [\"198.51.100.2\"]\npartner_secrets = [\"0123456789abcdef\"]\n",
        );
        assert!(e.starts_with("f.toml: stun.partners: "), "{e}");
        let e = err(
            "[stun]\nlisten = [\"192.0.2.1:3478\"]\npartners = [\"192.0.2.1\"]\npartner_secrets = [\"0123456789abcdef\"]\n",
        );
        assert!(e.contains("another host"), "{e}");
        let c = Config::parse(
            &format!("{partner}partner_secrets = [\"0123456789abcdef\"]\n"),
            "f.toml",
        )
        .expect("valid partner mode");
        assert_eq!(c.stun.partner_max_age, 10);

        let e = err("[bogus]\n");
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn sip_edge_mode_needs_an_upstream_uri() {
        let sip = "[sip]\nenabled = true\ndomain = \"example.org\"\n";
        let e = err(&format!("{sip}mode = \"edge\"\n"));
        assert!(e.starts_with("f.toml: sip.upstream: "), "{e}");
        for bad in ["pbx", "sip:", "sip:a@pbx", "sip:pbx:http", "sip:p b"] {
            let e = err(&format!("{sip}mode = \"edge\"\nupstream = \"{bad}\"\n"));
            assert!(e.starts_with("f.toml: sip.upstream: "), "{bad}: {e}");
        }
        let e = err(&format!("{sip}mode = \"b2bua\"\n"));
        assert!(e.starts_with("f.toml: sip.mode: "), "{e}");
        for (uri, want) in [
            ("sip:127.0.0.1:5090", ("127.0.0.1", 5090)),
            ("sip:pbx.example.org", ("pbx.example.org", 5060)),
            (
                "sip:pbx.example.org:5070;transport=udp",
                ("pbx.example.org", 5070),
            ),
            ("sip:[2001:db8::1]:5062", ("2001:db8::1", 5062)),
            ("sip:[2001:db8::1]", ("2001:db8::1", 5060)),
        ] {
            let c = Config::parse(
                &format!("{sip}mode = \"edge\"\nupstream = \"{uri}\"\n"),
                "f.toml",
            )
            .expect(uri);
            let (host, port) = c.sip.upstream_host_port().expect(uri);
            assert_eq!((host.as_str(), port), want, "{uri}");
        }
    }

    #[test]
    fn store_url_defaults_to_the_data_dir_and_only_sqlite() {
        let c = Config::parse("", "f.toml").expect("valid");
        assert_eq!(
            c.store.url,
            format!(
                "sqlite://{}",
                default_data_dir().join("farside.db").display()
            )
        );
        let c = Config::parse("[store]\nurl = \"sqlite:///tmp/x/users.db\"\n", "f.toml")
            .expect("valid");
        assert_eq!(c.store.url, "sqlite:///tmp/x/users.db");

        // The password in a PostgreSQL URL must not end up in the message.
        let e = err("[store]\nurl = \"postgres://farside:hunter2@db/farside\"\n");
        assert_eq!(
            e,
            "f.toml: store.url: PostgreSQL is not supported yet: use sqlite://PATH"
        );
        let e = err("[store]\nurl = \"sqlite://\"\n");
        assert!(e.starts_with("f.toml: store.url: "), "{e}");
        let e = err("[store]\nurl = \"/var/lib/farside/farside.db\"\n");
        assert_eq!(e, "f.toml: store.url: no scheme: expected sqlite://PATH");
        let e = err("[store]\nurl = \"mysql://u:hunter2@db/x\"\n");
        assert_eq!(e, "f.toml: store.url: mysql: expected sqlite://PATH");
        let e = err("[store]\npath = \"x\"\n");
        assert!(e.starts_with("f.toml:2: store.path: unknown field"), "{e}");
    }

    #[test]
    fn data_dir_follows_systemd_then_root_then_xdg() {
        use std::ffi::OsString;
        use std::path::Path;
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(
            data_dir_from(some("/var/lib/farside:/var/lib/other"), false, None, None),
            Path::new("/var/lib/farside")
        );
        assert_eq!(
            data_dir_from(some(""), true, some("/x"), some("/home/u")),
            Path::new("/var/lib/farside")
        );
        assert_eq!(
            data_dir_from(None, false, some("/x"), some("/home/u")),
            Path::new("/x/farside")
        );
        assert_eq!(
            data_dir_from(None, false, some(""), some("/home/u")),
            Path::new("/home/u/.local/state/farside")
        );
    }
}
