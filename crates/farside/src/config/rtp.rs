//! `[rtp]`: the RTP relay and its rtpengine-compatible ng control socket. Every value is typed
//! as it is read (addresses, the port range, the ng listeners).

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use super::values::{PeerRanges, PortRange, peer_policy};
use super::{Config, ConfigError, invalid};

/// `[rtp]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpConfig {
    /// Run the relay (left out: when the host gives it an address, see `config::host`).
    pub enabled: super::values::Switch,
    /// The addresses media is relayed from, at most one per family: a call takes the one of
    /// its first offer's family.
    pub address: Vec<IpAddr>,
    /// The address written into SDP instead of `address`'s of the same family (1:1 NAT, cloud
    /// instances).
    pub advertised_address: Option<IpAddr>,
    /// The relay ports, `"first-last"`, taken in pairs (RTP even, RTCP the next).
    pub ports: PortRange,
    /// Where rtpengine's ng control protocol is served: `"udp:IP:PORT"`.
    pub ng_listen: Vec<NgListen>,
    /// Which of the SIP server's own calls are relayed.
    pub relay: Relay,
    /// Media endpoints relayed to even though the defaults refuse them (`"address/prefix"`):
    /// by default what is not globally routable (loopback, RFC 1918, link-local, ...) is never
    /// sent to, whatever an SDP names.
    pub allowed_peers: PeerRanges,
    /// Media endpoints refused on top of the defaults.
    pub denied_peers: PeerRanges,
    /// Most calls at once; an offer beyond is refused.
    pub max_calls: usize,
    /// Seconds after the answer within which a call must carry a packet, else it ends.
    pub setup_timeout: u64,
    /// Seconds without a packet after which a call ends.
    pub silence_timeout: u64,
    /// Seconds after its first offer at which a call ends, whatever it carries.
    pub final_timeout: u64,
    /// The receive buffer of each relay socket, in bytes asked of the kernel (which doubles
    /// it): what piles up while the relay is behind. Small enough that the kernel drops the
    /// excess of an overload (for free) instead of the relay forwarding seconds-old audio.
    pub receive_buffer: usize,
    /// Data-plane threads, each relaying its own calls on its slice of `ports`; 0 = one per
    /// CPU this process may run on.
    pub workers: usize,
}

/// `relay`: which calls through Farside's SIP server have their media relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Relay {
    /// Every call with SDP.
    Always,
    /// Calls whose caller or callee looks NATed.
    Nated,
    /// None.
    Never,
}

impl From<Relay> for farside_sip::media::RelayPolicy {
    fn from(r: Relay) -> Self {
        match r {
            Relay::Always => Self::Always,
            Relay::Nated => Self::Nated,
            Relay::Never => Self::Never,
        }
    }
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            enabled: super::values::Switch::Auto,
            address: Vec::new(),
            advertised_address: None,
            ports: PortRange(30_000, 39_999),
            ng_listen: vec![NgListen("127.0.0.1:2223".parse().expect("literal"))],
            relay: Relay::Nated,
            receive_buffer: 8_192,
            workers: 0,
            allowed_peers: PeerRanges::default(),
            denied_peers: PeerRanges::default(),
            max_calls: 10_000,
            setup_timeout: 60,
            silence_timeout: 60,
            final_timeout: 4 * 3600,
        }
    }
}

/// An ng listener, written `"udp:IP:PORT"` (UDP is the transport the modules use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct NgListen(pub SocketAddr);

impl TryFrom<String> for NgListen {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.strip_prefix("udp:")
            .and_then(|a| a.parse().ok())
            .map(NgListen)
            .ok_or_else(|| format!("{s:?}: expected \"udp:IP:PORT\""))
    }
}

impl RtpConfig {
    /// The address media is relayed from (the first).
    pub fn relay_address(&self) -> Option<IpAddr> {
        self.address.first().copied()
    }

    /// What is written into SDP for each of `address`: itself, or `advertised_address` for
    /// the one of its family.
    pub fn advertised(&self) -> Vec<IpAddr> {
        self.address
            .iter()
            .map(|&a| {
                self.advertised_address
                    .filter(|adv| adv.is_ipv6() == a.is_ipv6())
                    .unwrap_or(a)
            })
            .collect()
    }

    /// The relay core's settings: the addresses written into SDP, the peer policy, the limits.
    pub fn relay_config(&self) -> Result<farside_media::relay::RelayConfig, String> {
        if self.address.is_empty() {
            return Err("rtp.address is empty".into());
        }
        let secs = std::time::Duration::from_secs;
        Ok(farside_media::relay::RelayConfig {
            addresses: self.advertised(),
            peers: self.peer_policy(),
            max_calls: self.max_calls,
            setup_timeout: secs(self.setup_timeout),
            silence_timeout: secs(self.silence_timeout),
            final_timeout: secs(self.final_timeout),
        })
    }

    /// Where media may be sent, from `allowed_peers` and `denied_peers`.
    pub fn peer_policy(&self) -> farside_peers::PeerPolicy {
        peer_policy(&self.allowed_peers, &self.denied_peers)
    }

    /// Which of the SIP server's calls the relay takes: none unless it runs.
    pub fn policy(&self) -> farside_sip::media::RelayPolicy {
        if self.enabled.wanted() && self.relay_address().is_some() {
            self.relay.into()
        } else {
            farside_sip::media::RelayPolicy::Never
        }
    }
}

impl Config {
    pub(super) fn validate_rtp(&self, origin: &str) -> Result<(), ConfigError> {
        let rtp = &self.rtp;
        let PortRange(first, last) = rtp.ports;
        if first < 1024 || first >= last {
            return Err(invalid(
                origin,
                "rtp.ports",
                format!("{first}-{last}: a range of pairs from port 1024 up, first < last"),
            ));
        }
        for (key, value) in [
            ("rtp.max_calls", rtp.max_calls as u64),
            ("rtp.setup_timeout", rtp.setup_timeout),
            ("rtp.silence_timeout", rtp.silence_timeout),
            ("rtp.final_timeout", rtp.final_timeout),
        ] {
            if value == 0 {
                return Err(invalid(origin, key, "must be at least 1".into()));
            }
        }
        if rtp.workers > 1024 {
            return Err(invalid(
                origin,
                "rtp.workers",
                format!("{}: at most 1024", rtp.workers),
            ));
        }
        if !rtp.enabled.wanted() {
            return Ok(());
        }
        match rtp.relay_address() {
            // The host's to fill (`config::host`).
            None => Ok(()),
            Some(_) if rtp.address.iter().any(IpAddr::is_unspecified) => Err(invalid(
                origin,
                "rtp.address",
                "a specific address is needed (it is written into SDP unless rtp.advertised_address is set)".into(),
            )),
            Some(_)
                if rtp.address.iter().filter(|a| a.is_ipv4()).count() > 1
                    || rtp.address.iter().filter(|a| a.is_ipv6()).count() > 1 =>
            {
                Err(invalid(
                    origin,
                    "rtp.address",
                    "at most one address per family (IPv4, IPv6)".into(),
                ))
            }
            Some(_)
                if rtp.advertised_address.is_some_and(|adv| {
                    !rtp.address.iter().any(|a| a.is_ipv6() == adv.is_ipv6())
                }) =>
            {
                Err(invalid(
                    origin,
                    "rtp.advertised_address",
                    "it stands for rtp.address's address of its family, and there is none".into(),
                ))
            }
            Some(_) => rtp
                .address
                .iter()
                .try_for_each(|&ip| self.rtp_ports_apart_from_turn(origin, ip)),
        }
    }

    /// TURN's relay ports and the RTP relay's are bound on demand from their ranges; on one
    /// address the two ranges must not overlap, or each would find the other's ports taken and
    /// an operator would see allocations or calls refused with ports seemingly free.
    fn rtp_ports_apart_from_turn(&self, origin: &str, ip: IpAddr) -> Result<(), ConfigError> {
        let PortRange(first, last) = self.turn.relay_ports;
        let (v4, v6) = self.turn.relay_addresses(&self.stun);
        // A TURN left to the host yields instead (`config::host`).
        let shared = self.turn.enabled.required() && (v4 == Some(ip) || v6 == Some(ip));
        let PortRange(a, b) = self.rtp.ports;
        if shared && a <= last && first <= b {
            return Err(invalid(
                origin,
                "rtp.ports",
                format!(
                    "{a}-{b} overlaps turn.relay_ports {first}-{last} on {ip}: give each its own range"
                ),
            ));
        }
        Ok(())
    }
}
