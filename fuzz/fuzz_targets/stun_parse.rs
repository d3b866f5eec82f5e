//! Parses arbitrary bytes as STUN, reads every attribute, checks integrity with a fixed key,
//! re-encodes every typed attribute and rebuilds the whole message.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run stun_parse -- -max_total_time=30` from the repo root.
#![no_main]

use farside_stun::attributes::*;
use farside_stun::{Message, MessageBuilder, attr_type};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz key";

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(data) else { return };
    assert!(m.len() <= data.len());
    let _ = m.check_fingerprint();
    let _ = m.verify_integrity(KEY);
    let _ = m.verify_integrity_sha256(KEY);
    let _ = m
        .unknown_comprehension_required(&[attr_type::USERNAME])
        .count();

    // Every typed attribute that decodes must encode back to a value that decodes equal.
    macro_rules! reencode {
        ($($t:ident),* $(,)?) => { $(
            if let Some(Ok(a)) = m.attribute::<$t>() {
                let mut buf = vec![0u8; m.len() + 64];
                let mut b = MessageBuilder::new(&mut buf, m.message_type(), m.header())
                    .expect("20 bytes fit");
                if b.add(&a).is_ok() {
                    let n = b.finish();
                    let m2 = Message::parse(&buf[..n]).expect("own output parses");
                    let a2 = m2.attribute::<$t>().expect("present").expect("decodes");
                    assert_eq!(a, a2, "{} does not round-trip", stringify!($t));
                }
            }
        )* };
    }
    reencode!(
        MappedAddress,
        XorMappedAddress,
        XorPeerAddress,
        XorRelayedAddress,
        ResponseAddress,
        ChangedAddress,
        SourceAddress,
        ReflectedFrom,
        OtherAddress,
        ResponseOrigin,
        AlternateServer,
        Username,
        Realm,
        Nonce,
        Software,
        AlternateDomain,
        Password,
        ErrorCode,
        AddressErrorCode,
        UnknownAttributes,
        ChangeRequest,
        ResponsePort,
        Padding,
        ChannelNumber,
        Lifetime,
        Data,
        RequestedAddressFamily,
        AdditionalAddressFamily,
        EvenPort,
        RequestedTransport,
        DontFragment,
        ReservationToken,
        Icmp,
        ConnectionId,
        Priority,
        UseCandidate,
        IceControlled,
        IceControlling,
        Userhash,
        PasswordAlgorithm,
        PasswordAlgorithms,
        MessageIntegrity,
        MessageIntegritySha256,
        Fingerprint,
    );

    // Rebuild from the raw attributes, sign with the fixed key: it must parse back to the same
    // attributes and verify.
    let trailer = [
        attr_type::MESSAGE_INTEGRITY,
        attr_type::MESSAGE_INTEGRITY_SHA256,
        attr_type::FINGERPRINT,
    ];
    let mut buf = vec![0u8; m.len() + 64];
    let mut b = MessageBuilder::new(&mut buf, m.message_type(), m.header()).expect("20 bytes fit");
    for a in m.attributes().filter(|a| !trailer.contains(&a.typ)) {
        b.add_raw(a.typ, a.value)
            .expect("no larger than the original");
    }
    if b.add_message_integrity(KEY).is_err() || b.add_fingerprint().is_err() {
        return; // the original was within 32 bytes of the 64 KiB limit
    }
    let n = b.finish();
    let rebuilt = Message::parse(&buf[..n]).expect("own output parses");
    assert_eq!(rebuilt.message_type(), m.message_type());
    assert_eq!(rebuilt.header(), m.header());
    assert_eq!(rebuilt.verify_integrity(KEY), Ok(()));
    assert_eq!(rebuilt.check_fingerprint(), Ok(()));
    let before = m.attributes().filter(|a| !trailer.contains(&a.typ));
    let after = rebuilt.attributes().filter(|a| !trailer.contains(&a.typ));
    assert!(before.eq(after), "rebuild changed the attributes");
});
