//! The ng control protocol: an offer as Kamailio's rtpengine module sends it (keys unsorted,
//! the stock config's flags), ping and pong, errors answered with the cookie, and (proptest)
//! any datagram read or refused, every accepted bencode written back byte for byte.

#![allow(clippy::unwrap_used)]

use farside_media::ng::bencode::{self, MAX_DEPTH, MAX_ITEMS, Value};
use farside_media::ng::{Command, Error, Flag, Ice, Replace, Request, reply, reply_error};
use proptest::prelude::*;

/// Bencodes a dictionary of string and string-list values in the order given.
fn dict(entries: &[(&str, &[&str])], single: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, values) in entries {
        let value = if single.contains(k) {
            Value::Bytes(values[0].as_bytes())
        } else {
            Value::List(values.iter().map(|s| Value::Bytes(s.as_bytes())).collect())
        };
        v.push((k.as_bytes(), value));
    }
    let mut out = Vec::new();
    Value::Dict(v).encode(&mut out);
    out
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

#[test]
fn an_offer_as_kamailio_sends_it_is_read_whatever_the_key_order() {
    // rtpengine_manage("SIP-source-address replace-origin replace-session-connection ICE=remove
    // RTP/AVP address-family=IP4 direction=pub direction=priv via-branch=1") as the module
    // encodes it, the command not first, unknown keys and flags among them.
    let single = [
        "sdp",
        "call-id",
        "from-tag",
        "command",
        "ICE",
        "transport-protocol",
        "address family",
        "via-branch",
        "record-call",
    ];
    let body = dict(
        &[
            ("sdp", &[SDP]),
            (
                "flags",
                &["SIP-source-address", "generate-mid", "strict-source"],
            ),
            ("replace", &["origin", "session-connection"]),
            ("ICE", &["remove"]),
            ("transport-protocol", &["RTP/AVP"]),
            ("address family", &["IP4"]),
            ("direction", &["pub", "priv"]),
            ("received-from", &["IP4", "198.51.100.7"]),
            ("call-id", &["a84b4c76e66710@pc33.atlanta.example.com"]),
            ("via-branch", &["z9hG4bK776asdhds"]),
            ("from-tag", &["1928301774"]),
            ("record-call", &["no"]),
            ("command", &["offer"]),
        ],
        &single,
    );
    let mut datagram = b"5432_1 ".to_vec();
    datagram.extend(&body);
    let r = Request::parse(&datagram).unwrap();
    assert_eq!(r.cookie, b"5432_1");
    assert_eq!(r.command, Command::Offer);
    assert_eq!(
        r.call_id,
        Some(&b"a84b4c76e66710@pc33.atlanta.example.com"[..])
    );
    assert_eq!(r.from_tag, Some(&b"1928301774"[..]));
    assert_eq!(r.to_tag, None);
    assert_eq!(r.via_branch, Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(r.sdp, Some(SDP.as_bytes()));
    assert_eq!(r.flags, [Flag::SipSourceAddress, Flag::StrictSource]);
    assert!(r.has(Flag::StrictSource) && !r.has(Flag::TrustAddress));
    assert_eq!(r.unknown_flags, [&b"generate-mid"[..]]);
    assert_eq!(
        r.replace,
        Replace {
            origin: true,
            session_connection: true
        }
    );
    assert_eq!(r.ice, Some(Ice::Remove));
    assert_eq!(r.transport_protocol, Some(&b"RTP/AVP"[..]));
    assert_eq!(r.address_family, Some(&b"IP4"[..]));
    assert_eq!(r.direction, [&b"pub"[..], &b"priv"[..]]);
    assert_eq!(r.received_from, Some("198.51.100.7".parse().unwrap()));
}

#[test]
fn ping_gets_pong_with_its_cookie() {
    let r = Request::parse(b"a1b2 d7:command4:pinge").unwrap();
    assert_eq!((r.cookie, r.command), (&b"a1b2"[..], Command::Ping));
    assert_eq!(
        reply(r.cookie, vec![(b"result", Value::Bytes(b"pong"))]),
        b"a1b2 d6:result4:ponge"
    );
    assert_eq!(
        reply_error(b"a1b2", "Unknown call-id"),
        b"a1b2 d6:result5:error12:error-reason15:Unknown call-ide"
    );
}

#[test]
fn what_is_not_a_request_is_refused_with_the_cookie_when_there_is_one() {
    /// A datagram, the cookie read from it, the error.
    type Case = (&'static [u8], Option<&'static [u8]>, Error);
    let cases: [Case; 8] = [
        (b"", None, Error::NoCookie),
        (b"d7:command4:pinge", None, Error::NoCookie),
        (b" d7:command4:pinge", None, Error::NoCookie),
        (b"c\x01ookie d7:command4:pinge", None, Error::NoCookie),
        (
            b"c1 d7:command4:ping",
            Some(b"c1"),
            Error::Bencode(bencode::Error::Truncated),
        ),
        (b"c1 l4:pinge", Some(b"c1"), Error::NotADictionary),
        (b"c1 d4:call2:ide", Some(b"c1"), Error::NoCommand),
        (
            b"c1 d7:command4:pingex",
            Some(b"c1"),
            Error::Bencode(bencode::Error::Trailing),
        ),
    ];
    for (datagram, cookie, error) in cases {
        assert_eq!(
            Request::parse(datagram).err(),
            Some((cookie, error)),
            "{:?}",
            String::from_utf8_lossy(datagram)
        );
    }
    // An unknown command is read, to be answered with an error.
    let r = Request::parse(b"c2 d7:command4:jumpe").unwrap();
    assert_eq!(r.command, Command::Other(b"jump"));
    let long = format!("{} d7:command4:pinge", "c".repeat(65));
    assert_eq!(
        Request::parse(long.as_bytes()).err(),
        Some((None, Error::NoCookie))
    );
}

#[test]
fn bencode_refuses_what_is_not_canonical_and_bounds_what_it_reads() {
    for (bytes, error) in [
        (&b"i01e"[..], bencode::Error::Malformed),
        (b"i-0e", bencode::Error::Malformed),
        (b"ie", bencode::Error::Malformed),
        (b"01:a", bencode::Error::Malformed),
        (b"5:abc", bencode::Error::Truncated),
        (b"d1:a", bencode::Error::Truncated),
        (b"di1e1:ae", bencode::Error::BadKey),
        (b"x", bencode::Error::Malformed),
        (b"i1234567890123456789e", bencode::Error::Malformed),
        (b"99999999999999999999:", bencode::Error::Malformed),
    ] {
        assert_eq!(
            Value::parse(bytes),
            Err(error),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert_eq!(Value::parse(b"i-42e"), Ok(Value::Int(-42)));
    let deep = format!("{}{}", "l".repeat(MAX_DEPTH + 1), "e".repeat(MAX_DEPTH + 1));
    assert_eq!(Value::parse(deep.as_bytes()), Err(bencode::Error::TooDeep));
    let many = format!("l{}e", "i1e".repeat(MAX_ITEMS));
    assert_eq!(Value::parse(many.as_bytes()), Err(bencode::Error::TooMany));
}

/// Bencode-shaped bytes: reaches the readers more often than random bytes.
fn bencode_like() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just("d".to_string()),
        Just("l".to_string()),
        Just("e".to_string()),
        "i-?[0-9]{1,4}e",
        "[0-3]:[a-z ]{0,3}",
        Just("7:command".to_string()),
        Just("5:offer".to_string()),
        Just("4:ping".to_string()),
        Just("5:flags".to_string()),
    ];
    (prop::collection::vec(token, 0..24), "[a-z0-9]{0,4} ?")
        .prop_map(|(tokens, cookie)| format!("{cookie}{}", tokens.concat()).into_bytes())
}

fn total(bytes: &[u8]) {
    if let Ok(v) = Value::parse(bytes) {
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(out, bytes, "what is read is written back byte for byte");
    }
    if let Ok(r) = Request::parse(bytes) {
        let answer = reply_error(r.cookie, "x");
        let dict = Value::parse(&answer[r.cookie.len() + 1..]).unwrap();
        assert_eq!(dict.get("result"), Some(&Value::Bytes(b"error")));
    }
}

proptest! {
    #[test]
    fn any_datagram_is_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        total(&bytes);
    }

    #[test]
    fn bencode_shaped_datagrams_are_read_or_refused(bytes in bencode_like()) {
        total(&bytes);
        if let Some(space) = bytes.iter().position(|&b| b == b' ') {
            total(&bytes[space + 1..]);
        }
    }
}
