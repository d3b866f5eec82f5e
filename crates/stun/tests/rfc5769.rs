//! RFC 5769 test vectors, both ways: each vector is parsed, its integrity and fingerprint
//! verified and its attributes read; then the same attributes are built again and must give
//! the vector byte for byte.
//!
//! The vectors pad with 0x20 (RFC 5769 §2: "padding ... spaces"), so the rebuilds set the
//! builder's padding byte to 0x20 where the vector does; nothing else is adjusted.

use std::net::SocketAddr;

use farside_stun::attributes::{
    IceControlled, MessageIntegrity, Nonce, Priority, Realm, Software, Userhash, Username,
    XorMappedAddress,
};
use farside_stun::{
    Class, Header, IntegrityError, Message, MessageBuilder, MessageType, Method, TransactionId,
    long_term_key_md5, long_term_key_md5_rfc5389, short_term_key, userhash,
};

const PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
const TID: TransactionId = TransactionId([
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
]);

/// RFC 5769 §2.1: sample request (short-term credentials, ICE attributes).
const REQUEST: &[u8] = &[
    0x00, 0x01, 0x00, 0x58, // Request type and message length
    0x21, 0x12, 0xa4, 0x42, // Magic cookie
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, // Transaction ID
    0x80, 0x22, 0x00, 0x10, // SOFTWARE attribute header
    0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e,
    0x74, // "STUN test client"
    0x00, 0x24, 0x00, 0x04, // PRIORITY attribute header
    0x6e, 0x00, 0x01, 0xff, // ICE priority value
    0x80, 0x29, 0x00, 0x08, // ICE-CONTROLLED attribute header
    0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, // Pseudo-random tie breaker
    0x00, 0x06, 0x00, 0x09, // USERNAME attribute header
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
    0x20, // "evtj:h6vY" + pad
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, // HMAC-SHA1 fingerprint
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT attribute header
    0xe5, 0x7a, 0x3b, 0xcf, // CRC32 fingerprint
];

/// RFC 5769 §2.2: sample IPv4 response.
const RESPONSE_V4: &[u8] = &[
    0x01, 0x01, 0x00, 0x3c, // Response type and message length
    0x21, 0x12, 0xa4, 0x42, // Magic cookie
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, // Transaction ID
    0x80, 0x22, 0x00, 0x0b, // SOFTWARE attribute header
    0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72,
    0x20, // "test vector" + pad
    0x00, 0x20, 0x00, 0x08, // XOR-MAPPED-ADDRESS attribute header
    0x00, 0x01, 0xa1, 0x47, // Address family (IPv4) and xor'd mapped port number
    0xe1, 0x12, 0xa6, 0x43, // Xor'd mapped IPv4 address
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
    0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53,
    0xf0, 0x6b, 0xe7, 0xd7, // HMAC-SHA1 fingerprint
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT attribute header
    0xc0, 0x7d, 0x4c, 0x96, // CRC32 fingerprint
];

/// RFC 5769 §2.3: sample IPv6 response.
const RESPONSE_V6: &[u8] = &[
    0x01, 0x01, 0x00, 0x48, // Response type and message length
    0x21, 0x12, 0xa4, 0x42, // Magic cookie
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, // Transaction ID
    0x80, 0x22, 0x00, 0x0b, // SOFTWARE attribute header
    0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72,
    0x20, // "test vector" + pad
    0x00, 0x20, 0x00, 0x14, // XOR-MAPPED-ADDRESS attribute header
    0x00, 0x02, 0xa1, 0x47, // Address family (IPv6) and xor'd mapped port number
    0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9,
    0xd9, // Xor'd mapped IPv6 address
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, // HMAC-SHA1 fingerprint
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT attribute header
    0xc8, 0xfb, 0x0b, 0x4c, // CRC32 fingerprint
];

/// RFC 5769 §2.4: sample request with long-term authentication.
const LONG_TERM_REQUEST: &[u8] = &[
    0x00, 0x01, 0x00, 0x60, // Request type and message length
    0x21, 0x12, 0xa4, 0x42, // Magic cookie
    0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e, // Transaction ID
    0x00, 0x06, 0x00, 0x12, // USERNAME attribute header
    0xe3, 0x83, 0x9e, 0xe3, 0x83, 0x88, 0xe3, 0x83, 0xaa, 0xe3, 0x83, 0x83, 0xe3, 0x82, 0xaf, 0xe3,
    0x82, 0xb9, 0x00, 0x00, // Username value (18 bytes) and padding (2 bytes)
    0x00, 0x15, 0x00, 0x1c, // NONCE attribute header
    0x66, 0x2f, 0x2f, 0x34, 0x39, 0x39, 0x6b, 0x39, 0x35, 0x34, 0x64, 0x36, 0x4f, 0x4c, 0x33, 0x34,
    0x6f, 0x4c, 0x39, 0x46, 0x53, 0x54, 0x76, 0x79, 0x36, 0x34, 0x73, 0x41, // Nonce
    0x00, 0x14, 0x00, 0x0b, // REALM attribute header
    0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x6f, 0x72, 0x67,
    0x00, // Realm value (11 bytes) and padding (1 byte)
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
    0xf6, 0x70, 0x24, 0x65, 0x6d, 0xd6, 0x4a, 0x3e, 0x02, 0xb8, 0xe0, 0x71, 0x2e, 0x85, 0xc9, 0xa2,
    0x8c, 0xa8, 0x96, 0x66, // HMAC-SHA1 fingerprint
];
const LT_USERNAME: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
const LT_PASSWORD: &str = "The\u{00AD}M\u{00AA}tr\u{2168}";
const LT_NONCE: &str = "f//499k954d6OL34oL9FSTvy64sA";
const LT_REALM: &str = "example.org";

fn key() -> Vec<u8> {
    short_term_key(PASSWORD).expect("ASCII password")
}

fn read<'a, A: farside_stun::Attribute<'a>>(m: &Message<'a>) -> A {
    m.attribute::<A>().expect("present").expect("well-formed")
}

/// Every single-bit flip of a vector must fail the fingerprint or the integrity check (or
/// the parse).
fn assert_tamper_evident(vector: &[u8], key: &[u8]) {
    for i in 0..vector.len() {
        for bit in 0..8 {
            let mut v = vector.to_vec();
            v[i] ^= 1 << bit;
            let Ok(m) = Message::parse(&v) else { continue };
            let fp = m.check_fingerprint();
            let mi = m.verify_integrity(key);
            assert!(
                fp.is_err() || mi.is_err(),
                "flip of byte {i} bit {bit} went unnoticed"
            );
        }
    }
}

#[test]
fn sample_request_decodes_and_verifies() {
    let m = Message::parse(REQUEST).expect("parses");
    assert_eq!(m.len(), REQUEST.len());
    assert_eq!(
        m.message_type(),
        MessageType::new(Class::Request, Method::BINDING)
    );
    assert!(m.has_magic_cookie());
    assert_eq!(m.transaction_id(), TID);
    assert_eq!(m.check_fingerprint(), Ok(()));
    assert_eq!(m.verify_integrity(&key()), Ok(()));
    assert_eq!(m.verify_integrity(b"wrong"), Err(IntegrityError::Mismatch));
    assert_eq!(
        m.verify_integrity_sha256(&key()),
        Err(IntegrityError::Absent)
    );
    assert_eq!(read::<Software>(&m), Software("STUN test client"));
    assert_eq!(read::<Priority>(&m), Priority(0x6e00_01ff));
    assert_eq!(
        read::<IceControlled>(&m),
        IceControlled(0x932f_f9b1_5126_3b36)
    );
    assert_eq!(read::<Username>(&m), Username("evtj:h6vY"));
    let types: Vec<u16> = m.attributes().map(|a| a.typ).collect();
    assert_eq!(types, [0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028]);
    assert_tamper_evident(REQUEST, &key());
}

#[test]
fn sample_request_reencodes_byte_exact() {
    let mut buf = [0u8; 128];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Class::Request, Method::BINDING),
        Header::new(TID),
    )
    .expect("fits");
    b.pad_with(b' ');
    b.add(&Software("STUN test client")).expect("fits");
    b.add(&Priority(0x6e00_01ff)).expect("fits");
    b.add(&IceControlled(0x932f_f9b1_5126_3b36)).expect("fits");
    b.add(&Username("evtj:h6vY")).expect("fits");
    b.add_message_integrity(&key()).expect("fits");
    b.add_fingerprint().expect("fits");
    let len = b.finish();
    assert_eq!(&buf[..len], REQUEST);
}

#[test]
fn sample_responses_decode_and_verify() {
    let cases: [(&[u8], &str); 2] = [
        (RESPONSE_V4, "192.0.2.1:32853"),
        (RESPONSE_V6, "[2001:db8:1234:5678:11:2233:4455:6677]:32853"),
    ];
    for (vector, addr) in cases {
        let m = Message::parse(vector).expect("parses");
        assert_eq!(
            m.message_type(),
            MessageType::new(Class::SuccessResponse, Method::BINDING)
        );
        assert_eq!(m.transaction_id(), TID);
        assert_eq!(m.check_fingerprint(), Ok(()));
        assert_eq!(m.verify_integrity(&key()), Ok(()));
        assert_eq!(read::<Software>(&m), Software("test vector"));
        let want: SocketAddr = addr.parse().expect("addr");
        assert_eq!(read::<XorMappedAddress>(&m), XorMappedAddress(want));
        assert_tamper_evident(vector, &key());
    }
}

#[test]
fn sample_responses_reencode_byte_exact() {
    let request = Message::parse(REQUEST).expect("parses");
    let cases: [(&[u8], &str); 2] = [
        (RESPONSE_V4, "192.0.2.1:32853"),
        (RESPONSE_V6, "[2001:db8:1234:5678:11:2233:4455:6677]:32853"),
    ];
    for (vector, addr) in cases {
        let mut buf = [0u8; 128];
        let mut b =
            MessageBuilder::response_to(&mut buf, &request, Class::SuccessResponse).expect("fits");
        b.pad_with(b' ');
        b.add(&Software("test vector")).expect("fits");
        b.add(&XorMappedAddress(addr.parse().expect("addr")))
            .expect("fits");
        b.add_message_integrity(&key()).expect("fits");
        b.add_fingerprint().expect("fits");
        let len = b.finish();
        assert_eq!(&buf[..len], vector);
    }
}

#[test]
fn long_term_request_decodes_and_verifies() {
    let m = Message::parse(LONG_TERM_REQUEST).expect("parses");
    assert_eq!(read::<Username>(&m), Username(LT_USERNAME));
    assert_eq!(read::<Nonce>(&m), Nonce(LT_NONCE));
    assert_eq!(read::<Realm>(&m), Realm(LT_REALM));
    assert_eq!(m.check_fingerprint(), Err(IntegrityError::Absent));

    // RFC 5389 keys: the password goes through SASLprep, which gives "TheMatrIX".
    let key = long_term_key_md5_rfc5389(LT_USERNAME, LT_REALM, LT_PASSWORD).expect("SASLprep");
    assert_eq!(m.verify_integrity(&key), Ok(()));
    // The RFC 8489 key agrees once the password is in its prepared form.
    let key8489 = long_term_key_md5(LT_USERNAME, LT_REALM, "TheMatrIX").expect("OpaqueString");
    assert_eq!(key8489, key);
    // OpaqueString refuses the soft hyphen (U+00AD, default-ignorable) that SASLprep drops.
    assert!(long_term_key_md5(LT_USERNAME, LT_REALM, LT_PASSWORD).is_err());

    let MessageIntegrity(mac) = read(&m);
    assert_eq!(mac[..4], [0xf6, 0x70, 0x24, 0x65]);
    assert_tamper_evident_integrity_only(LONG_TERM_REQUEST, &key);
}

fn assert_tamper_evident_integrity_only(vector: &[u8], key: &[u8]) {
    // Bytes covered by the HMAC: everything before the MESSAGE-INTEGRITY value.
    let covered = vector.len() - 20;
    for i in 0..covered {
        let mut v = vector.to_vec();
        v[i] ^= 0x01;
        if let Ok(m) = Message::parse(&v) {
            assert!(
                m.verify_integrity(key).is_err(),
                "flip of byte {i} went unnoticed"
            );
        }
    }
}

#[test]
fn long_term_request_reencodes_byte_exact() {
    let key = long_term_key_md5_rfc5389(LT_USERNAME, LT_REALM, LT_PASSWORD).expect("SASLprep");
    let tid = TransactionId([
        0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
    ]);
    let mut buf = [0u8; 128];
    // This vector pads with zeros, the builder's default.
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Class::Request, Method::BINDING),
        Header::new(tid),
    )
    .expect("fits");
    b.add(&Username(LT_USERNAME)).expect("fits");
    b.add(&Nonce(LT_NONCE)).expect("fits");
    b.add(&Realm(LT_REALM)).expect("fits");
    b.add_message_integrity(&key).expect("fits");
    let len = b.finish();
    assert_eq!(&buf[..len], LONG_TERM_REQUEST);
}

/// RFC 8489 Appendix B.1 prints a USERHASH for the same username and realm; the rest of that
/// vector has a known erratum (6268), so only the USERHASH is checked here.
#[test]
fn rfc8489_b1_userhash() {
    let expected = Userhash([
        0x4a, 0x3c, 0xf3, 0x8f, 0xef, 0x69, 0x92, 0xbd, 0xa9, 0x52, 0xc6, 0x78, 0x04, 0x17, 0xda,
        0x0f, 0x24, 0x81, 0x94, 0x15, 0x56, 0x9e, 0x60, 0xb2, 0x05, 0xc4, 0x6e, 0x41, 0x40, 0x7f,
        0x17, 0x04,
    ]);
    assert_eq!(
        Userhash(userhash(LT_USERNAME, LT_REALM).expect("prepared")),
        expected
    );
}
