//! What the media core's tests share: port pairs handed out in sequence, and an offer or
//! answer with the defaults a test rarely changes.

#![allow(dead_code)] // each test binary uses its own part

use farside_media::relay::{MediaPorts, Passing};
use farside_sdp::Ice;

/// Port pairs from the given port up, two apart, never refused (the shell would bind them).
pub(crate) struct Ports(pub(crate) u16);

impl MediaPorts for Ports {
    fn take_pair(&mut self, _ipv6: bool) -> Option<u16> {
        self.0 += 2;
        Some(self.0)
    }
    fn give_back(&mut self, _: u16) {}
}

/// An offer or answer of `call_id` whose From tag is `from_tag`: no SIP source, ICE kept, no
/// handover, the recipient in the SDP's own family.
pub(crate) fn passing<'a>(
    call_id: &'a [u8],
    from_tag: &'a [u8],
    to_tag: Option<&'a [u8]>,
    sdp: &'a str,
) -> Passing<'a> {
    Passing {
        call_id,
        from_tag,
        to_tag,
        sdp: sdp.as_bytes(),
        source: None,
        ice: Ice::Keep,
        handover: false,
        recipient_ipv6: None,
    }
}
