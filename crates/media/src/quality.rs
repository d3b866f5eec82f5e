//! A stream's quality from the RTP and RTCP the relay forwards: packets lost by sequence number
//! (RFC 3550 A.1, A.3), interarrival jitter (A.8) and round-trip time from sender and receiver
//! reports (§6.4.1). Each keeps a fixed amount of state, whatever the call's length.

use std::time::Duration;

use farside_time::Timestamp;

use crate::rtp::{Report, RtpHeader};

/// Packets in sequence before a source counts as valid (RFC 3550 A.1's MIN_SEQUENTIAL).
const MIN_SEQUENTIAL: u16 = 2;
/// Largest forward jump taken as loss, not as a restart (MAX_DROPOUT).
const MAX_DROPOUT: u16 = 3000;
/// Largest backward step taken as reordering (MAX_MISORDER).
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: u32 = 1 << 16;

/// Loss and jitter of one direction of a stream, for its current SSRC (a new SSRC starts them
/// again, RFC 3550 §8.2).
#[derive(Debug, Clone)]
pub struct Quality {
    clock_rate: u32,
    ssrc: Option<u32>,
    probation: u16,
    base_seq: u16,
    max_seq: u16,
    bad_seq: u32,
    cycles: u32,
    received: u64,
    /// Interarrival jitter in timestamp units, times 16 (A.8's integer form).
    jitter_x16: u32,
    last_transit: Option<u32>,
    ssrc_changes: u32,
}

impl Quality {
    /// Figures for a payload format whose RTP clock runs at `clock_rate` Hz (8000 for G.711;
    /// 0 is taken as 8000).
    pub fn new(clock_rate: u32) -> Quality {
        Quality {
            clock_rate: if clock_rate == 0 { 8000 } else { clock_rate },
            ssrc: None,
            probation: MIN_SEQUENTIAL,
            base_seq: 0,
            max_seq: 0,
            bad_seq: SEQ_MOD + 1,
            cycles: 0,
            received: 0,
            jitter_x16: 0,
            last_transit: None,
            ssrc_changes: 0,
        }
    }

    /// Takes one RTP packet that arrived at `arrival`.
    pub fn on_rtp(&mut self, h: &RtpHeader, arrival: Timestamp) {
        if self.ssrc != Some(h.ssrc) {
            if self.ssrc.is_some() {
                self.ssrc_changes += 1;
            }
            *self = Quality {
                ssrc: Some(h.ssrc),
                ssrc_changes: self.ssrc_changes,
                max_seq: h.sequence.wrapping_sub(1),
                ..Quality::new(self.clock_rate)
            };
        }
        if !self.update_seq(h.sequence) {
            return;
        }
        // A.8: the transit time's change, in the payload's clock, smoothed by 1/16.
        let now = arrival.unix_micros() as u128 * u128::from(self.clock_rate) / 1_000_000;
        let transit = (now as u32).wrapping_sub(h.timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit.wrapping_sub(last) as i32).unsigned_abs();
            self.jitter_x16 = self
                .jitter_x16
                .wrapping_add(d)
                .wrapping_sub(self.jitter_x16.wrapping_add(8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// RFC 3550 A.1's `update_seq`: whether the packet counts.
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.restart(seq);
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        }
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
            // A very large jump: the source restarted, if the next packet follows this one.
            if u32::from(seq) == self.bad_seq {
                self.restart(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                return false;
            }
        }
        // Otherwise a duplicate or a reordered packet: counted, the maximum kept.
        self.received += 1;
        true
    }

    fn restart(&mut self, seq: u16) {
        self.base_seq = seq;
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.last_transit = None;
    }

    /// Packets counted (after the first, which only starts the count, A.1).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected from the sequence numbers seen (A.3).
    pub fn expected(&self) -> u64 {
        if self.probation > 0 {
            return 0;
        }
        (u64::from(self.cycles) + u64::from(self.max_seq) + 1)
            .saturating_sub(u64::from(self.base_seq))
    }

    /// Packets lost: expected less received; duplicates can make it negative (A.3).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter (A.8).
    pub fn jitter(&self) -> Duration {
        let units = u64::from(self.jitter_x16 >> 4);
        Duration::from_micros(units * 1_000_000 / u64::from(self.clock_rate))
    }

    /// How many times the stream's SSRC changed.
    pub fn ssrc_changes(&self) -> u32 {
        self.ssrc_changes
    }
}

/// Sender reports seen kept, per direction, for matching the receiver reports that answer
/// them.
const SR_KEPT: usize = 8;

/// Round-trip time between the relay and one endpoint: the relay notes when each sender
/// report from the other side passed it on its way there; the endpoint's receiver report
/// names that SR (LSR) and how long it held it (DLSR), so the round trip is the time between
/// the two passing the relay, less DLSR (RFC 3550 §6.4.1, measured at the relay).
#[derive(Debug, Clone, Default)]
pub struct RoundTrip {
    sent: [(u32, Option<Timestamp>); SR_KEPT],
    next: usize,
    last: Option<Duration>,
}

impl RoundTrip {
    /// A sender report passed the relay toward the endpoint at `now`.
    pub fn sender_report(&mut self, report: &Report<'_>, now: Timestamp) {
        if let Some(ntp) = report.ntp_middle {
            self.sent[self.next] = (ntp, Some(now));
            self.next = (self.next + 1) % SR_KEPT;
        }
    }

    /// A report came from the endpoint at `now`: the round trip, if one of its blocks answers
    /// a sender report noted here.
    pub fn receiver_report(&mut self, report: &Report<'_>, now: Timestamp) -> Option<Duration> {
        for b in report.blocks() {
            if b.last_sr == 0 {
                continue;
            }
            let Some(seen) = self
                .sent
                .iter()
                .find(|(ntp, at)| *ntp == b.last_sr && at.is_some())
                .and_then(|(_, at)| *at)
            else {
                continue;
            };
            let held = Duration::from_micros(u64::from(b.delay_since_last_sr) * 1_000_000 / 65_536);
            let rtt = now.duration_since(seen).saturating_sub(held);
            self.last = Some(rtt);
            return Some(rtt);
        }
        None
    }

    /// The last round trip measured.
    pub fn last(&self) -> Option<Duration> {
        self.last
    }
}

/// The listening-quality MOS the E-model (ITU-T G.107) estimates for a G.711 call with packet
/// loss concealment (G.113 Appendix I: Ie 0, Bpl 25.1) whose mouth-to-ear delay is `one_way`
/// and which loses `loss` of its packets at random (0.0 to 1.0). Every other factor is G.107's
/// default, so a perfect path gives R 93.2, MOS 4.41. The delay impairment is the usual
/// simplification (Cole and Rosenbluth, 2001): Id = 0.024 d + 0.11 (d − 177.3) above 177.3 ms.
pub fn e_model_mos(one_way: Duration, loss: f64) -> f64 {
    let d = one_way.as_secs_f64() * 1000.0;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ppl = loss.clamp(0.0, 1.0) * 100.0;
    let (ie, bpl) = (0.0, 25.1);
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl);
    let r = 93.2 - id - ie_eff;
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// [`e_model_mos`] for a G.711 call in 20 ms packets over a path with round trip `rtt`,
/// interarrival jitter `jitter` and `loss`: mouth to ear is taken as half the round trip, the
/// 20 ms of packetization, and a jitter buffer of twice the jitter.
pub fn call_mos(rtt: Duration, jitter: Duration, loss: f64) -> f64 {
    e_model_mos(rtt / 2 + Duration::from_millis(20) + jitter * 2, loss)
}
