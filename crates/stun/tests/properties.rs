//! Property tests: typed attributes survive build → parse; parsing arbitrary bytes never
//! panics; MESSAGE-INTEGRITY plus FINGERPRINT notice any changed byte.

use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};

use farside_stun::attributes::*;
use farside_stun::{
    Attribute, Class, Header, Message, MessageBuilder, MessageType, Method, RawAttribute,
    TransactionId,
};
use proptest::prelude::*;

/// An owned stand-in for each typed attribute, so proptest can generate it.
#[derive(Clone, Debug)]
enum Attr {
    Mapped(SocketAddr),
    XorMapped(SocketAddr),
    XorPeer(SocketAddr),
    XorRelayed(SocketAddr),
    ResponseAddress(SocketAddr),
    ChangedAddress(SocketAddr),
    SourceAddress(SocketAddr),
    ReflectedFrom(SocketAddr),
    OtherAddress(SocketAddr),
    ResponseOrigin(SocketAddr),
    AlternateServer(SocketAddr),
    Username(String),
    Realm(String),
    Nonce(String),
    Software(String),
    AlternateDomain(String),
    Password(Vec<u8>),
    ErrorCode(u16, String),
    AddressErrorCode(bool, u16, String),
    Unknown(Vec<u16>),
    ChangeRequest(bool, bool),
    ResponsePort(u16),
    Padding(Vec<u8>),
    ChannelNumber(u16),
    Lifetime(u32),
    Data(Vec<u8>),
    RequestedAddressFamily(bool),
    AdditionalAddressFamily(bool),
    EvenPort(bool),
    RequestedTransport(u8),
    DontFragment,
    ReservationToken([u8; 8]),
    Icmp(u8, u8, u32),
    ConnectionId(u32),
    Priority(u32),
    UseCandidate,
    IceControlled(u64),
    IceControlling(u64),
    Userhash([u8; 32]),
    PasswordAlgorithm(u16, Vec<u8>),
    PasswordAlgorithms(Vec<(u16, Vec<u8>)>),
}

fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::V6
    } else {
        AddressFamily::V4
    }
}

/// Calls `$f(typed_value, $args...)` with the typed attribute for an `Attr`.
macro_rules! with_typed {
    ($attr:expr, $f:ident($($arg:expr),*)) => {
        match $attr {
            Attr::Mapped(a) => $f(MappedAddress(*a), $($arg),*),
            Attr::XorMapped(a) => $f(XorMappedAddress(*a), $($arg),*),
            Attr::XorPeer(a) => $f(XorPeerAddress(*a), $($arg),*),
            Attr::XorRelayed(a) => $f(XorRelayedAddress(*a), $($arg),*),
            Attr::ResponseAddress(a) => $f(ResponseAddress(*a), $($arg),*),
            Attr::ChangedAddress(a) => $f(ChangedAddress(*a), $($arg),*),
            Attr::SourceAddress(a) => $f(SourceAddress(*a), $($arg),*),
            Attr::ReflectedFrom(a) => $f(ReflectedFrom(*a), $($arg),*),
            Attr::OtherAddress(a) => $f(OtherAddress(*a), $($arg),*),
            Attr::ResponseOrigin(a) => $f(ResponseOrigin(*a), $($arg),*),
            Attr::AlternateServer(a) => $f(AlternateServer(*a), $($arg),*),
            Attr::Username(s) => $f(Username(s), $($arg),*),
            Attr::Realm(s) => $f(Realm(s), $($arg),*),
            Attr::Nonce(s) => $f(Nonce(s), $($arg),*),
            Attr::Software(s) => $f(Software(s), $($arg),*),
            Attr::AlternateDomain(s) => $f(AlternateDomain(s), $($arg),*),
            Attr::Password(b) => $f(Password(b), $($arg),*),
            Attr::ErrorCode(code, reason) => $f(ErrorCode { code: *code, reason }, $($arg),*),
            Attr::AddressErrorCode(v6, code, reason) => $f(
                AddressErrorCode { family: family(*v6), code: *code, reason },
                $($arg),*
            ),
            Attr::Unknown(l) => $f(UnknownAttributes::new(l), $($arg),*),
            Attr::ChangeRequest(change_ip, change_port) => $f(
                ChangeRequest { change_ip: *change_ip, change_port: *change_port },
                $($arg),*
            ),
            Attr::ResponsePort(p) => $f(ResponsePort(*p), $($arg),*),
            Attr::Padding(b) => $f(Padding(b), $($arg),*),
            Attr::ChannelNumber(n) => $f(ChannelNumber(*n), $($arg),*),
            Attr::Lifetime(n) => $f(Lifetime(*n), $($arg),*),
            Attr::Data(b) => $f(Data(b), $($arg),*),
            Attr::RequestedAddressFamily(v6) => $f(RequestedAddressFamily(family(*v6)), $($arg),*),
            Attr::AdditionalAddressFamily(v6) => $f(AdditionalAddressFamily(family(*v6)), $($arg),*),
            Attr::EvenPort(reserve) => $f(EvenPort { reserve: *reserve }, $($arg),*),
            Attr::RequestedTransport(p) => $f(RequestedTransport(*p), $($arg),*),
            Attr::DontFragment => $f(DontFragment, $($arg),*),
            Attr::ReservationToken(t) => $f(ReservationToken(*t), $($arg),*),
            Attr::Icmp(t, c, d) => $f(Icmp { icmp_type: *t, icmp_code: *c, error_data: *d }, $($arg),*),
            Attr::ConnectionId(n) => $f(ConnectionId(*n), $($arg),*),
            Attr::Priority(n) => $f(Priority(*n), $($arg),*),
            Attr::UseCandidate => $f(UseCandidate, $($arg),*),
            Attr::IceControlled(n) => $f(IceControlled(*n), $($arg),*),
            Attr::IceControlling(n) => $f(IceControlling(*n), $($arg),*),
            Attr::Userhash(h) => $f(Userhash(*h), $($arg),*),
            Attr::PasswordAlgorithm(algorithm, parameters) => $f(
                PasswordAlgorithm { algorithm: *algorithm, parameters },
                $($arg),*
            ),
            Attr::PasswordAlgorithms(list) => {
                let list: Vec<PasswordAlgorithm<'_>> = list
                    .iter()
                    .map(|(algorithm, parameters)| PasswordAlgorithm {
                        algorithm: *algorithm,
                        parameters,
                    })
                    .collect();
                $f(PasswordAlgorithms::new(&list), $($arg),*)
            }
        }
    };
}

fn add_one<'v, A: Attribute<'v>>(attr: A, b: &mut MessageBuilder<'_>) {
    b.add(&attr).expect("buffer is large enough");
}

fn check_one<'a, A>(want: A, raw: RawAttribute<'a>, header: &Header)
where
    A: Attribute<'a> + PartialEq + Debug,
{
    assert_eq!(raw.typ, A::TYPE);
    assert_eq!(A::decode(raw.value, header), Ok(want));
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn attr() -> impl Strategy<Value = Attr> {
    // The wire has no IPv6 flow label or scope id, so generate addresses without them.
    let addr = || (any::<IpAddr>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port));
    prop_oneof![
        addr().prop_map(Attr::Mapped),
        addr().prop_map(Attr::XorMapped),
        addr().prop_map(Attr::XorPeer),
        addr().prop_map(Attr::XorRelayed),
        addr().prop_map(Attr::ResponseAddress),
        addr().prop_map(Attr::ChangedAddress),
        addr().prop_map(Attr::SourceAddress),
        addr().prop_map(Attr::ReflectedFrom),
        addr().prop_map(Attr::OtherAddress),
        addr().prop_map(Attr::ResponseOrigin),
        addr().prop_map(Attr::AlternateServer),
        text().prop_map(Attr::Username),
        text().prop_map(Attr::Realm),
        text().prop_map(Attr::Nonce),
        text().prop_map(Attr::Software),
        "[a-z0-9.-]{0,60}".prop_map(Attr::AlternateDomain),
        bytes(40).prop_map(Attr::Password),
        (300u16..700, text()).prop_map(|(c, r)| Attr::ErrorCode(c, r)),
        (any::<bool>(), 300u16..700, text()).prop_map(|(f, c, r)| Attr::AddressErrorCode(f, c, r)),
        prop::collection::vec(any::<u16>(), 0..8).prop_map(Attr::Unknown),
        (any::<bool>(), any::<bool>()).prop_map(|(i, p)| Attr::ChangeRequest(i, p)),
        any::<u16>().prop_map(Attr::ResponsePort),
        bytes(64).prop_map(Attr::Padding),
        any::<u16>().prop_map(Attr::ChannelNumber),
        any::<u32>().prop_map(Attr::Lifetime),
        bytes(200).prop_map(Attr::Data),
        any::<bool>().prop_map(Attr::RequestedAddressFamily),
        any::<bool>().prop_map(Attr::AdditionalAddressFamily),
        any::<bool>().prop_map(Attr::EvenPort),
        any::<u8>().prop_map(Attr::RequestedTransport),
        Just(Attr::DontFragment),
        any::<[u8; 8]>().prop_map(Attr::ReservationToken),
        (any::<u8>(), any::<u8>(), any::<u32>()).prop_map(|(t, c, d)| Attr::Icmp(t, c, d)),
        any::<u32>().prop_map(Attr::ConnectionId),
        any::<u32>().prop_map(Attr::Priority),
        Just(Attr::UseCandidate),
        any::<u64>().prop_map(Attr::IceControlled),
        any::<u64>().prop_map(Attr::IceControlling),
        any::<[u8; 32]>().prop_map(Attr::Userhash),
        (any::<u16>(), bytes(9)).prop_map(|(a, p)| Attr::PasswordAlgorithm(a, p)),
        prop::collection::vec((any::<u16>(), bytes(9)), 0..4).prop_map(Attr::PasswordAlgorithms),
    ]
}

/// A message with the given attributes, then optionally MESSAGE-INTEGRITY(-SHA256) and
/// FINGERPRINT, as built into a fresh buffer.
struct Built {
    bytes: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
struct Options {
    cookie: [u8; 4],
    tid: [u8; 12],
    class: u8,
    method: u16,
    padding: u8,
    integrity: bool,
    integrity_sha256: bool,
    fingerprint: bool,
}

fn options() -> impl Strategy<Value = Options> {
    (
        prop_oneof![Just(0x2112_A442u32.to_be_bytes()), any::<[u8; 4]>()],
        any::<[u8; 12]>(),
        0u8..4,
        0u16..0x1000,
        any::<u8>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(cookie, tid, class, method, padding, i, i256, fp)| Options {
                cookie,
                tid,
                class,
                method,
                padding,
                integrity: i,
                integrity_sha256: i256,
                fingerprint: fp,
            },
        )
}

const KEY: &[u8] = b"proptest key";

fn build(attrs: &[Attr], o: &Options) -> Built {
    let class = [
        Class::Request,
        Class::Indication,
        Class::SuccessResponse,
        Class::ErrorResponse,
    ][usize::from(o.class)];
    let header = Header {
        cookie: o.cookie,
        transaction_id: TransactionId(o.tid),
    };
    let mut buf = vec![0u8; 8192];
    let mut b = MessageBuilder::new(&mut buf, MessageType::new(class, Method(o.method)), header)
        .expect("fits");
    b.pad_with(o.padding);
    for a in attrs {
        with_typed!(a, add_one(&mut b));
    }
    if o.integrity {
        b.add_message_integrity(KEY).expect("fits");
    }
    if o.integrity_sha256 {
        b.add_message_integrity_sha256(KEY).expect("fits");
    }
    if o.fingerprint {
        b.add_fingerprint().expect("fits");
    }
    let len = b.finish();
    buf.truncate(len);
    Built { bytes: buf }
}

/// Decodes every attribute type a message may hold; must never panic.
fn read_everything(m: &Message<'_>) {
    macro_rules! read {
        ($($t:ty),*) => { $( let _ = m.attribute::<$t>(); )* };
    }
    read!(
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
        Fingerprint
    );
    if let Some(Ok(list)) = m.attribute::<UnknownAttributes>() {
        let _ = list.iter().count();
    }
    if let Some(Ok(list)) = m.attribute::<PasswordAlgorithms>() {
        let _ = list.iter().count();
    }
    let _ = m.attributes().count();
    let _ = m.unknown_comprehension_required(&[1, 6, 8]).count();
    let _ = m.check_fingerprint();
    let _ = m.verify_integrity(KEY);
    let _ = m.verify_integrity_sha256(KEY);
}

proptest! {
    #[test]
    fn typed_attributes_round_trip(attrs in prop::collection::vec(attr(), 0..12), o in options()) {
        let built = build(&attrs, &o);
        let m = Message::parse(&built.bytes).expect("own output parses");
        prop_assert_eq!(m.len(), built.bytes.len());
        prop_assert_eq!(m.cookie(), o.cookie);
        prop_assert_eq!(m.transaction_id(), TransactionId(o.tid));
        prop_assert_eq!(m.method(), Method(o.method));
        let header = m.header();
        let raws: Vec<RawAttribute<'_>> = m.attributes().collect();
        let trailer = usize::from(o.integrity) + usize::from(o.integrity_sha256)
            + usize::from(o.fingerprint);
        prop_assert_eq!(raws.len(), attrs.len() + trailer);
        for (a, raw) in attrs.iter().zip(&raws) {
            with_typed!(a, check_one(*raw, &header));
        }
        prop_assert_eq!(m.verify_integrity(KEY).is_ok(), o.integrity);
        prop_assert_eq!(m.verify_integrity_sha256(KEY).is_ok(), o.integrity_sha256);
        prop_assert_eq!(m.check_fingerprint().is_ok(), o.fingerprint);
        read_everything(&m);
    }

    #[test]
    fn parse_of_arbitrary_bytes_never_panics(bytes in bytes(600)) {
        if let Ok(m) = Message::parse(&bytes) {
            prop_assert!(m.len() <= bytes.len());
            read_everything(&m);
        }
    }

    #[test]
    fn parse_of_stun_like_bytes_never_panics(
        ty in 0u16..0x4000, body in bytes(300), extra in bytes(8)
    ) {
        // Valid header with a consistent length, so the attribute walk gets exercised.
        let body_len = body.len() & !3;
        let mut bytes = ty.to_be_bytes().to_vec();
        bytes.extend_from_slice(&(body_len as u16).to_be_bytes());
        bytes.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        bytes.extend_from_slice(&body[..body_len]);
        bytes.extend_from_slice(&extra);
        if let Ok(m) = Message::parse(&bytes) {
            read_everything(&m);
        }
    }

    #[test]
    fn integrity_and_fingerprint_notice_any_changed_byte(
        attrs in prop::collection::vec(attr(), 0..6),
        o in options(),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let o = Options { integrity: true, fingerprint: true, ..o };
        let built = build(&attrs, &o);
        let mut bytes = built.bytes;
        let i = index.index(bytes.len());
        bytes[i] ^= flip;
        if let Ok(m) = Message::parse(&bytes) {
            prop_assert!(
                m.verify_integrity(KEY).is_err() || m.check_fingerprint().is_err(),
                "change at byte {} went unnoticed", i
            );
        }
    }

    #[test]
    fn integrity_alone_notices_changes_outside_the_length_field(
        attrs in prop::collection::vec(attr(), 0..6),
        o in options(),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        // The header length is re-derived from the attribute's position (RFC 8489 §14.5), so
        // only FINGERPRINT or the datagram size guards it; every other byte is covered.
        let o = Options { integrity: true, integrity_sha256: false, fingerprint: false, ..o };
        let mut bytes = build(&attrs, &o).bytes;
        let i = index.index(bytes.len());
        prop_assume!(!(2..4).contains(&i));
        bytes[i] ^= flip;
        if let Ok(m) = Message::parse(&bytes) {
            prop_assert!(m.verify_integrity(KEY).is_err(), "change at byte {} went unnoticed", i);
        }
    }
}
