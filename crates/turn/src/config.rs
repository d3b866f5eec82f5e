//! What the TURN core needs to know from the configuration file (the limits that hold across
//! workers, allocations per user and failures per source, are [`Quotas`](crate::Quotas)').

use std::time::Duration;

use farside_peers::PeerPolicy;

/// TURN server settings. [`Default`] gives RFC 8656's lifetimes and safe limits.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// REALM sent in challenges and used in long-term keys.
    pub realm: String,
    /// Allocation lifetime when the client asks for none (RFC 8656 §7.2: 600 s).
    pub default_lifetime: Duration,
    /// Longest allocation lifetime granted (RFC 8656 §7.2 suggests 3600 s).
    pub max_lifetime: Duration,
    /// Permission lifetime (RFC 8656 §9: 300 s, not configurable by the client).
    pub permission_lifetime: Duration,
    /// Channel binding lifetime (RFC 8656 §12: 600 s).
    pub channel_lifetime: Duration,
    /// How long a NONCE stays valid before requests get 438 Stale Nonce.
    pub nonce_lifetime: Duration,
    /// Most allocations on this server (per core: the shell divides the total).
    pub max_allocations: usize,
    /// Most permissions one allocation may hold.
    pub max_permissions: usize,
    /// Most channels one allocation may hold (RFC 8656 allows 4096).
    pub max_channels: usize,
    /// Relayed bytes per second per allocation, both directions together (0 = no cap).
    /// Data over the cap is dropped and counted.
    pub max_bandwidth: u64,
    /// Which peers may be relayed to.
    pub peer_policy: PeerPolicy,
    /// SOFTWARE attribute in responses; none by default.
    pub software: Option<String>,
    /// Whether TCP allocations are granted (RFC 6062); if not, they get 442.
    pub tcp_relay: bool,
    /// Most TCP connections with peers one TCP allocation may hold at once.
    pub max_tcp_connections: usize,
    /// Draining: a new Allocate is answered 300 Try Alternate naming the first of these of the
    /// client's address family (none of it: allocated here as usual); existing allocations
    /// go on until they end. Empty: not draining.
    pub alternate_servers: Vec<std::net::SocketAddr>,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            realm: "farside".into(),
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            nonce_lifetime: Duration::from_secs(600),
            max_allocations: 100_000,
            max_permissions: 256,
            max_channels: 4096,
            max_bandwidth: 0,
            peer_policy: PeerPolicy::default(),
            software: None,
            tcp_relay: true,
            max_tcp_connections: 64,
            alternate_servers: Vec::new(),
        }
    }
}
