//! A sans-IO model of a NAT (RFC 4787): mapping and filtering behaviour, hairpinning, and an
//! idle timeout per binding refreshed by outbound traffic only. With `translate: false` it is
//! a plain stateful firewall in front of a host with a public address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use farside_time::Timestamp;

use farside_probe::Behaviour;

/// How the modelled NAT behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatSpec {
    /// Rewrite source addresses (a NAT) or not (a firewall on a public host).
    pub translate: bool,
    pub mapping: Behaviour,
    pub filtering: Behaviour,
    pub hairpin: bool,
    /// A binding is gone once it has been idle (no outbound datagram) this long.
    pub lifetime: Duration,
}

impl NatSpec {
    pub fn nat(mapping: Behaviour, filtering: Behaviour, hairpin: bool) -> Self {
        NatSpec {
            translate: true,
            mapping,
            filtering,
            hairpin,
            lifetime: Duration::from_secs(3600),
        }
    }

    pub fn firewall(filtering: Behaviour) -> Self {
        NatSpec {
            translate: false,
            mapping: Behaviour::EndpointIndependent,
            filtering,
            hairpin: false,
            lifetime: Duration::from_secs(3600),
        }
    }
}

/// The destination part that selects a mapping: nothing (EIM), the IP (ADM), or both.
type DestKey = (Option<IpAddr>, Option<u16>);

#[derive(Debug)]
struct Binding {
    internal: SocketAddr,
    key: DestKey,
    external: SocketAddr,
    last_out: Timestamp,
    /// Remote endpoints this binding sent to: what the filter lets back in.
    sent_to: Vec<SocketAddr>,
}

#[derive(Debug)]
pub struct Nat {
    pub spec: NatSpec,
    pub public_ip: IpAddr,
    next_port: u16,
    bindings: Vec<Binding>,
}

impl Nat {
    pub fn new(spec: NatSpec, public_ip: IpAddr) -> Self {
        Nat {
            spec,
            public_ip,
            next_port: 40_000,
            bindings: Vec::new(),
        }
    }

    fn key(&self, dst: SocketAddr) -> DestKey {
        match self.spec.mapping {
            Behaviour::EndpointIndependent => (None, None),
            Behaviour::AddressDependent => (Some(dst.ip()), None),
            Behaviour::AddressAndPortDependent => (Some(dst.ip()), Some(dst.port())),
        }
    }

    fn expire(&mut self, now: Timestamp) {
        let life = self.spec.lifetime;
        self.bindings
            .retain(|b| now.duration_since(b.last_out) < life);
    }

    /// A datagram from `src` behind the NAT to `dst`: its source outside.
    pub fn outbound(&mut self, now: Timestamp, src: SocketAddr, dst: SocketAddr) -> SocketAddr {
        self.expire(now);
        let key = self.key(dst);
        let i = match self
            .bindings
            .iter()
            .position(|b| b.internal == src && b.key == key)
        {
            Some(i) => i,
            None => {
                let external = if self.spec.translate {
                    let port = self.next_port;
                    self.next_port += 1;
                    SocketAddr::new(self.public_ip, port)
                } else {
                    src
                };
                self.bindings.push(Binding {
                    internal: src,
                    key,
                    external,
                    last_out: now,
                    sent_to: Vec::new(),
                });
                self.bindings.len() - 1
            }
        };
        let b = &mut self.bindings[i];
        b.last_out = now;
        if !b.sent_to.contains(&dst) {
            b.sent_to.push(dst);
        }
        b.external
    }

    /// A datagram from `src` outside to `dst` on the NAT: the host behind it, if the
    /// binding exists and its filter lets `src` in.
    pub fn inbound(
        &mut self,
        now: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Option<SocketAddr> {
        self.expire(now);
        let filtering = self.spec.filtering;
        // Without translation several bindings share the host's address: any may admit.
        self.bindings
            .iter()
            .filter(|b| b.external == dst)
            .find(|b| match filtering {
                Behaviour::EndpointIndependent => true,
                Behaviour::AddressDependent => b.sent_to.iter().any(|s| s.ip() == src.ip()),
                Behaviour::AddressAndPortDependent => b.sent_to.contains(&src),
            })
            .map(|b| b.internal)
            .or_else(|| {
                // A firewall lets through to a host port that has no binding yet only
                // when it filters nothing.
                (!self.spec.translate && filtering == Behaviour::EndpointIndependent).then_some(dst)
            })
    }

    /// A datagram from `src` behind the NAT to the NAT's own address `dst`: where it lands
    /// behind the NAT and the source it shows, if the NAT hairpins and the target's filter
    /// admits it.
    pub fn hairpin(
        &mut self,
        now: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Option<(SocketAddr, SocketAddr)> {
        if !self.spec.hairpin {
            return None;
        }
        let from = self.outbound(now, src, dst);
        self.inbound(now, from, dst).map(|to| (to, from))
    }
}
