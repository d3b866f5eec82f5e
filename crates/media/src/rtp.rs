//! RTP and RTCP as the relay reads them (RFC 3550 §5.1, §6.4; RFC 5761 §4): a packet's fixed
//! header, and which of the two a packet on a multiplexed port is. The relay forwards the
//! bytes as they came; it reads only what its figures need.

/// The fixed RTP header (RFC 3550 §5.1), read from a packet's first 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (0-127).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp, in the payload format's clock.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Reads the header of an RTP packet: version 2, and room for the contributing sources
    /// the CC field announces. `None` for anything else (RTCP included: see [`kind`]).
    pub fn parse(packet: &[u8]) -> Option<RtpHeader> {
        let b: &[u8; 12] = packet.get(..12)?.try_into().ok()?;
        if b[0] >> 6 != 2 || kind(packet) != Kind::Rtp {
            return None;
        }
        let csrc = usize::from(b[0] & 0x0f) * 4;
        if packet.len() < 12 + csrc {
            return None;
        }
        Some(RtpHeader {
            marker: b[1] & 0x80 != 0,
            payload_type: b[1] & 0x7f,
            sequence: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

/// What a packet on a media port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RTP.
    Rtp,
    /// RTCP: on a multiplexed port, the second byte is a packet type 192-223 (RFC 5761 §4,
    /// which keeps RTP payload types 64-95 out of use for this).
    Rtcp,
    /// Neither (too short, or not version 2): STUN, DTLS or junk.
    Other,
}

/// Tells RTP from RTCP (and from neither) by the first two bytes.
pub fn kind(packet: &[u8]) -> Kind {
    match packet {
        [first, second, ..] if first >> 6 == 2 && packet.len() >= 8 => {
            if (192..=223).contains(second) {
                Kind::Rtcp
            } else if packet.len() >= 12 {
                Kind::Rtp
            } else {
                Kind::Other
            }
        }
        _ => Kind::Other,
    }
}

/// A report block's fields the relay uses (RFC 3550 §6.4.1): whose stream it reports on, the
/// middle 32 bits of the NTP time of that stream's last SR (LSR), and the delay since it was
/// received (DLSR), both in 1/65536 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The SSRC reported on.
    pub ssrc: u32,
    /// Fraction of its packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// LSR.
    pub last_sr: u32,
    /// DLSR.
    pub delay_since_last_sr: u32,
}

/// The first SR or RR of a compound RTCP packet, read in place: its report blocks (at most 31)
/// and, for an SR, the middle 32 bits of its NTP timestamp (what the other side's LSR will
/// name). Nothing is copied or allocated: a relay reads one per RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report<'a> {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// For a sender report: the middle 32 bits of its NTP timestamp.
    pub ntp_middle: Option<u32>,
    /// The report blocks' bytes, 24 each.
    blocks: &'a [u8],
}

impl Report<'_> {
    /// Its report blocks.
    pub fn blocks(&self) -> impl Iterator<Item = ReportBlock> + '_ {
        self.blocks.chunks_exact(24).map(|b| {
            let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            ReportBlock {
                ssrc: word(0),
                fraction_lost: b[4],
                last_sr: word(16),
                delay_since_last_sr: word(20),
            }
        })
    }
}

/// Reads the first packet of a compound RTCP packet if it is an SR (200) or RR (201) whose
/// length fits the bytes and its report count. `None` otherwise.
pub fn report(packet: &[u8]) -> Option<Report<'_>> {
    let head: &[u8; 8] = packet.get(..8)?.try_into().ok()?;
    if head[0] >> 6 != 2 {
        return None;
    }
    let count = usize::from(head[0] & 0x1f);
    let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let body = packet.get(..(words + 1) * 4)?;
    let ssrc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let (ntp_middle, blocks_at) = match head[1] {
        200 => {
            let ntp = body.get(10..14)?;
            (
                Some(u32::from_be_bytes([ntp[0], ntp[1], ntp[2], ntp[3]])),
                28,
            )
        }
        201 => (None, 8),
        _ => return None,
    };
    Some(Report {
        ssrc,
        ntp_middle,
        blocks: body.get(blocks_at..blocks_at + count * 24)?,
    })
}
