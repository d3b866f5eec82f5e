//! The verdict: RFC 5780 behaviours and the classic RFC 3489 name users know.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A NAT's mapping or filtering behaviour (RFC 4787 §4.1, §5; RFC 5780 §4.3, §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Behaviour {
    /// The same for every remote endpoint (EIM / EIF).
    EndpointIndependent,
    /// Depends on the remote IP address only (ADM / ADF).
    AddressDependent,
    /// Depends on the remote IP address and port (APDM / APDF).
    AddressAndPortDependent,
}

impl Behaviour {
    /// The RFC 4787 abbreviation's stem: "EI", "AD" or "APD" (add "M" or "F").
    pub fn short(self) -> &'static str {
        match self {
            Behaviour::EndpointIndependent => "EI",
            Behaviour::AddressDependent => "AD",
            Behaviour::AddressAndPortDependent => "APD",
        }
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Behaviour::EndpointIndependent => "endpoint-independent",
            Behaviour::AddressDependent => "address-dependent",
            Behaviour::AddressAndPortDependent => "address and port-dependent",
        })
    }
}

/// The classic RFC 3489 §5 name of what was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClassicType {
    /// No NAT and no filtering.
    OpenInternet,
    /// NAT with endpoint-independent mapping and filtering.
    FullCone,
    /// NAT with endpoint-independent mapping and address-dependent filtering.
    RestrictedCone,
    /// NAT with endpoint-independent mapping and address and port-dependent filtering.
    PortRestrictedCone,
    /// NAT whose mapping depends on the destination.
    Symmetric,
    /// No NAT, but a firewall that filters inbound UDP.
    SymmetricFirewall,
    /// No answer from the server at all.
    UdpBlocked,
    /// Not enough was learned to name it (the server lacks RFC 5780, or tests were skipped).
    Unknown,
}

impl fmt::Display for ClassicType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClassicType::OpenInternet => "open internet",
            ClassicType::FullCone => "full cone",
            ClassicType::RestrictedCone => "restricted cone",
            ClassicType::PortRestrictedCone => "port restricted cone",
            ClassicType::Symmetric => "symmetric",
            ClassicType::SymmetricFirewall => "symmetric UDP firewall",
            ClassicType::UdpBlocked => "UDP blocked",
            ClassicType::Unknown => "unknown",
        })
    }
}

impl ClassicType {
    /// The classic name from RFC 5780 results: without NAT, endpoint-independent filtering
    /// is the open internet and anything else a symmetric firewall; behind a NAT, a mapping
    /// that depends on the destination is symmetric and an endpoint-independent one is a cone
    /// named by its filtering. `Unknown` when a needed result is missing.
    pub fn classify(
        nat: Option<bool>,
        mapping: Option<Behaviour>,
        filtering: Option<Behaviour>,
    ) -> ClassicType {
        use Behaviour::*;
        match (nat, mapping, filtering) {
            (Some(false), _, Some(EndpointIndependent)) => ClassicType::OpenInternet,
            (Some(false), _, Some(_)) => ClassicType::SymmetricFirewall,
            (Some(true), Some(AddressDependent | AddressAndPortDependent), _) => {
                ClassicType::Symmetric
            }
            (Some(true), Some(EndpointIndependent), Some(EndpointIndependent)) => {
                ClassicType::FullCone
            }
            (Some(true), Some(EndpointIndependent), Some(AddressDependent)) => {
                ClassicType::RestrictedCone
            }
            (Some(true), Some(EndpointIndependent), Some(AddressAndPortDependent)) => {
                ClassicType::PortRestrictedCone
            }
            _ => ClassicType::Unknown,
        }
    }
}

/// The binding lifetime found by RFC 5780 §4.6's search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// The longest idle time after which the binding still worked (zero if none did).
    pub at_least: Duration,
    /// The shortest idle time after which it was gone; `None` if it survived the longest wait.
    pub less_than: Option<Duration>,
}

/// What the probe found. Complete once [`crate::Probe::is_done`]; partial before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The server's primary address.
    pub server: SocketAddr,
    /// Socket 0's local address.
    pub local: SocketAddr,
    /// The public (server-reflexive) address of socket 0: XOR-MAPPED-ADDRESS (or
    /// MAPPED-ADDRESS) of test I.
    pub public: Option<SocketAddr>,
    /// The server answered at all.
    pub reachable: bool,
    /// The server gave an OTHER-ADDRESS and honoured CHANGE-REQUEST.
    pub rfc5780: bool,
    /// The server's alternate address (OTHER-ADDRESS).
    pub other_address: Option<SocketAddr>,
    /// Whether the public address differs from the local one.
    pub nat: Option<bool>,
    /// Mapping behaviour (RFC 5780 §4.3).
    pub mapping: Option<Behaviour>,
    /// Filtering behaviour (RFC 5780 §4.4).
    pub filtering: Option<Behaviour>,
    /// Whether the NAT loops back datagrams sent to its own public address (§4.5). `None`
    /// when not tested, or without NAT.
    pub hairpinning: Option<bool>,
    /// The binding lifetime (§4.6), when asked for and measured.
    pub lifetime: Option<Lifetime>,
    /// The classic RFC 3489 name.
    pub classic: ClassicType,
    /// Things an operator should know, one sentence each.
    pub notes: Vec<String>,
}

impl Report {
    /// An empty report before any answer.
    pub(crate) fn new(server: SocketAddr, local: SocketAddr) -> Self {
        Report {
            server,
            local,
            public: None,
            reachable: false,
            rfc5780: false,
            other_address: None,
            nat: None,
            mapping: None,
            filtering: None,
            hairpinning: None,
            lifetime: None,
            classic: ClassicType::Unknown,
            notes: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Behaviour::*;
    use super::*;

    #[test]
    fn classic_names_follow_rfc_5780_results() {
        let t = |nat, m, f| ClassicType::classify(Some(nat), m, f);
        assert_eq!(
            t(false, None, Some(EndpointIndependent)),
            ClassicType::OpenInternet
        );
        assert_eq!(
            t(false, None, Some(AddressDependent)),
            ClassicType::SymmetricFirewall
        );
        let eim = Some(EndpointIndependent);
        assert_eq!(
            t(true, eim, Some(EndpointIndependent)),
            ClassicType::FullCone
        );
        assert_eq!(
            t(true, eim, Some(AddressDependent)),
            ClassicType::RestrictedCone
        );
        assert_eq!(
            t(true, eim, Some(AddressAndPortDependent)),
            ClassicType::PortRestrictedCone
        );
        for m in [AddressDependent, AddressAndPortDependent] {
            assert_eq!(t(true, Some(m), None), ClassicType::Symmetric);
        }
        assert_eq!(t(true, eim, None), ClassicType::Unknown);
        assert_eq!(t(false, eim, None), ClassicType::Unknown);
        assert_eq!(
            ClassicType::classify(None, None, None),
            ClassicType::Unknown
        );
    }

    #[test]
    fn display_uses_the_rfcs_words() {
        assert_eq!(EndpointIndependent.to_string(), "endpoint-independent");
        assert_eq!(AddressDependent.to_string(), "address-dependent");
        assert_eq!(
            AddressAndPortDependent.to_string(),
            "address and port-dependent"
        );
        assert_eq!(ClassicType::FullCone.to_string(), "full cone");
        assert_eq!(
            ClassicType::PortRestrictedCone.to_string(),
            "port restricted cone"
        );
        assert_eq!(ClassicType::UdpBlocked.to_string(), "UDP blocked");
        assert_eq!(AddressAndPortDependent.short(), "APD");
    }
}
