//! Flow tokens (RFC 5626 §5.2): a flow written into the user part of a URI the edge puts in
//! Path or Record-Route, so that a request the registrar or a peer sends back names the flow
//! it must leave over. The token is signed: a forged or altered one is refused, so nobody can
//! steer the edge into sending from one of its flows to an address of their choosing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::nat::Transport;
use crate::registrar::Flow;

/// Bytes of HMAC-SHA-256 kept in a token (80 bits: forging one is out of reach).
const MAC_LEN: usize = 10;
/// Longest encoded flow: transport, two IPv6 addresses with family bytes and ports.
const MAX_FLOW: usize = 1 + 2 * (1 + 16 + 2);

/// Makes and checks flow tokens with one key.
#[derive(Clone)]
pub struct FlowTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for FlowTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowTokens { .. }")
    }
}

impl FlowTokens {
    /// Tokens signed with `key` (keep it across restarts: registrars hold Paths for hours).
    pub fn new(key: [u8; 32]) -> Self {
        FlowTokens { key }
    }

    /// The token for `flow`: lowercase hex, safe in a URI's user part.
    pub fn token(&self, flow: &Flow) -> String {
        let mut raw = [0u8; MAX_FLOW + MAC_LEN];
        let n = encode(flow, &mut raw);
        let mac = self.mac(&raw[..n]);
        raw[n..n + MAC_LEN].copy_from_slice(&mac);
        base16ct::lower::encode_string(&raw[..n + MAC_LEN])
    }

    /// The flow a token names, if it is one of ours and unaltered.
    pub fn flow(&self, token: &[u8]) -> Option<Flow> {
        if !token.len().is_multiple_of(2) || token.len() > 2 * (MAX_FLOW + MAC_LEN) {
            return None;
        }
        let mut raw = [0u8; MAX_FLOW + MAC_LEN];
        // Either case: a proxy may have changed it (URIs' user parts are compared as written,
        // but hex digits are hex digits).
        let len = base16ct::mixed::decode(token, &mut raw).ok()?.len();
        let n = len.checked_sub(MAC_LEN)?;
        let mac = self.mac(&raw[..n]);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&mac[..], &raw[n..len])) {
            return None;
        }
        decode(&raw[..n])
    }

    fn mac(&self, data: &[u8]) -> [u8; MAC_LEN] {
        let mut out = [0u8; MAC_LEN];
        if let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) {
            mac.update(data);
            out.copy_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        }
        out
    }
}

fn transport_byte(t: Transport) -> u8 {
    match t {
        Transport::Udp => 1,
        Transport::Tcp => 2,
        Transport::Tls => 3,
        Transport::Ws => 4,
        Transport::Wss => 5,
    }
}

fn encode(flow: &Flow, out: &mut [u8; MAX_FLOW + MAC_LEN]) -> usize {
    out[0] = transport_byte(flow.transport);
    let mut n = 1;
    for a in [flow.local, flow.remote] {
        match a.ip() {
            IpAddr::V4(ip) => {
                out[n] = 4;
                out[n + 1..n + 5].copy_from_slice(&ip.octets());
                n += 5;
            }
            IpAddr::V6(ip) => {
                out[n] = 6;
                out[n + 1..n + 17].copy_from_slice(&ip.octets());
                n += 17;
            }
        }
        out[n..n + 2].copy_from_slice(&a.port().to_be_bytes());
        n += 2;
    }
    n
}

fn decode(raw: &[u8]) -> Option<Flow> {
    let (&t, mut rest) = raw.split_first()?;
    let transport = Transport::ALL
        .into_iter()
        .find(|&x| transport_byte(x) == t)?;
    let mut addr = || -> Option<SocketAddr> {
        let (&family, r) = rest.split_first()?;
        let (ip, r) = match family {
            4 => {
                let (o, r) = r.split_first_chunk::<4>()?;
                (IpAddr::V4(Ipv4Addr::from(*o)), r)
            }
            6 => {
                let (o, r) = r.split_first_chunk::<16>()?;
                (IpAddr::V6(Ipv6Addr::from(*o)), r)
            }
            _ => return None,
        };
        let (p, r) = r.split_first_chunk::<2>()?;
        rest = r;
        Some(SocketAddr::new(ip, u16::from_be_bytes(*p)))
    };
    let local = addr()?;
    let remote = addr()?;
    rest.is_empty().then_some(Flow {
        transport,
        local,
        remote,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(local: &str, remote: &str, transport: Transport) -> Flow {
        Flow {
            transport,
            local: local.parse().expect("address"),
            remote: remote.parse().expect("address"),
        }
    }

    #[test]
    fn tokens_name_their_flow_and_nothing_else() {
        let tokens = FlowTokens::new([7; 32]);
        for f in [
            flow("203.0.113.10:5060", "198.51.100.12:40123", Transport::Udp),
            flow("[2001:db8::1]:5061", "[2001:db8::99]:1", Transport::Tls),
            flow("[::]:5060", "192.0.2.1:65535", Transport::Tcp),
        ] {
            let t = tokens.token(&f);
            assert!(t.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
            assert_eq!(tokens.flow(t.as_bytes()), Some(f));
            assert_eq!(tokens.flow(t.to_uppercase().as_bytes()), Some(f));
            // Any altered character, another key, a cut token: refused.
            let mut bad = t.clone().into_bytes();
            bad[5] = if bad[5] == b'0' { b'1' } else { b'0' };
            assert_eq!(tokens.flow(&bad), None);
            assert_eq!(FlowTokens::new([8; 32]).flow(t.as_bytes()), None);
            assert_eq!(tokens.flow(&t.as_bytes()[..t.len() - 2]), None);
        }
    }

    #[test]
    fn any_bytes_are_refused_without_a_panic() {
        let tokens = FlowTokens::new([1; 32]);
        for s in [&b""[..], b"zz", b"0", b"00", &[0xff; 300], b"alice"] {
            assert_eq!(tokens.flow(s), None);
        }
    }
}
