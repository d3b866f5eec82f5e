//! The server's own addresses and its relays' ports, for the relay peer policy: a TURN client
//! or an SDP must not make Farside send to itself (its STUN, SIP or admin listener, or anything
//! else listening on the host) but on a relay port, where another client's allocation or call
//! is (see `farside_peers`).

use std::net::IpAddr;
use std::ops::RangeInclusive;

use super::Config;

impl Config {
    /// `policy` with the server's own addresses and relay ports filled in: every listener and
    /// relay address in the file, and the host's interface addresses when one of them is a
    /// wildcard (the server answers on all of them then); TURN's and the RTP relay's ranges.
    pub fn with_own_addresses(
        &self,
        mut policy: farside_peers::PeerPolicy,
    ) -> farside_peers::PeerPolicy {
        let mut own: Vec<IpAddr> = Vec::new();
        own.extend(self.stun.listen.iter().map(|a| a.ip()));
        own.extend(self.stun.alternate_address);
        own.extend(self.tls.listen.iter().map(|a| a.ip()));
        own.extend(self.turn.relay_address.iter().copied());
        own.extend(self.sip.listen.iter().map(|l| l.address.ip()));
        own.extend(self.rtp.address.iter().copied());
        own.extend(self.rtp.advertised_address);
        own.extend(
            self.admin
                .listen
                .as_deref()
                .and_then(|l| l.parse::<std::net::SocketAddr>().ok())
                .map(|a| a.ip()),
        );
        if own.iter().any(IpAddr::is_unspecified)
            && let Ok(host) = farside_io::interface_addresses()
        {
            own.extend(host.into_iter().map(|a| a.ip));
        }
        own.retain(|a| !a.is_unspecified());
        own.sort();
        own.dedup();
        policy.own = own;
        policy.relay_ports = self.relay_ports();
        policy
    }

    /// The ports the relays relay from: TURN's and the RTP relay's ranges.
    fn relay_ports(&self) -> Vec<RangeInclusive<u16>> {
        let super::values::PortRange(a, b) = self.turn.relay_ports;
        let super::values::PortRange(c, d) = self.rtp.ports;
        vec![a..=b, c..=d]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_and_relay_addresses_are_own_and_relay_ports_open() {
        let c = Config::parse(
            "[stun]\nlisten = [\"203.0.113.10:3478\"]\n[sip]\nlisten = [\"udp:203.0.113.11:5060\"]\n\
             [turn]\nrelay_ports = \"50000-50100\"\n",
            "t.toml",
        )
        .expect("valid");
        let p = c.with_own_addresses(farside_peers::PeerPolicy::default());
        let own: IpAddr = "203.0.113.10".parse().expect("ip");
        assert!(p.own.contains(&own) && p.own.contains(&"203.0.113.11".parse().expect("ip")));
        let at = |port| std::net::SocketAddr::new(own, port);
        assert!(!p.permits_to(at(3478)));
        assert!(p.permits_to(at(50050)), "a relay port: another allocation");
    }
}
