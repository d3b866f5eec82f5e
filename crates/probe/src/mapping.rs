//! Mapping behaviour (RFC 5780 §4.3).
//!
//! Test I (to the primary address) gave a public address. Test II goes to the alternate IP
//! and the primary port: the same public address means endpoint-independent mapping.
//! Otherwise test III goes to the alternate IP and port: the same public address as test II
//! means address-dependent mapping, another one address and port-dependent.
//!
//! The tests run after the filtering tests: sending to the alternate address opens the NAT's
//! filter for it, which would make an address-dependent filter look endpoint-independent.
//! Since an unanswered filtering test leaves socket 0 silent toward the server for up to
//! 16·RTO (8 s by default) at a time, a NAT with a short binding lifetime may have replaced
//! test I's mapping by then; so the mapping tests start by repeating test I, and compare
//! tests II and III with that fresh address.

use std::net::SocketAddr;

use crate::Behaviour;

/// Where test II goes: the alternate IP, the primary port.
pub fn test_ii_target(server: SocketAddr, other: SocketAddr) -> SocketAddr {
    SocketAddr::new(other.ip(), server.port())
}

/// Where test III goes: the alternate IP and port.
pub fn test_iii_target(other: SocketAddr) -> SocketAddr {
    other
}

/// The verdict after test II, or `None` if test III is needed.
pub fn after_test_ii(test_i: SocketAddr, test_ii: SocketAddr) -> Option<Behaviour> {
    (test_i == test_ii).then_some(Behaviour::EndpointIndependent)
}

/// The verdict after test III.
pub fn after_test_iii(test_ii: SocketAddr, test_iii: SocketAddr) -> Behaviour {
    if test_ii == test_iii {
        Behaviour::AddressDependent
    } else {
        Behaviour::AddressAndPortDependent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn rfc_5780_section_4_3() {
        let server = a("192.0.2.1:3478");
        let other = a("192.0.2.2:3479");
        assert_eq!(test_ii_target(server, other), a("192.0.2.2:3478"));
        assert_eq!(test_iii_target(other), other);
        let m1 = a("203.0.113.1:40000");
        assert_eq!(after_test_ii(m1, m1), Some(Behaviour::EndpointIndependent));
        let m2 = a("203.0.113.1:40001");
        assert_eq!(after_test_ii(m1, m2), None);
        assert_eq!(after_test_iii(m2, m2), Behaviour::AddressDependent);
        assert_eq!(
            after_test_iii(m2, a("203.0.113.1:40002")),
            Behaviour::AddressAndPortDependent
        );
    }
}
