//! Which peers a relay may send to: TURN's peers (RFC 8656 §21.3: a relay must not become a way
//! into the operator's own networks; coturn's CVE-2020-26262 relayed into loopback) and the RTP
//! relay's endpoints (an SDP naming an internal address must not make Farside send there).
//!
//! By default every address that is not globally routable is refused with 403: loopback,
//! 0.0.0.0/8, RFC 1918, shared address space (100.64/10), link-local (including the cloud
//! metadata address 169.254.169.254), multicast, broadcast and reserved space; for IPv6
//! loopback, unspecified, unique local (fc00::/7), link-local (fe80::/10), multicast, and
//! IPv6 addresses that carry an IPv4 address are judged by it too: IPv4-mapped (`::ffff:0:0/96`),
//! IPv4-compatible (`::/96`), NAT64 (`64:ff9b::/96`, RFC 6052; the local-use `64:ff9b:1::/48`
//! of RFC 8215 is refused whole, its mapping being the operator's), 6to4 (`2002::/16`,
//! RFC 3056) and Teredo (`2001::/32`, RFC 4380: its client's address): through a translator or
//! tunnel each reaches the IPv4 address inside. `denied_peers` refuses more; `allowed_peers`
//! lets chosen ranges through (e.g. a media server on a private network); an explicit denial
//! wins over an explicit allowance.
//!
//! The server's own addresses are refused too, but for the relay's own ports: a peer at one of
//! them is the server itself (its STUN, SIP or admin listener, an SSH daemon on the host: a
//! relay loop, or a way around a firewall that trusts the host), while a peer at one of them on
//! a relay port is another client's allocation or call, and two clients of one server must be
//! able to reach each other through it. So the own-address rule needs the port:
//! [`PeerPolicy::permits_to`]; an address in `allowed_peers` is exempt.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An address range, `address/prefix` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// A range; `None` if `prefix` is too long for the family.
    pub fn new(network: IpAddr, prefix: u8) -> Option<Self> {
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { network, prefix })
    }

    /// Whether `ip` is inside. IPv4-mapped IPv6 addresses match IPv4 ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: not an IP address or address/prefix"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0..={max}"))?,
        };
        Cidr::new(ip, prefix).ok_or_else(|| format!("{s:?}: bad prefix"))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// IPv4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The relay-peer policy.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// Ranges relayed to even though the defaults refuse them.
    pub allowed: Vec<Cidr>,
    /// Ranges refused on top of the defaults.
    pub denied: Vec<Cidr>,
    /// The server's own addresses: refused but on [`PeerPolicy::relay_ports`].
    pub own: Vec<IpAddr>,
    /// The ports of the server's relays (TURN's and the RTP relay's ranges): a peer at an own
    /// address on one of them is another allocation or call.
    pub relay_ports: Vec<std::ops::RangeInclusive<u16>>,
}

impl PeerPolicy {
    /// Whether a client may relay to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.denied.iter().any(|c| c.contains(ip)) {
            return false;
        }
        if self.allowed.iter().any(|c| c.contains(ip)) {
            return true;
        }
        !refused_by_default(canonical(ip))
    }

    /// Whether a client may relay to `peer`: [`PeerPolicy::permits`] its address, and it is
    /// not one of the server's own but on a relay port (unless `allowed` names it).
    pub fn permits_to(&self, peer: SocketAddr) -> bool {
        let ip = canonical(peer.ip());
        self.permits(ip)
            && (!self.is_own_listener(ip, peer.port())
                || self.allowed.iter().any(|c| c.contains(ip)))
    }

    /// Whether `ip` is one of the server's own addresses and `port` none of its relay ports.
    fn is_own_listener(&self, ip: IpAddr, port: u16) -> bool {
        self.own.iter().any(|&o| canonical(o) == ip)
            && !self.relay_ports.iter().any(|r| r.contains(&port))
    }
}

/// Whether `ip` is globally routable: not refused by the defaults (IPv4-mapped IPv6 judged by
/// its IPv4 address). What the RTP relay asks of an SDP address: can it be the sender's?
pub fn is_global(ip: IpAddr) -> bool {
    !refused_by_default(canonical(ip))
}

fn refused_by_default(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 0 // "this network" (RFC 791)
        || ip.is_loopback()
        || ip.is_private() // RFC 1918
        || (a == 100 && (b & 0xC0) == 64) // shared address space, RFC 6598
        || ip.is_link_local() // 169.254/16, cloud metadata
        || ip.is_multicast()
        || a >= 240 // reserved, and the limited broadcast address
}

fn refused_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xFE00) == 0xFC00 // unique local, RFC 4193
        || (s[0] & 0xFFC0) == 0xFE80 // link-local
        || (s[0], s[1], s[2]) == (0x64, 0xFF9B, 1) // local-use NAT64, RFC 8215
        || embedded_v4(ip).is_some_and(refused_v4)
}

/// The IPv4 address an IPv6 address carries to a translator or tunnel, if it is of such a
/// form (IPv4-mapped addresses are made IPv4 before this).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        // NAT64 well-known prefix, RFC 6052 §2.1: the last 32 bits.
        [0x64, 0xFF9B, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        // IPv4-compatible (deprecated, RFC 4291 §2.5.5.1): the last 32 bits.
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        // 6to4, RFC 3056 §2: bits 16-47.
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        // Teredo, RFC 4380 §4: the client's address, bits 96-127, inverted.
        [0x2001, 0, _, _, _, _, hi, lo] => Some(v4(!hi, !lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn defaults_refuse_what_is_not_global() {
        let p = PeerPolicy::default();
        for bad in [
            "127.0.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!p.permits(ip(bad)), "{bad} should be refused");
        }
        for good in [
            "8.8.8.8",
            "192.0.2.20",
            "198.51.100.7",
            "203.0.113.10",
            "100.128.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(p.permits(ip(good)), "{good} should be allowed");
        }
    }

    #[test]
    fn lists_override_and_denial_wins() {
        let p = PeerPolicy {
            allowed: vec![
                "127.0.0.0/8".parse().expect("cidr"),
                "10.0.0.0/8".parse().expect("cidr"),
            ],
            denied: vec![
                "10.0.0.1".parse().expect("cidr"),
                "192.0.2.0/24".parse().expect("cidr"),
            ],
            ..PeerPolicy::default()
        };
        assert!(p.permits(ip("127.0.0.1")));
        assert!(p.permits(ip("::ffff:127.0.0.1")));
        assert!(p.permits(ip("10.9.9.9")));
        assert!(!p.permits(ip("10.0.0.1")));
        assert!(!p.permits(ip("192.0.2.20")));
        assert!(!p.permits(ip("192.168.0.1")));
    }

    #[test]
    fn ipv6_forms_that_carry_a_refused_ipv4_address_are_refused() {
        let p = PeerPolicy::default();
        for bad in [
            "64:ff9b::7f00:1",                      // NAT64 of 127.0.0.1
            "64:ff9b::a00:1",                       // NAT64 of 10.0.0.1
            "64:ff9b::a9fe:a9fe",                   // NAT64 of 169.254.169.254
            "64:ff9b:1::808:808",                   // local-use NAT64, whatever it carries
            "2002:c0a8:101::1",                     // 6to4 of 192.168.1.1
            "2002:7f00:1::",                        // 6to4 of 127.0.0.1
            "::a00:1",                              // IPv4-compatible 10.0.0.1
            "2001:0:4136:e378:8000:63bf:f5ff:fffe", // Teredo, client 10.0.0.1
        ] {
            assert!(!p.permits(ip(bad)), "{bad} should be refused");
        }
        for good in [
            "64:ff9b::808:808",                     // NAT64 of 8.8.8.8
            "2002:808:808::1",                      // 6to4 of 8.8.8.8
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7", // Teredo, client 8.8.8.8
        ] {
            assert!(p.permits(ip(good)), "{good} should be allowed");
        }
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().expect("cidr").to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<Cidr>().expect("cidr").to_string(), "::1/128");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .expect("cidr")
                .contains(ip("8.8.8.8"))
        );
    }

    #[test]
    fn the_servers_own_addresses_are_refused_but_on_relay_ports() {
        let own: IpAddr = "203.0.113.10".parse().expect("ip");
        let p = PeerPolicy {
            own: vec![own],
            relay_ports: vec![49152..=65535],
            ..PeerPolicy::default()
        };
        let at = |ip: IpAddr, port| SocketAddr::new(ip, port);
        assert!(!p.permits_to(at(own, 3478)), "its STUN/TURN listener");
        assert!(!p.permits_to(at(own, 22)), "an SSH daemon on the host");
        assert!(p.permits_to(at(own, 50000)), "another client's allocation");
        let mapped = IpAddr::V6(
            "203.0.113.10"
                .parse::<Ipv4Addr>()
                .expect("ip")
                .to_ipv6_mapped(),
        );
        assert!(!p.permits_to(at(mapped, 5060)), "its mapped form");
        assert!(p.permits_to(at("198.51.100.7".parse().expect("ip"), 5060)));
        let allowed = PeerPolicy {
            allowed: vec!["203.0.113.10/32".parse().expect("cidr")],
            ..p
        };
        assert!(
            allowed.permits_to(at(own, 3478)),
            "an operator's explicit allowance"
        );
    }
}
