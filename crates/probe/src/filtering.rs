//! Filtering behaviour (RFC 5780 §4.4).
//!
//! After test I, the client asks the server to answer from elsewhere:
//!
//! - test II: CHANGE-REQUEST with "change IP" and "change port": the answer leaves from the
//!   alternate IP and port. If it arrives, the NAT filters endpoint-independently.
//! - test III: CHANGE-REQUEST with "change port" only: the answer leaves from the primary IP
//!   and the alternate port. If it arrives (and test II's did not), the filtering is
//!   address-dependent; if neither arrives, address and port-dependent.
//!
//! No answer is a result here, not an error. This client sends both requests at once (the
//! answers to one cannot open the NAT for the other: inbound packets create no state), so
//! an APDF NAT costs one transaction timeout, not two. It also checks where each answer came
//! from, because a server that ignores CHANGE-REQUEST and answers from the primary address
//! would make every NAT look endpoint-independent: such answers mean "no RFC 5780 support".
//! Both tests run before anything is sent to the alternate address (see [`crate::mapping`]).

use std::net::SocketAddr;

use crate::Behaviour;

/// The verdict once both tests are over: whether test II's and test III's answers arrived.
pub fn behaviour(test_ii_answered: bool, test_iii_answered: bool) -> Behaviour {
    if test_ii_answered {
        Behaviour::EndpointIndependent
    } else if test_iii_answered {
        Behaviour::AddressDependent
    } else {
        Behaviour::AddressAndPortDependent
    }
}

/// Whether test II's answer really left from another IP than the server's primary one (a
/// partner server of another host may use the same port, so only the IP is required to
/// differ).
pub fn test_ii_honoured(server: SocketAddr, from: SocketAddr) -> bool {
    from.ip() != server.ip()
}

/// Whether test III's answer really left from the primary IP and another port.
pub fn test_iii_honoured(server: SocketAddr, from: SocketAddr) -> bool {
    from.ip() == server.ip() && from.port() != server.port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(behaviour(true, true), Behaviour::EndpointIndependent);
        assert_eq!(behaviour(true, false), Behaviour::EndpointIndependent);
        assert_eq!(behaviour(false, true), Behaviour::AddressDependent);
        assert_eq!(behaviour(false, false), Behaviour::AddressAndPortDependent);
    }

    #[test]
    fn answers_from_the_primary_address_do_not_count() {
        let server: SocketAddr = "192.0.2.1:3478".parse().expect("addr");
        assert!(!test_ii_honoured(server, server));
        assert!(test_ii_honoured(
            server,
            "192.0.2.2:3479".parse().expect("addr")
        ));
        assert!(test_ii_honoured(
            server,
            "198.51.100.9:3478".parse().expect("addr")
        ));
        assert!(!test_iii_honoured(server, server));
        assert!(test_iii_honoured(
            server,
            "192.0.2.1:3479".parse().expect("addr")
        ));
        assert!(!test_iii_honoured(
            server,
            "192.0.2.2:3479".parse().expect("addr")
        ));
    }
}
