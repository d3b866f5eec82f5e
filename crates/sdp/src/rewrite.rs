//! Writing a description with the relay's addresses and ports, every other byte kept.

use std::io::Write as _;
use std::net::IpAddr;
use std::ops::Range;

use crate::parse::Sdp;

/// What becomes of the ICE attributes (rtpengine's `ICE=remove` and its default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ice {
    /// Left as they are.
    #[default]
    Keep,
    /// Taken out, line and all: the relay is the only address the other side should try.
    Remove,
}

/// What a relay puts into a description. `None` and an empty list leave a field as it is, so
/// `Rewrite::default()` gives back the very bytes that were read.
#[derive(Debug, Clone, Default)]
pub struct Rewrite<'r> {
    /// The address the relay receives media on (an advertised one behind 1:1 NAT): every
    /// `c=` line, session and media level, and `a=rtcp`'s address where it names one. The
    /// address type follows (`IP4` or `IP6`).
    pub address: Option<IpAddr>,
    /// The origin's address too (rtpengine's `replace-origin`).
    pub origin: Option<IpAddr>,
    /// For each media section in order, the relay's RTP port. A rejected stream (port 0)
    /// stays 0 (RFC 3264 §6).
    pub ports: &'r [Option<u16>],
    /// For each media section in order, the relay's RTCP port, written where the section has
    /// an `a=rtcp` line (RFC 3605).
    pub rtcp_ports: &'r [Option<u16>],
    /// ICE attributes kept or removed.
    pub ice: Ice,
}

/// One change: the bytes in `range` give way to `with`.
enum With {
    Address(IpAddr),
    Port(u16),
    Nothing,
}

impl Sdp<'_> {
    /// Writes the description with `r` applied into `out` (cleared first).
    pub fn rewrite(&self, r: &Rewrite<'_>, out: &mut Vec<u8>) {
        let mut edits: Vec<(Range<usize>, With)> = Vec::new();
        if let Some(a) = r.origin {
            edits.push((self.origin.typed_address.clone(), With::Address(a)));
        }
        if let Some(a) = r.address
            && let Some(c) = &self.session_connection
        {
            edits.push((c.typed_address.clone(), With::Address(a)));
        }
        for (i, s) in self.sections.iter().enumerate() {
            if let Some(Some(p)) = r.ports.get(i)
                && s.port != 0
            {
                edits.push((s.port_at.clone(), With::Port(*p)));
            }
            if let (Some(a), Some(c)) = (r.address, &s.connection) {
                edits.push((c.typed_address.clone(), With::Address(a)));
            }
            if let Some(rtcp) = &s.rtcp {
                if let Some(Some(p)) = r.rtcp_ports.get(i)
                    && s.port != 0
                {
                    edits.push((rtcp.port_at.clone(), With::Port(*p)));
                }
                if let (Some(a), Some(place)) = (r.address, &rtcp.place) {
                    edits.push((place.typed_address.clone(), With::Address(a)));
                }
            }
        }
        if r.ice == Ice::Remove {
            for l in self.lines.iter().filter(|l| self.is_ice(l)) {
                edits.push((l.whole.clone(), With::Nothing));
            }
        }
        edits.sort_by_key(|(range, _)| range.start);
        out.clear();
        out.reserve(self.bytes.len() + 64 * edits.len());
        let mut at = 0;
        for (range, with) in edits {
            // Edits never overlap (each is its own field of its own line); one that would is
            // skipped rather than trusted.
            if range.start < at || range.end > self.bytes.len() {
                continue;
            }
            out.extend_from_slice(&self.bytes[at..range.start]);
            match with {
                With::Address(IpAddr::V4(a)) => {
                    let _ = write!(out, "IP4 {a}");
                }
                With::Address(IpAddr::V6(a)) => {
                    let _ = write!(out, "IP6 {a}");
                }
                With::Port(p) => {
                    let _ = write!(out, "{p}");
                }
                With::Nothing => {}
            }
            at = range.end;
        }
        out.extend_from_slice(&self.bytes[at..]);
    }
}
