//! Differential: Farside's STUN decoder against webrtc-rs's (`rtc-stun`, written independently).
//! Where both accept a message with the magic cookie, they must agree on its type, its
//! transaction id and its attributes, type and value, in order, of those that count (RFC 8489
//! §14.5 to §14.7: after the integrity attributes only the later ones and FINGERPRINT, after
//! FINGERPRINT nothing), which Farside applies as it reads and rtc-stun leaves to its caller.
//! Where they differ in what they accept, nothing is asserted.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run stun_differential -- -max_total_time=30` from the
//! repo root.
#![no_main]

use farside_stun::Message;
use libfuzzer_sys::fuzz_target;

const MESSAGE_INTEGRITY: u16 = 0x0008;
const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
const FINGERPRINT: u16 = 0x8028;

fuzz_target!(|data: &[u8]| {
    let Ok(ours) = Message::parse(data) else {
        return;
    };
    if !ours.has_magic_cookie() {
        return;
    }
    let mut theirs = rtc_stun::message::Message::new();
    if theirs.unmarshal_binary(data).is_err() {
        return;
    }
    assert_eq!(
        ours.message_type().to_u16(),
        theirs.typ.value(),
        "message type"
    );
    assert_eq!(
        ours.transaction_id().0,
        theirs.transaction_id.0,
        "transaction id"
    );
    // rtc-stun reads the pre-RFC 5389 XOR-MAPPED-ADDRESS type 0x8020 as 0x0020; Farside keeps
    // types as they came.
    let legacy = |t: u16| if t == 0x8020 { 0x0020 } else { t };
    let mine: Vec<(u16, &[u8])> = ours
        .attributes()
        .map(|a| (legacy(a.typ), a.value))
        .collect();
    // RFC 8489 §14.5 to §14.7, applied to rtc-stun's list as the spec says (written here
    // from the RFC, not from Farside's code): after MESSAGE-INTEGRITY only
    // MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count, after MESSAGE-INTEGRITY-SHA256 only
    // FINGERPRINT, after FINGERPRINT nothing.
    let (mut mi, mut mi256) = (false, false);
    let mut other: Vec<(u16, &[u8])> = Vec::new();
    for a in &theirs.attributes.0 {
        let t = a.typ.value();
        let counts = match t {
            FINGERPRINT => true,
            MESSAGE_INTEGRITY_SHA256 => !mi256,
            _ => !mi && !mi256,
        };
        if counts {
            other.push((t, a.value.as_slice()));
        }
        if t == FINGERPRINT {
            break;
        }
        mi |= t == MESSAGE_INTEGRITY;
        mi256 |= t == MESSAGE_INTEGRITY_SHA256;
    }
    assert_eq!(mine, other, "attributes");
});
