//! ICE connectivity-check attributes (RFC 8445 §7.1.1, §16.1).

use super::attr_type;
use super::turn::{flag_attribute, int_attribute};
use super::{Attribute, exact, put};
use crate::error::AttributeError;
use crate::header::Header;

int_attribute!(
    /// PRIORITY: the priority a peer-reflexive candidate learned from this check would get
    /// (RFC 8445 §7.1.1).
    Priority(u32), attr_type::PRIORITY, 4
);
flag_attribute!(
    /// USE-CANDIDATE: the controlling agent nominates this pair (RFC 8445 §7.1.2).
    UseCandidate, attr_type::USE_CANDIDATE
);
int_attribute!(
    /// ICE-CONTROLLED: the sender thinks it is controlled; the value is its tie-breaker
    /// (RFC 8445 §7.1.3).
    IceControlled(u64), attr_type::ICE_CONTROLLED, 8
);
int_attribute!(
    /// ICE-CONTROLLING: the sender thinks it is controlling; the value is its tie-breaker
    /// (RFC 8445 §7.1.3).
    IceControlling(u64), attr_type::ICE_CONTROLLING, 8
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::test_util::round_trip;

    #[test]
    fn rfc5769_values() {
        // RFC 5769 §2.1.
        round_trip(&Priority(0x6e0001ff), &[0x6e, 0x00, 0x01, 0xff]);
        round_trip(
            &IceControlled(0x932ff9b151263b36),
            &[0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36],
        );
        round_trip(&IceControlling(1), &[0, 0, 0, 0, 0, 0, 0, 1]);
        round_trip(&UseCandidate, &[]);
    }
}
