//! Symmetric latching with strict source: which packets arriving at a relay port the relay
//! forwards, and where it sends what goes to that endpoint. One [`Latch`] per endpoint and
//! component (RTP, and RTCP when it has a port of its own).
//!
//! The endpoint's address is learned from its first packet that comes from the host the
//! signalling names: the SDP's address, or, when that address cannot be the sender (a
//! private address behind NAT), the source of the SIP message (RFC 3581's `received`). Any
//! port of that host is taken, since a NAT picks its own. Once learned, only packets from that
//! exact address are forwarded (strict source); everything else is refused and counted.
//! Before the endpoint is learned, packets from any other host are refused too, so **no packet
//! from a stranger is ever forwarded**: the RTP Bleed and RTP Inject attacks of
//! CVE-2025-53399 get nothing, in learning or after it (rtpengine's fixed heuristic still lets
//! up to 5 through).
//!
//! A new offer or answer (a re-INVITE, a resume from hold, an address change) does not drop
//! what was learned: the old address stays good until the first packet from the newly named
//! host arrives, and from then on only the new one is, so the switch leaves no gap. Without
//! signalling, a learned address is only replaced if the endpoint's flags allow it
//! ([`Latch::handover`], rtpengine's `media-handover`).

use std::net::{IpAddr, SocketAddr};

/// Where the signalling says the endpoint sends from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The SDP's address and port, which the endpoint can be reached at (a public address):
    /// media for it goes there until it is learned.
    Address(SocketAddr),
    /// Only the host: the SIP message's source, for an endpoint behind NAT whose SDP address is
    /// private. Media for it waits until it is learned.
    Host(IpAddr),
}

impl Expect {
    fn host(self) -> IpAddr {
        match self {
            Expect::Address(a) => a.ip(),
            Expect::Host(ip) => ip,
        }
    }
}

/// What becomes of a packet that arrived at the endpoint's relay port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forwarded; `learned` when this packet set (or moved) the endpoint's address.
    Forward {
        /// This packet set the address.
        learned: bool,
    },
    /// Refused: it came from neither the learned address nor, before learning, the host the
    /// signalling names.
    ForeignSource,
}

/// One endpoint's learned address and what the signalling expects of it.
#[derive(Debug, Clone)]
pub struct Latch {
    expect: Expect,
    /// A newer expectation (from a re-INVITE) waiting for its first packet.
    next: Option<Expect>,
    learned: Option<SocketAddr>,
    handover: bool,
    relearned: u32,
}

impl Latch {
    /// An endpoint as the first offer or answer names it.
    pub fn new(expect: Expect) -> Latch {
        Latch {
            expect,
            next: None,
            learned: None,
            handover: false,
            relearned: 0,
        }
    }

    /// Lets a packet from another port of the expected host take over a learned address
    /// without new signalling (a NAT that rebinds mid-call). Off by default: it is the one
    /// door a sender on the same public address (behind the same carrier-grade NAT) could use.
    pub fn handover(&mut self, allow: bool) {
        self.handover = allow;
    }

    /// A packet from `source` arrived at this endpoint's port.
    pub fn on_packet(&mut self, source: SocketAddr) -> Verdict {
        if self.learned == Some(source) {
            return Verdict::Forward { learned: false };
        }
        if let Some(next) = self.next
            && next.host() == source.ip()
        {
            self.expect = next;
            self.next = None;
            return self.learn(source);
        }
        let from_host = self.expect.host() == source.ip();
        match self.learned {
            None if from_host => self.learn(source),
            Some(_) if from_host && self.handover => self.learn(source),
            _ => Verdict::ForeignSource,
        }
    }

    fn learn(&mut self, source: SocketAddr) -> Verdict {
        if self.learned.is_some() {
            self.relearned += 1;
        }
        self.learned = Some(source);
        Verdict::Forward { learned: true }
    }

    /// A new offer or answer names the endpoint again. The same host keeps what was learned;
    /// another one takes over at its first packet.
    pub fn expect(&mut self, expect: Expect) {
        if self.learned.is_none() || expect.host() == self.expect.host() {
            self.expect = expect;
            self.next = None;
        } else {
            self.next = Some(expect);
        }
    }

    /// Where media for the endpoint goes: its learned address, else the SDP's address when it
    /// can be reached there; `None` while there is nowhere to send.
    pub fn destination(&self) -> Option<SocketAddr> {
        match (self.learned, self.expect) {
            (Some(a), _) => Some(a),
            (None, Expect::Address(a)) => Some(a),
            (None, Expect::Host(_)) => None,
        }
    }

    /// The learned address.
    pub fn learned(&self) -> Option<SocketAddr> {
        self.learned
    }

    /// How many times a learned address was replaced (re-INVITE, handover).
    pub fn relearned(&self) -> u32 {
        self.relearned
    }
}

/// What the relay expects of an endpoint from its SDP address and the SIP message's source:
/// the SDP's address where it can be the sender; the SIP source's host when the SDP address is
/// not globally routable (`farside_peers::is_global`: private, shared, loopback, link-local,
/// unspecified; a phone behind NAT, or one on hold by `c=0.0.0.0`) and the message came from
/// elsewhere.
pub fn expect(sdp: SocketAddr, sip_source: Option<IpAddr>) -> Expect {
    let ip = sdp.ip();
    let unreachable = !farside_peers::is_global(ip);
    match sip_source {
        Some(source) if unreachable && source != ip => Expect::Host(source),
        _ => Expect::Address(sdp),
    }
}
