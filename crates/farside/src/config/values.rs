//! Typed values that more than one section takes: a port range (`turn.relay_ports`,
//! `rtp.ports`) and a list of peer ranges (`allowed_peers`, `denied_peers` of `[turn]` and
//! `[rtp]`), each read and checked once, as the file is parsed.

use serde::Deserialize;

/// A port range, written `"first-last"` (1 <= first <= last); a section may ask more of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange(pub u16, pub u16);

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
            .filter(|&(a, b)| 1 <= a && a <= b)
            .map(|(a, b)| PortRange(a, b))
            .ok_or_else(|| format!("{s:?}: expected \"first-last\", 1 <= first <= last <= 65535"))
    }
}

/// Address ranges, written `["address/prefix", ...]` (a bare address is one host).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct PeerRanges(pub Vec<farside_peers::Cidr>);

impl TryFrom<Vec<String>> for PeerRanges {
    type Error = String;

    fn try_from(list: Vec<String>) -> Result<Self, String> {
        list.iter()
            .map(|s| s.parse::<farside_peers::Cidr>())
            .collect::<Result<Vec<_>, _>>()
            .map(PeerRanges)
    }
}

/// The peer policy of a section's `allowed_peers` and `denied_peers`.
pub fn peer_policy(allowed: &PeerRanges, denied: &PeerRanges) -> farside_peers::PeerPolicy {
    farside_peers::PeerPolicy {
        allowed: allowed.0.clone(),
        denied: denied.0.clone(),
        ..farside_peers::PeerPolicy::default()
    }
}

/// A part's `enabled` key: left out, the part runs when the host lets it (and says why not
/// when it cannot); `true` makes it required (it fails the start); `false` turns it off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "bool")]
pub enum Switch {
    /// Not set: on if it can be.
    #[default]
    Auto,
    /// `enabled = true`.
    On,
    /// `enabled = false`.
    Off,
}

impl From<bool> for Switch {
    fn from(on: bool) -> Self {
        if on { Switch::On } else { Switch::Off }
    }
}

impl Switch {
    /// Whether the part is to run (set or left to the host).
    pub fn wanted(self) -> bool {
        self != Switch::Off
    }

    /// Whether the operator asked for it, so that failing to start it fails the start.
    pub fn required(self) -> bool {
        self == Switch::On
    }
}
