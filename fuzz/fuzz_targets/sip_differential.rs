//! Differential: Farside's SIP parser against `rsip` (written independently, on nom). Where
//! both accept a message in the canonical wire form (every line ending in CRLF, no bare CR or
//! LF, no folded header lines: Farside also takes a bare LF as a line end and unfolds, as
//! Kamailio does, rsip does neither; a Content-Length, and nothing after the body it gives),
//! they must agree on whether it is a request or a
//! response, its method or status code, its Call-ID and its CSeq number. Where they differ in
//! what they accept, nothing is asserted.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run sip_differential -- -max_total_time=30` from the repo
//! root.
#![no_main]

use farside_sip::{Message, StartLine};
use libfuzzer_sys::fuzz_target;
use rsip::prelude::*;

/// Whether the head of `data` (up to the empty line) is in the canonical form.
fn canonical(data: &[u8]) -> bool {
    let head = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data, |end| &data[..end + 2]);
    head.iter().enumerate().all(|(i, &b)| match b {
        b'\n' => i > 0 && head[i - 1] == b'\r' && !matches!(head.get(i + 1), Some(b' ' | b'\t')),
        b'\r' => head.get(i + 1) == Some(&b'\n'),
        _ => true,
    })
}

fuzz_target!(|data: &[u8]| {
    if !canonical(data) {
        return;
    }
    let Ok(ours) = Message::parse(data) else {
        return;
    };
    // The body is what Content-Length says, and nothing follows it: without Content-Length
    // (allowed over UDP) Farside takes the rest of the datagram as the body, and after it
    // drops what follows (RFC 3261 §18.3); rsip reads header lines out of both.
    if ours.value_of("content-length").is_none()
        || ours.headers_end() + 2 + ours.body().len() != data.len()
    {
        return;
    }
    let Ok(theirs) = rsip::SipMessage::try_from(data) else {
        return;
    };
    match (ours.start_line(), &theirs) {
        (StartLine::Request { method, .. }, rsip::SipMessage::Request(r)) => {
            assert_eq!(
                String::from_utf8_lossy(method.0),
                r.method.to_string(),
                "method"
            );
        }
        (StartLine::Response { code, .. }, rsip::SipMessage::Response(r)) => {
            assert_eq!(code, r.status_code.code(), "status code");
        }
        _ => panic!("one says request, the other response"),
    }
    if let Ok(call_id) = theirs.call_id_header() {
        assert_eq!(
            String::from_utf8_lossy(ours.call_id()).trim(),
            call_id.value().trim(),
            "Call-ID"
        );
    }
    if let Ok(cseq) = theirs.cseq_header().and_then(|c| c.typed()) {
        assert_eq!(ours.cseq().number, cseq.seq, "CSeq number");
    }
});
