//! A NAT gateway for SIP over UDP: endpoint-independent mapping, address-and-port-dependent
//! filtering (a home router's usual behaviour, RFC 4787), bindings that die after an idle time
//! refreshed by outbound packets only, and optionally a SIP ALG that rewrites what it
//! understands and hands out a fresh port for every new request (seed 001's router).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use farside_sip::{Edits, HeaderName, Message};
use farside_time::Timestamp;

/// How the gateway behaves.
#[derive(Clone, Copy, Debug)]
pub struct NatSpec {
    /// A binding is gone once no packet went out on it for this long.
    pub lifetime: Duration,
    /// A SIP ALG: rewrites private addresses in Via and Contact to the public side, and maps
    /// each new request (a new CSeq) to a new public port.
    pub alg: bool,
}

#[derive(Debug)]
struct Binding {
    internal: SocketAddr,
    external: SocketAddr,
    last_out: Timestamp,
    /// Remote endpoints it sent to: what the filter lets back in.
    sent_to: Vec<SocketAddr>,
}

#[derive(Debug)]
pub struct Nat {
    pub spec: NatSpec,
    pub public_ip: IpAddr,
    next_port: u16,
    bindings: Vec<Binding>,
    /// The ALG's port for each (internal endpoint, Call-ID, CSeq).
    alg_ports: HashMap<(SocketAddr, Vec<u8>, u32), u16>,
    /// Inbound packets dropped: no live binding, or filtered.
    pub dropped: u32,
}

impl Nat {
    pub fn new(spec: NatSpec, public_ip: IpAddr) -> Self {
        Nat {
            spec,
            public_ip,
            next_port: 40_000,
            bindings: Vec::new(),
            alg_ports: HashMap::new(),
            dropped: 0,
        }
    }

    fn expire(&mut self, now: Timestamp) {
        let lifetime = self.spec.lifetime;
        self.bindings
            .retain(|b| now.duration_since(b.last_out) < lifetime);
    }

    /// A packet from `src` (inside) to `dst`: its public source address, and its bytes as the
    /// ALG left them.
    pub fn outbound(
        &mut self,
        now: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
        bytes: &[u8],
    ) -> (SocketAddr, Vec<u8>) {
        self.expire(now);
        let alg_port = self.alg_port(src, bytes);
        let i = match self
            .bindings
            .iter()
            .position(|b| b.internal == src && alg_port.is_none_or(|p| b.external.port() == p))
        {
            Some(i) => i,
            None => {
                let port = alg_port.unwrap_or_else(|| self.fresh_port());
                self.bindings.push(Binding {
                    internal: src,
                    external: SocketAddr::new(self.public_ip, port),
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
        let external = b.external;
        let bytes = if self.spec.alg {
            rewrite(bytes, src, external)
        } else {
            bytes.to_vec()
        };
        (external, bytes)
    }

    /// A packet from `src` (outside) to `dst` (this gateway's public side): the inside
    /// endpoint it goes to, or `None` (dropped).
    pub fn inbound(
        &mut self,
        now: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Option<SocketAddr> {
        self.expire(now);
        let found = self
            .bindings
            .iter()
            .find(|b| b.external == dst && b.sent_to.contains(&src))
            .map(|b| b.internal);
        if found.is_none() {
            self.dropped += 1;
        }
        found
    }

    fn fresh_port(&mut self) -> u16 {
        self.next_port += 1;
        self.next_port
    }

    /// The ALG's port for a request: a new one per (Call-ID, CSeq), as seed 001's router did.
    fn alg_port(&mut self, src: SocketAddr, bytes: &[u8]) -> Option<u16> {
        if !self.spec.alg {
            return None;
        }
        let m = Message::parse(bytes).ok()?;
        if !m.is_request() {
            return None;
        }
        let key = (src, m.call_id().to_vec(), m.cseq().number);
        if let Some(&p) = self.alg_ports.get(&key) {
            return Some(p);
        }
        let p = self.fresh_port();
        self.alg_ports.insert(key, p);
        Some(p)
    }
}

/// What an ALG does to a SIP message: the inside address, wherever it appears in the top Via
/// and the Contact, becomes the public one.
fn rewrite(bytes: &[u8], inside: SocketAddr, outside: SocketAddr) -> Vec<u8> {
    let Ok(m) = Message::parse(bytes) else {
        return bytes.to_vec();
    };
    let mut edits = Edits::new(bytes);
    let from = inside.to_string();
    let to = outside.to_string();
    for name in [HeaderName::Via, HeaderName::Contact] {
        for h in m.fields(name) {
            let v = h.value;
            if let Some(at) = v.windows(from.len()).position(|w| w == from.as_bytes())
                && let Some(r) = m.range_of(&v[at..at + from.len()])
            {
                edits.replace(r, to.as_bytes());
            }
        }
    }
    edits.apply().unwrap_or_else(|_| bytes.to_vec())
}
