//! Feeds arbitrary packets to the relay's RTP and RTCP readers and to a stream's figures:
//! nothing may panic, and a report never holds more blocks than its count field allows.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run rtp_parse -- -max_total_time=30` from the repo root.
#![no_main]

use farside_media::quality::{Quality, RoundTrip};
use farside_media::rtp::{RtpHeader, kind, report};
use farside_time::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kind(data);
    let mut q = Quality::new(8000);
    let mut rt = RoundTrip::default();
    // The packet, and the packet cut at every 12 bytes, as a stream of arrivals.
    for (i, p) in std::iter::once(data).chain(data.chunks(12)).enumerate() {
        let at = Timestamp::from_unix_micros(i as u64 * 20_000);
        if let Some(h) = RtpHeader::parse(p) {
            q.on_rtp(&h, at);
        }
        if let Some(r) = report(p) {
            assert!(r.blocks().count() <= 31);
            rt.sender_report(&r, at);
            let _ = rt.receiver_report(&r, at);
        }
    }
    let _ = (q.lost(), q.expected(), q.jitter(), rt.last());
});
