//! Hairpinning (RFC 5780 §4.5): does the NAT deliver a datagram sent from behind it to one of
//! its own public addresses?
//!
//! Socket 1 first learns its public address from the server. Then socket 0 sends a Binding
//! request to socket 1's public address and socket 1 one to socket 0's (test I's), each with
//! its own transaction id, retransmitted as usual. Either request arriving on the other
//! socket means the NAT hairpins. Sending both ways matters: a filtering NAT drops the first
//! hairpinned datagram toward a socket that never sent to the NAT's address, but that
//! socket's own request opens its filter for the reply direction.
//!
//! Behind a NAT whose mapping depends on the destination *and* that filters at all, neither
//! request can pass, whatever the NAT does with hairpinned packets: a request to the NAT's
//! address uses a new binding, so the binding it is aimed at never sent anything to the NAT's
//! address and filters it out. The report then says "no" with a note that the two cannot be
//! told apart. The test is skipped when there is no NAT.

use crate::Behaviour;

/// Whether a "no" could be the NAT's filtering rather than missing hairpinning.
pub fn no_is_ambiguous(mapping: Option<Behaviour>, filtering: Option<Behaviour>) -> bool {
    mapping != Some(Behaviour::EndpointIndependent)
        && filtering != Some(Behaviour::EndpointIndependent)
}

/// The note the report carries when [`no_is_ambiguous`].
pub const AMBIGUOUS_NOTE: &str = "hairpinning: no request came back, but with a \
    destination-dependent mapping and filtering a hairpinning NAT would drop them too";

#[cfg(test)]
mod tests {
    use super::*;
    use Behaviour::*;

    #[test]
    fn ambiguity() {
        assert!(no_is_ambiguous(
            Some(AddressAndPortDependent),
            Some(AddressAndPortDependent)
        ));
        assert!(no_is_ambiguous(
            Some(AddressDependent),
            Some(AddressDependent)
        ));
        assert!(no_is_ambiguous(None, Some(AddressAndPortDependent)));
        assert!(!no_is_ambiguous(
            Some(EndpointIndependent),
            Some(AddressAndPortDependent)
        ));
        assert!(!no_is_ambiguous(
            Some(AddressAndPortDependent),
            Some(EndpointIndependent)
        ));
    }
}
