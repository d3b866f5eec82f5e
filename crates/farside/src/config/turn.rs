//! `[turn]`: the TURN relay (RFC 8656), on where the host gives it an address to relay from.

use std::net::IpAddr;

use serde::Deserialize;

use super::stun::StunConfig;
use super::values::{PeerRanges, PortRange, Switch, peer_policy};
use super::{Config, ConfigError, invalid};

/// `[turn]`: the TURN relay (RFC 8656).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfigFile {
    /// Serve TURN on the STUN addresses (left out: when the host has an address to relay
    /// from, see `config::host`).
    pub enabled: Switch,
    /// REALM of the long-term credentials.
    pub realm: String,
    /// Addresses relayed from (one IPv4, one IPv6 at most); default: the first specific
    /// `stun.listen` address of each family.
    pub relay_address: Vec<IpAddr>,
    /// Relay port range, `"first-last"`.
    pub relay_ports: PortRange,
    /// Peer ranges relayed to although the defaults refuse them.
    pub allowed_peers: PeerRanges,
    /// Peer ranges refused on top of the defaults.
    pub denied_peers: PeerRanges,
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
    /// Refusals (401, 438, 400, 420) of unauthenticated requests over UDP per source IP and
    /// second; beyond, they are dropped unsent, so a forged source draws no flood (0 = no
    /// limit).
    pub refusals_per_second: u32,
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
            enabled: Switch::Auto,
            realm: "farside".into(),
            relay_address: Vec::new(),
            relay_ports: PortRange(49152, 65535),
            allowed_peers: PeerRanges::default(),
            denied_peers: PeerRanges::default(),
            auth_secrets: Vec::new(),
            max_allocations: 100_000,
            max_allocations_per_user: 64,
            default_lifetime: 600,
            max_lifetime: 3600,
            nonce_lifetime: 600,
            auth_failures_per_minute: 20,
            refusals_per_second: 10,
            max_bps: 0,
            tcp_relay: true,
            max_tcp_connections: 64,
        }
    }
}

impl TurnConfigFile {
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

    /// The TURN core's settings; `software` is `stun.software`.
    pub fn core(&self, software: Option<String>) -> farside_turn::TurnConfig {
        use std::time::Duration;
        farside_turn::TurnConfig {
            realm: self.realm.clone(),
            default_lifetime: Duration::from_secs(self.default_lifetime),
            max_lifetime: Duration::from_secs(self.max_lifetime),
            nonce_lifetime: Duration::from_secs(self.nonce_lifetime),
            // The server-wide limit is kept by the shared port pool (workers see only their
            // own allocations); the core's check is a backstop.
            max_allocations: self.max_allocations,
            peer_policy: self.peer_policy(),
            max_bandwidth: self.max_bps / 8,
            software,
            tcp_relay: self.tcp_relay,
            max_tcp_connections: self.max_tcp_connections,
            ..farside_turn::TurnConfig::default()
        }
    }

    /// The peer policy from `allowed_peers` and `denied_peers`.
    pub fn peer_policy(&self) -> farside_turn::PeerPolicy {
        peer_policy(&self.allowed_peers, &self.denied_peers)
    }
}

impl Config {
    pub(super) fn validate_turn(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message| invalid(origin, key, message);
        let turn = &self.turn;
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
        // A missing relay address is the host's to fill (`config::host`).
        Ok(())
    }
}
