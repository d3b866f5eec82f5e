//! RFC 4475's torture test messages (in `rfc4475/`): the valid ones parse, the invalid ones are
//! refused for the reason the RFC gives, none panics.

use farside_sip::{HeaderName, Message, ParseError, StartLine};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/rfc4475/{name}.dat", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// §3.1.1 (valid), §3.2 (parses; the transaction layer decides), §3.3 messages whose syntax is
/// sound (the application answers 4xx), §3.4 (RFC 2543 syntax, to be accepted).
const PARSE: &[&str] = &[
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    "badbranch",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
];

/// §3.1.2 (invalid) and the §3.3 messages that break a header every proxy reads, with why.
const REFUSE: &[(&str, ParseError)] = &[
    ("badinv01", ParseError::BadValue(HeaderName::Via)),
    ("clerr", ParseError::BodyTooShort),
    ("ncl", ParseError::BadValue(HeaderName::ContentLength)),
    ("scalar02", ParseError::BadValue(HeaderName::CSeq)),
    ("scalarlg", ParseError::BadValue(HeaderName::CSeq)),
    ("quotbal", ParseError::BadValue(HeaderName::To)),
    ("ltgtruri", ParseError::Uri),
    ("lwsruri", ParseError::StartLine),
    ("lwsstart", ParseError::StartLine),
    ("trws", ParseError::StartLine),
    ("escruri", ParseError::Uri),
    ("baddate", ParseError::BadValue(HeaderName::Other)),
    ("regbadct", ParseError::BadValue(HeaderName::Contact)),
    ("badaspec", ParseError::BadValue(HeaderName::To)),
    ("baddn", ParseError::NoEndOfHeaders),
    ("badvers", ParseError::Version),
    ("mismatch01", ParseError::CSeqMismatch),
    ("mismatch02", ParseError::CSeqMismatch),
    ("bigcode", ParseError::StartLine),
    ("insuf", ParseError::MissingOrRepeated(HeaderName::From)),
    ("multi01", ParseError::MissingOrRepeated(HeaderName::From)),
    (
        "mcl01",
        ParseError::MissingOrRepeated(HeaderName::ContentLength),
    ),
    ("test", ParseError::StartLine),
];

#[test]
fn the_valid_messages_parse() {
    let mut failures = Vec::new();
    for name in PARSE {
        if let Err(e) = Message::parse(&fixture(name)) {
            failures.push(format!("{name}: {e:?}"));
        }
    }
    assert!(failures.is_empty(), "refused: {failures:#?}");
}

#[test]
fn the_invalid_messages_are_refused_for_their_fault() {
    let mut wrong = Vec::new();
    for (name, want) in REFUSE {
        let bytes = fixture(name);
        let got = Message::parse(&bytes);
        if got.as_ref().err() != Some(want) {
            wrong.push(format!(
                "{name}: want {want:?}, got {:?}",
                got.map(|_| "a message")
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn every_fixture_is_listed() {
    let dir = format!("{}/tests/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".dat").map(str::to_owned)
        })
        .collect();
    names.sort();
    let mut listed: Vec<String> = PARSE
        .iter()
        .map(|s| s.to_string())
        .chain(REFUSE.iter().map(|(s, _)| s.to_string()))
        .collect();
    listed.sort();
    assert_eq!(names, listed);
}

#[test]
fn what_the_valid_ones_say_is_read_right() {
    // §3.1.1.1: folded, spaced, compact; Max-Forwards 0068, CSeq 0009.
    let wsinv = fixture("wsinv");
    let m = Message::parse(&wsinv).expect("wsinv");
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.cseq().number, 9);
    assert_eq!(m.vias().count(), 3);
    // §3.1.1.8: a datagram's bytes after Content-Length are not part of the message.
    let dblreq = fixture("dblreq");
    assert_eq!(Message::parse(&dblreq).expect("dblreq").body(), b"");
    // §3.1.1.9: the semicolons are the user's.
    let semiuri = fixture("semiuri");
    let m = Message::parse(&semiuri).expect("semiuri");
    let StartLine::Request { uri, .. } = m.start_line() else {
        panic!("a request")
    };
    assert_eq!(uri.user(), Some(&b"user;par=u%40example.net"[..]));
    // §3.1.1.13: an empty reason phrase.
    let noreason = fixture("noreason");
    assert_eq!(
        Message::parse(&noreason).expect("noreason").start_line(),
        StartLine::Response {
            code: 100,
            reason: b""
        }
    );
    // §3.3.12 / §3.3.13: a parameter after an unbracketed URI is the header's; inside <> the URI's.
    let c1 = fixture("cparam01");
    let m = Message::parse(&c1).expect("cparam01");
    let c = m.contacts().next().expect("Contact");
    assert!(c.params().has("unknownparam") && !c.uri().params().has("unknownparam"));
    let c2 = fixture("cparam02");
    let m = Message::parse(&c2).expect("cparam02");
    let c = m.contacts().next().expect("Contact");
    assert!(!c.params().has("unknownparam") && c.uri().params().has("unknownparam"));
    // §3.1.1.11: a binary body, exactly Content-Length long.
    let mpart = fixture("mpart01");
    let m = Message::parse(&mpart).expect("mpart01");
    assert_eq!(
        Some(m.body().len() as u64),
        m.value(HeaderName::ContentLength)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
    );
}

#[test]
fn mutations_of_every_fixture_never_panic() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for name in PARSE.iter().chain(REFUSE.iter().map(|(n, _)| n)) {
        let original = fixture(name);
        for _ in 0..300 {
            let mut m = original.clone();
            for _ in 0..(next() % 8 + 1) {
                let i = (next() as usize) % m.len();
                match next() % 4 {
                    0 => m[i] = next() as u8,
                    1 => {
                        m.remove(i);
                    }
                    2 => m.insert(i, b"\r\n ;,<>\":@%"[(next() % 11) as usize]),
                    _ => m.truncate(i),
                }
                if m.is_empty() {
                    break;
                }
            }
            let _ = Message::parse(&m);
            let _ = farside_sip::frame(&m);
        }
    }
}
