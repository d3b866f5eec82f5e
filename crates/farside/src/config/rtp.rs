//! `[rtp]`: the RTP relay and its rtpengine-compatible ng control socket. Every value is typed
//! as it is read (addresses, the port range, the ng listeners).

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use super::{Config, ConfigError, invalid};

/// `[rtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpConfig {
    /// Run the relay (off by default until it also serves Farside's own calls).
    pub enabled: bool,
    /// The addresses media is relayed from; today the first is used.
    pub address: Vec<IpAddr>,
    /// The address written into SDP instead of `address` (1:1 NAT, cloud instances).
    pub advertised_address: Option<IpAddr>,
    /// The relay ports, `"first-last"`, taken in pairs (RTP even, RTCP the next).
    pub ports: PortRange,
    /// Where rtpengine's ng control protocol is served: `"udp:IP:PORT"`.
    pub ng_listen: Vec<NgListen>,
    /// Which of the SIP server's own calls are relayed.
    pub relay: Relay,
    /// The receive buffer of each relay socket, in bytes asked of the kernel (which doubles
    /// it): what piles up while the relay is behind. Small enough that the kernel drops the
    /// excess of an overload (for free) instead of the relay forwarding seconds-old audio.
    pub receive_buffer: usize,
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
            enabled: false,
            address: Vec::new(),
            advertised_address: None,
            ports: PortRange(30_000, 39_999),
            ng_listen: vec![NgListen("127.0.0.1:2223".parse().expect("literal"))],
            relay: Relay::Nated,
            receive_buffer: 8_192,
        }
    }
}

/// A port range, written `"30000-39999"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange(pub u16, pub u16);

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let parsed = s
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
            .filter(|&(a, b)| 1024 <= a && a < b);
        parsed
            .map(|(a, b)| PortRange(a, b))
            .ok_or_else(|| format!("{s:?}: expected \"first-last\", 1024 <= first < last"))
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
    /// The address media is relayed from.
    pub fn relay_address(&self) -> Option<IpAddr> {
        self.address.first().copied()
    }

    /// Which of the SIP server's calls the relay takes: none unless it runs.
    pub fn policy(&self) -> farside_sip::media::RelayPolicy {
        if self.enabled && self.relay_address().is_some() {
            self.relay.into()
        } else {
            farside_sip::media::RelayPolicy::Never
        }
    }
}

impl Config {
    pub(super) fn validate_rtp(&self, origin: &str) -> Result<(), ConfigError> {
        let rtp = &self.rtp;
        if !rtp.enabled {
            return Ok(());
        }
        match rtp.relay_address() {
            None => Err(invalid(
                origin,
                "rtp.address",
                "rtp.enabled is set: name the address media is relayed from".into(),
            )),
            Some(a) if a.is_unspecified() => Err(invalid(
                origin,
                "rtp.address",
                format!(
                    "{a}: a specific address is needed (it is written into SDP unless rtp.advertised_address is set)"
                ),
            )),
            Some(_) => Ok(()),
        }
    }
}
