//! `[stun]`: the STUN server's addresses, RFC 5780, partners, workers and TCP limits.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use super::{Config, ConfigError, invalid};

/// `[stun]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// A TCP or TLS connection silent this long (and without a TURN allocation) is closed,
    /// seconds.
    pub tcp_idle_timeout: u64,
    /// A TCP or TLS connection that has not delivered a whole message this long after it
    /// opened is closed, seconds.
    pub tcp_first_message_timeout: u64,
    /// A TLS handshake unfinished after this long is closed, seconds.
    pub tls_handshake_timeout: u64,
    /// Bytes queued for a TCP or TLS client that does not read, at most: responses beyond
    /// close the connection, relayed data beyond is dropped.
    pub tcp_max_queued: usize,
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
            tcp_first_message_timeout: 30,
            tls_handshake_timeout: 10,
            tcp_max_queued: 256 * 1024,
            partners: Vec::new(),
            partner_secrets: Vec::new(),
            partner_max_age: 10,
            partner_rate_limit: 500,
            partner_heartbeat: 2,
        }
    }
}

/// The largest STUN or ChannelData message on a stream: a header and a 16-bit length.
pub const MAX_STREAM_MESSAGE: usize = 20 + 65_535;

impl StunConfig {
    /// The limits of STUN and TURN connections over TCP and TLS.
    pub fn stream_limits(&self) -> crate::net::stream::Limits {
        crate::net::stream::Limits {
            max_connections: self.tcp_max_connections,
            max_per_ip: self.tcp_max_connections_per_ip,
            first_message: std::time::Duration::from_secs(self.tcp_first_message_timeout),
            idle: std::time::Duration::from_secs(self.tcp_idle_timeout),
            tls_handshake: std::time::Duration::from_secs(self.tls_handshake_timeout),
            max_queued: self.tcp_max_queued,
            max_message: MAX_STREAM_MESSAGE,
        }
    }

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

impl Config {
    pub(super) fn validate_stun(&self, origin: &str) -> Result<(), ConfigError> {
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
        if let Some((field, why)) = stun.stream_limits().problem() {
            use crate::net::stream::LimitField;
            let key = match field {
                LimitField::MaxConnections => "stun.tcp_max_connections",
                LimitField::MaxPerIp => "stun.tcp_max_connections_per_ip",
                LimitField::FirstMessage => "stun.tcp_first_message_timeout",
                LimitField::Idle => "stun.tcp_idle_timeout",
                LimitField::TlsHandshake => "stun.tls_handshake_timeout",
                LimitField::MaxQueued => "stun.tcp_max_queued",
            };
            return Err(invalid(key, why));
        }
        Ok(())
    }
}

impl Config {
    pub(super) fn validate_partners(&self, origin: &str) -> Result<(), ConfigError> {
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
