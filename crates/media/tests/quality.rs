//! RTP and RTCP headers, and a stream's figures from them (RFC 3550 A.1, A.3, A.8, §6.4.1):
//! loss with reordering, duplicates, a sequence wrap and a restart; jitter at steady and at
//! uneven arrival; round trip from an SR and the RR that answers it; any bytes read or refused.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use farside_media::quality::{Quality, RoundTrip};
use farside_media::rtp::{Kind, RtpHeader, kind, report};
use farside_time::Timestamp;
use proptest::prelude::*;

/// A G.711 packet: 12-byte header and 160 bytes of payload.
fn rtp(seq: u16, timestamp: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend(seq.to_be_bytes());
    p.extend(timestamp.to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend([0xd5; 160]);
    p
}

fn at_ms(ms: u64) -> Timestamp {
    Timestamp::from_unix_micros(1_800_000_000_000_000 + ms * 1000)
}

/// Feeds packets `seqs` of a 20 ms G.711 stream, each arriving on time.
fn feed(q: &mut Quality, seqs: impl IntoIterator<Item = u16>, ssrc: u32) {
    for seq in seqs {
        let h = RtpHeader::parse(&rtp(seq, u32::from(seq) * 160, ssrc)).unwrap();
        q.on_rtp(&h, at_ms(u64::from(seq) * 20));
    }
}

#[test]
fn headers_are_read_and_rtcp_is_told_from_rtp() {
    let p = rtp(4321, 160_000, 0xdead_beef);
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(
        (h.sequence, h.timestamp, h.ssrc, h.payload_type, h.marker),
        (4321, 160_000, 0xdead_beef, 0, false)
    );
    assert_eq!(kind(&p), Kind::Rtp);
    // An RR with no blocks (RFC 3550 §6.4.2), on a multiplexed port (RFC 5761 §4).
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 7];
    assert_eq!(kind(&rr), Kind::Rtcp);
    assert_eq!(RtpHeader::parse(&rr), None);
    // STUN, DTLS, a short packet, a CSRC count beyond the packet.
    assert_eq!(
        kind(&[0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42]),
        Kind::Other
    );
    assert_eq!(kind(&[22, 254, 253]), Kind::Other);
    let mut csrc = rtp(1, 1, 1)[..12].to_vec();
    csrc[0] |= 0x03;
    assert_eq!(RtpHeader::parse(&csrc), None);
}

#[test]
fn loss_counts_what_never_came_not_what_came_late_or_twice() {
    let mut q = Quality::new(8000);
    // 1..=100 with 5 lost, two swapped, one duplicated.
    let mut seqs: Vec<u16> = (1..=100)
        .filter(|s| ![20, 40, 41, 60, 99].contains(s))
        .collect();
    seqs.swap(10, 11);
    seqs.insert(30, 30);
    feed(&mut q, seqs, 7);
    // The first packet only starts the count (A.1's probation).
    assert_eq!(q.expected(), 99);
    assert_eq!(q.received(), 95);
    assert_eq!(
        q.lost(),
        4,
        "5 lost, one of them offset by the duplicate (A.3)"
    );
}

#[test]
fn the_sequence_wraps_and_a_new_ssrc_starts_again() {
    let mut q = Quality::new(8000);
    feed(&mut q, (65_500..=65_535).chain(0..50), 1);
    assert_eq!((q.expected(), q.received(), q.lost()), (85, 85, 0));
    feed(&mut q, 1000..1010, 2);
    assert_eq!((q.expected(), q.received(), q.ssrc_changes()), (9, 9, 1));
    // A jump past MAX_DROPOUT is a restart only if the next packet follows it.
    let mut q = Quality::new(8000);
    feed(&mut q, (1..=10).chain([30_000, 30_001, 30_002]), 3);
    assert_eq!((q.expected(), q.received()), (2, 2), "restarted at 30,001");
}

#[test]
fn jitter_is_zero_on_time_and_follows_uneven_arrival() {
    let mut q = Quality::new(8000);
    feed(&mut q, 1..=200, 9);
    assert_eq!(q.jitter(), Duration::ZERO);
    // Every other packet 10 ms late: |D| = 10 ms each time, so J tends to 10 ms.
    let mut q = Quality::new(8000);
    for seq in 1u16..=400 {
        let late = if seq % 2 == 0 { 10 } else { 0 };
        let h = RtpHeader::parse(&rtp(seq, u32::from(seq) * 160, 9)).unwrap();
        q.on_rtp(&h, at_ms(u64::from(seq) * 20 + late));
    }
    let j = q.jitter().as_micros();
    assert!((9_500..=10_000).contains(&j), "jitter {j} µs");
}

/// An SR (one report block for `about`) from `ssrc` with NTP time whose middle 32 bits are
/// `ntp_middle`.
fn sender_report(ssrc: u32, ntp_middle: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend(ssrc.to_be_bytes());
    p.extend([0, 0]);
    p.extend(ntp_middle.to_be_bytes());
    p.extend([0, 0]);
    p.extend([0; 12]); // RTP timestamp, packet and octet counts
    p
}

fn receiver_report(ssrc: u32, about: u32, lsr: u32, dlsr: u32) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend(ssrc.to_be_bytes());
    p.extend(about.to_be_bytes());
    p.extend([13, 0, 0, 2]); // fraction lost 13/256, 2 packets lost
    p.extend([0; 8]); // highest sequence, jitter
    p.extend(lsr.to_be_bytes());
    p.extend(dlsr.to_be_bytes());
    p
}

#[test]
fn the_round_trip_is_the_time_between_sr_and_rr_less_the_delay_held() {
    let sr_bytes = sender_report(5, 0x1234_5678);
    let sr = report(&sr_bytes).unwrap();
    assert_eq!(
        (sr.ssrc, sr.ntp_middle, sr.blocks().count()),
        (5, Some(0x1234_5678), 0)
    );
    // The endpoint held the SR 0.5 s (32768/65536) and answered 580 ms after it passed.
    let rr_bytes = receiver_report(6, 5, 0x1234_5678, 32_768);
    let rr = report(&rr_bytes).unwrap();
    assert_eq!(rr.blocks().next().unwrap().fraction_lost, 13);
    let mut rt = RoundTrip::default();
    rt.sender_report(&sr, at_ms(1000));
    assert_eq!(
        rt.receiver_report(&rr, at_ms(1580)),
        Some(Duration::from_millis(80))
    );
    assert_eq!(rt.last(), Some(Duration::from_millis(80)));
    // An RR naming an SR not seen (or none: LSR 0) gives nothing.
    let other_bytes = receiver_report(6, 5, 0x9999, 10);
    let other = report(&other_bytes).unwrap();
    assert_eq!(rt.receiver_report(&other, at_ms(2000)), None);
    assert_eq!(
        report(&receiver_report(6, 5, 0x1234_5678, 1)[..20]),
        None,
        "truncated"
    );
}

proptest! {
    #[test]
    fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = kind(&bytes);
        let mut q = Quality::new(8000);
        if let Some(h) = RtpHeader::parse(&bytes) {
            q.on_rtp(&h, at_ms(1));
        }
        if let Some(r) = report(&bytes) {
            prop_assert!(r.blocks().count() <= 31);
            let mut rt = RoundTrip::default();
            rt.sender_report(&r, at_ms(1));
            let _ = rt.receiver_report(&r, at_ms(2));
        }
    }

    #[test]
    fn any_sequence_keeps_the_figures_sane(seqs in prop::collection::vec(any::<u16>(), 0..300)) {
        let mut q = Quality::new(8000);
        feed(&mut q, seqs.iter().copied(), 4);
        prop_assert!(q.received() <= seqs.len() as u64);
    }
}

#[test]
fn the_e_model_gives_g107s_figures() {
    use farside_media::quality::e_model_mos;
    let mos = |ms: u64, loss: f64| e_model_mos(std::time::Duration::from_millis(ms), loss);
    assert!((mos(0, 0.0) - 4.41).abs() < 0.01, "{}", mos(0, 0.0));
    // Delay costs little until about 177 ms, then much; loss costs at once.
    assert!(mos(100, 0.0) > 4.3, "{}", mos(100, 0.0));
    assert!(mos(400, 0.0) < 3.7, "{}", mos(400, 0.0));
    // By hand: 1 % loss, Ie,eff = 95 × 1 / 26.1 = 3.64, R = 93.2 − 0.48 − 3.64 = 89.08.
    assert!((mos(20, 0.01) - 4.316).abs() < 0.01, "{}", mos(20, 0.01));
    // 20 %: Ie,eff = 95 × 20 / 45.1 = 42.13, R = 50.59.
    assert!((mos(20, 0.2) - 2.607).abs() < 0.01, "{}", mos(20, 0.2));
    assert_eq!(mos(10_000, 1.0), 1.0);
    // A call's: half of a 40 ms round trip, 20 ms of packets, twice 5 ms of jitter: 50 ms.
    let call = farside_media::quality::call_mos(
        std::time::Duration::from_millis(40),
        std::time::Duration::from_millis(5),
        0.01,
    );
    assert_eq!(call, mos(50, 0.01));
}
