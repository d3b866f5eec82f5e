//! Registrar conversations without sockets: a phone behind a NAT registers with Digest
//! authentication and is bound to the flow its packets came over; refreshes, retransmissions,
//! stale nonces, SIP outbound, `Contact: *`, Min-Expires, limits and expiry.

use std::net::SocketAddr;
use std::time::Duration;

use farside_sip::digest::Algorithm;
use farside_sip::nat::{NatTests, Transport};
use farside_sip::registrar::{Flow, Outcome, Registrar, RegistrarConfig, Users};
use farside_sip::{HeaderName, Message, StartLine};
use farside_time::Timestamp;
use md5::{Digest as _, Md5};
use sha2::Sha256;

const NOW: Timestamp = Timestamp::from_unix_secs(1_800_000_000);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Store;

impl Users for Store {
    fn ha1(&self, realm: &str, user: &str, algorithm: Algorithm) -> Option<Vec<u8>> {
        let password = match user {
            "alice" => "wonderland",
            "bob" => "builder",
            _ => return None,
        };
        let joined = format!("{user}:{realm}:{password}");
        Some(match algorithm {
            Algorithm::Md5 => Md5::digest(joined.as_bytes()).to_vec(),
            Algorithm::Sha256 => Sha256::digest(joined.as_bytes()).to_vec(),
        })
    }
}

fn registrar() -> Registrar {
    Registrar::new(
        RegistrarConfig {
            domain: "example.org".into(),
            realm: "example.org".into(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            flow_timer: Some(25),
            ..RegistrarConfig::default()
        },
        [3; 32],
    )
}

/// The phone's flow: its NAT's public address, to Farside's UDP port.
fn flow(port: u16) -> Flow {
    Flow {
        transport: Transport::Udp,
        local: "192.0.2.10:5060".parse().expect("address"),
        remote: SocketAddr::new("203.0.113.7".parse().expect("ip"), port),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A REGISTER from alice's phone at 192.168.1.20 (behind the NAT).
fn register(cseq: u32, contact: &str, extra: &str, auth: Option<(&str, &str, &str)>) -> Vec<u8> {
    let mut m = format!(
        "REGISTER sip:example.org SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK{cseq};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.org>;tag=ph1\r\n\
To: <sip:alice@example.org>\r\n\
Call-ID: reg-1@192.168.1.20\r\n\
CSeq: {cseq} REGISTER\r\n\
Contact: {contact}\r\n{extra}"
    );
    if let Some((user, password, nonce)) = auth {
        let ha1 = hex(&Md5::digest(
            format!("{user}:example.org:{password}").as_bytes(),
        ));
        let ha2 = hex(&Md5::digest(b"REGISTER:sip:example.org"));
        // The count goes up with the CSeq, as a phone's does with each use of a nonce.
        let nc = format!("{cseq:08x}");
        let response = hex(&Md5::digest(
            format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}").as_bytes(),
        ));
        m.push_str(&format!(
            "Authorization: Digest username=\"{user}\", realm=\"example.org\", nonce=\"{nonce}\", \
uri=\"sip:example.org\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"c0ffee\"\r\n"
        ));
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m.into_bytes()
}

/// `req` from the phone's NAT port `port` at `at`.
fn submit(r: &mut Registrar, req: &[u8], port: u16, at: Timestamp) -> (Vec<u8>, Outcome) {
    r.register(
        &Message::parse(req).expect("a valid REGISTER"),
        flow(port),
        at,
        &Store,
    )
}

/// Alice registers `contact` from NAT port `port`: the challenge (CSeq `cseq`), then her
/// credentials (CSeq `cseq + 1`), answered 200.
fn registered(r: &mut Registrar, cseq: u32, contact: &str, port: u16) {
    let (resp, _) = submit(r, &register(cseq, contact, "", None), port, NOW);
    let n = nonce(&resp);
    let req = register(cseq + 1, contact, "", Some(("alice", "wonderland", &n)));
    assert_eq!(code(&submit(r, &req, port, NOW).0), 200);
}

fn code(resp: &[u8]) -> u16 {
    match Message::parse(resp).expect("a valid response").start_line() {
        StartLine::Response { code, .. } => code,
        StartLine::Request { .. } => 0,
    }
}

/// The nonce of the first challenge in a 401.
fn nonce(resp: &[u8]) -> String {
    let m = Message::parse(resp).expect("parses");
    let v = String::from_utf8_lossy(m.value(HeaderName::WwwAuthenticate).expect("challenge"));
    let start = v.find("nonce=\"").expect("nonce") + 7;
    v[start..start + 48].to_owned()
}

#[test]
fn a_natted_phone_registers_and_is_bound_to_its_flow() {
    let mut r = registrar();
    let contact = "<sip:alice@192.168.1.20:5060;ob>;+sip.instance=\"<urn:uuid:0001>\";reg-id=1";
    let req = register(1, contact, "Expires: 600\r\n", None);
    let (resp, outcome) = submit(&mut r, &req, 40123, NOW);
    assert_eq!(
        (code(&resp), outcome),
        (401, Outcome::Challenged { stale: false })
    );
    let m = Message::parse(&resp).expect("ok");
    let challenges: Vec<_> = m
        .fields(HeaderName::WwwAuthenticate)
        .map(|h| h.value)
        .collect();
    assert_eq!(
        challenges.len(),
        2,
        "SHA-256 and MD5 offered, in the configured order"
    );
    assert!(String::from_utf8_lossy(challenges[0]).contains("algorithm=SHA-256"));
    assert!(String::from_utf8_lossy(challenges[1]).contains("algorithm=MD5"));
    assert!(m.to().tag().is_some());
    assert_eq!(
        m.via().rport(),
        Some(Some(&b"40123"[..])),
        "RFC 3581: the answer's Via says where the request came from"
    );
    assert_eq!(m.via().received(), Some(&b"203.0.113.7"[..]));

    let n = nonce(&resp);
    let req = register(
        2,
        contact,
        "Expires: 600\r\n",
        Some(("alice", "wonderland", &n)),
    );
    let (resp, outcome) = submit(&mut r, &req, 40123, NOW);
    assert_eq!(code(&resp), 200);
    assert_eq!(
        outcome,
        Outcome::Registered {
            aor: "sip:alice@example.org".into(),
            bindings: 1
        }
    );
    let m = Message::parse(&resp).expect("ok");
    let c = m.contacts().next().expect("the binding");
    assert_eq!(c.uri().as_bytes(), b"sip:alice@192.168.1.20:5060;ob");
    assert_eq!(c.params().get("expires"), Some(Some(&b"600"[..])));
    assert_eq!(m.value_of("Require"), Some(&b"outbound"[..]));
    // RFC 5626 §5.4: how often the phone should keep its flow alive.
    assert_eq!(m.value_of("Flow-Timer"), Some(&b"25"[..]));
    let b = r
        .bindings("sip:alice@example.org", NOW)
        .next()
        .expect("bound");
    assert_eq!(b.flow, flow(40123), "bound where the packets came from");
    assert_eq!(
        b.contact, "sip:alice@192.168.1.20:5060;ob",
        "the Contact kept as sent"
    );
    assert!(b.nat.any(NatTests::PRIVATE_CONTACT) && b.nat.natted());

    // The 200 was lost: the same REGISTER again gets 200, and changes nothing.
    let (resp, _) = submit(&mut r, &req, 40123, NOW + secs(1));
    assert_eq!(code(&resp), 200);
    // A sniffed Authorization sent again by someone else, to bind another Contact (qop=auth
    // signs neither the Contact nor the source): the count did not go up, so stale.
    let forged = register(
        2,
        "<sip:alice@198.51.100.66:5060>",
        "Expires: 600\r\n",
        Some(("alice", "wonderland", &n)),
    );
    let (resp, outcome) = submit(&mut r, &forged, 5555, NOW + secs(1));
    assert_eq!(
        (code(&resp), outcome),
        (401, Outcome::Challenged { stale: true })
    );
    // The very same bytes from another source are no retransmission either.
    let (resp, _) = submit(&mut r, &req, 5555, NOW + secs(1));
    assert_eq!(code(&resp), 401);
    // A refresh from a new NAT port (the binding moved): the same instance/reg-id is updated.
    let req = register(
        3,
        contact,
        "Expires: 600\r\n",
        Some(("alice", "wonderland", &n)),
    );
    let (resp, _) = submit(&mut r, &req, 40999, NOW + secs(100));
    assert_eq!(code(&resp), 200);
    let all: Vec<_> = r
        .bindings("sip:alice@example.org", NOW + secs(100))
        .collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].flow, flow(40999));
    // The old nonce with an old count is a replay: challenged afresh (stale), nothing changed.
    let replay = register(
        2,
        contact,
        "Expires: 600\r\n",
        Some(("alice", "wonderland", &n)),
    );
    let (resp, outcome) = submit(&mut r, &replay, 40999, NOW + secs(101));
    assert_eq!(
        (code(&resp), outcome),
        (401, Outcome::Challenged { stale: true })
    );
    // An older CSeq of the same Call-ID, with a fresh nonce, loses: 500 (step 7).
    let (challenge, _) = submit(
        &mut r,
        &register(9, contact, "", None),
        40999,
        NOW + secs(101),
    );
    let fresh = nonce(&challenge);
    let req = register(
        2,
        contact,
        "Expires: 600\r\n",
        Some(("alice", "wonderland", &fresh)),
    );
    let (resp, _) = submit(&mut r, &req, 40999, NOW + secs(101));
    assert_eq!(code(&resp), 500);
    // Every change is reported once for the store; restoring brings the binding back. A new
    // flow is reported at once; a mere refresh (the same contact on the same flow) waits for
    // the housekeeping that asks for refreshes too.
    let changed = r.take_changed(false);
    assert_eq!(changed.len(), 1, "the move to port 40999");
    assert_eq!(changed[0].0, "sip:alice@example.org");
    assert_eq!(changed[0].1.len(), 1);
    let req = register(
        4,
        contact,
        "Expires: 600\r\n",
        Some(("alice", "wonderland", &n)),
    );
    assert_eq!(code(&submit(&mut r, &req, 40999, NOW + secs(100)).0), 200);
    assert!(r.take_changed(false).is_empty(), "a refresh waits");
    let changed = r.take_changed(true);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].1[0].cseq, 4);
    assert!(r.take_changed(true).is_empty());
    let mut restarted = registrar();
    restarted.restore(changed[0].0.clone(), changed[0].1.clone());
    assert_eq!(
        restarted
            .bindings("sip:alice@example.org", NOW + secs(100))
            .next()
            .map(|b| b.flow),
        Some(flow(40999))
    );
    // Expiry.
    assert_eq!(r.expire(NOW + secs(100 + 599)), 0);
    assert_eq!(r.expire(NOW + secs(100 + 600)), 1);
    assert_eq!(
        r.take_changed(true),
        vec![("sip:alice@example.org".to_string(), vec![])]
    );
    assert_eq!(
        r.bindings("sip:alice@example.org", NOW + secs(701)).count(),
        0
    );
}

/// RFC 3261 §8.2.2.3: a Require the registrar cannot honour gets 420 Bad Extension naming
/// the unknown tags in Unsupported, before any challenge; Path and outbound are honoured.
#[test]
fn an_unsupported_require_gets_420_naming_it() {
    let mut r = registrar();
    let req = register(
        1,
        "<sip:alice@192.168.1.20:5060>",
        "Require: path, Foo\r\nRequire: gruu\r\n",
        None,
    );
    let (resp, outcome) = submit(&mut r, &req, 40000, NOW);
    assert_eq!(code(&resp), 420);
    assert_eq!(outcome, Outcome::Refused(420));
    let m = Message::parse(&resp).expect("parses");
    assert_eq!(m.value_of("Unsupported"), Some(&b"Foo, gruu"[..]));
    assert!(resp.len() < req.len(), "no larger than the request");
    // What it supports: challenged as usual.
    let ok = register(
        1,
        "<sip:alice@192.168.1.20:5060>",
        "Require: path, outbound\r\n",
        None,
    );
    assert_eq!(code(&submit(&mut r, &ok, 40000, NOW).0), 401);
}

#[test]
fn nonces_are_reused_until_stale_and_wrong_passwords_fail() {
    let mut r = registrar();
    let req = register(1, "<sip:alice@192.168.1.20>", "", None);
    let (resp, _) = submit(&mut r, &req, 1, NOW);
    let n = nonce(&resp);
    // The same nonce from another source port (an ALG or NAT rebinding): accepted.
    for (i, port) in [(2, 1), (3, 2), (4, 3)] {
        let req = register(
            i,
            "<sip:alice@192.168.1.20>",
            "",
            Some(("alice", "wonderland", &n)),
        );
        let (resp, _) = submit(&mut r, &req, port, NOW + secs(10));
        assert_eq!(code(&resp), 200);
    }
    // Past the nonce lifetime (300 s): 401 with stale=true, and the fresh nonce works.
    let req = register(
        5,
        "<sip:alice@192.168.1.20>",
        "",
        Some(("alice", "wonderland", &n)),
    );
    let (resp, outcome) = submit(&mut r, &req, 3, NOW + secs(301));
    assert_eq!(
        (code(&resp), outcome),
        (401, Outcome::Challenged { stale: true })
    );
    assert!(String::from_utf8_lossy(&resp).contains("stale=true"));
    let fresh = nonce(&resp);
    let req = register(
        6,
        "<sip:alice@192.168.1.20>",
        "",
        Some(("alice", "wonderland", &fresh)),
    );
    let (resp, _) = submit(&mut r, &req, 3, NOW + secs(302));
    assert_eq!(code(&resp), 200);
    // A wrong password: a failure, never "stale".
    let req = register(
        7,
        "<sip:alice@192.168.1.20>",
        "",
        Some(("alice", "guess", &fresh)),
    );
    let (resp, outcome) = submit(&mut r, &req, 3, NOW + secs(303));
    assert_eq!((code(&resp), outcome), (401, Outcome::AuthFailed));
    assert!(!String::from_utf8_lossy(&resp).contains("stale=true"));
    // Bob's good credentials for alice's address of record: 403.
    let req = register(
        8,
        "<sip:alice@192.168.1.20>",
        "",
        Some(("bob", "builder", &fresh)),
    );
    let (resp, _) = submit(&mut r, &req, 3, NOW + secs(304));
    assert_eq!(code(&resp), 403);
}

#[test]
fn star_min_expires_and_limits() {
    let mut r = Registrar::new(
        RegistrarConfig {
            domain: "example.org".into(),
            realm: "example.org".into(),
            max_bindings_per_aor: 2,
            ..RegistrarConfig::default()
        },
        [3; 32],
    );
    let (resp, _) = r.register(
        &Message::parse(&register(1, "<sip:a@10.0.0.1>", "", None)).expect("ok"),
        flow(1),
        NOW,
        &Store,
    );
    let n = nonce(&resp);
    let auth = Some(("alice", "wonderland", n.as_str()));
    let send = |r: &mut Registrar, cseq, contact: &str, extra: &str| {
        let req = register(cseq, contact, extra, auth);
        let (resp, _) = submit(r, &req, 1, NOW + secs(1));
        code(&resp)
    };
    assert_eq!(send(&mut r, 2, "<sip:a@10.0.0.1>;expires=30", ""), 423);
    assert_eq!(send(&mut r, 3, "<sip:a@10.0.0.1>", ""), 200);
    assert_eq!(send(&mut r, 4, "<sip:a@10.0.0.2>", ""), 200);
    assert_eq!(
        send(&mut r, 5, "<sip:a@10.0.0.3>", ""),
        503,
        "a third binding"
    );
    assert_eq!(
        r.bindings("sip:alice@example.org", NOW + secs(1)).count(),
        2
    );
    assert_eq!(
        send(
            &mut r,
            6,
            "<sip:a@10.0.0.4>, <sip:a@10.0.0.5>, <sip:a@10.0.0.6>",
            ""
        ),
        503,
        "more Contacts in one REGISTER than an AOR may hold"
    );
    assert_eq!(send(&mut r, 7, "*", ""), 400, "* needs Expires: 0");
    // RFC 3261 §10.3 step 6: a `*` of the same Call-ID whose CSeq is not above the one that
    // made a binding is aborted whole (a late old `*` must not undo a newer registration).
    let star = |r: &mut Registrar, cseq, nonce: &str| {
        let req = register(
            cseq,
            "*",
            "Expires: 0\r\n",
            Some(("alice", "wonderland", nonce)),
        );
        code(&submit(r, &req, 1, NOW + secs(2)).0)
    };
    let fresh = nonce(&submit(&mut r, &register(8, "*", "", None), 1, NOW + secs(2)).0);
    assert_eq!(
        star(&mut r, 4, &fresh),
        500,
        "older than the binding at CSeq 4"
    );
    assert_eq!(
        r.bindings("sip:alice@example.org", NOW + secs(1)).count(),
        2
    );
    assert_eq!(send(&mut r, 8, "*", "Expires: 0\r\n"), 200);
    assert_eq!(
        r.bindings("sip:alice@example.org", NOW + secs(1)).count(),
        0
    );
    // Path is kept and echoed only for a UA that supports it (RFC 3327 §5.3).
    let with_path = |r: &mut Registrar, cseq, supported: &str| {
        let extra = format!("Path: <sip:edge.example.org;lr>\r\n{supported}");
        let req = register(cseq, "<sip:a@10.0.0.1>", &extra, auth);
        let (resp, _) = submit(r, &req, 1, NOW + secs(2));
        assert_eq!(code(&resp), 200);
        let b = r
            .bindings("sip:alice@example.org", NOW + secs(2))
            .next()
            .expect("bound")
            .clone();
        (
            String::from_utf8_lossy(&resp).contains("Path: <sip:edge"),
            b.path.len(),
        )
    };
    assert_eq!(with_path(&mut r, 20, ""), (false, 0));
    assert_eq!(with_path(&mut r, 21, "Supported: path\r\n"), (true, 1));
    // MD5 not offered: MD5 credentials are challenged again, never accepted.
    let mut sha_only = Registrar::new(
        RegistrarConfig {
            domain: "example.org".into(),
            realm: "example.org".into(),
            algorithms: vec![Algorithm::Sha256],
            ..RegistrarConfig::default()
        },
        [3; 32],
    );
    let req = register(9, "<sip:a@10.0.0.1>", "", auth);
    let (resp, outcome) = sha_only.register(
        &Message::parse(&req).expect("ok"),
        flow(1),
        NOW + secs(1),
        &Store,
    );
    assert_eq!(
        (code(&resp), outcome),
        (401, Outcome::Challenged { stale: false })
    );
    assert!(!String::from_utf8_lossy(&resp).contains("algorithm=MD5"));
    // Another domain is not ours.
    let other = String::from_utf8(register(8, "<sip:a@10.0.0.1>", "", auth))
        .expect("ascii")
        .replace("REGISTER sip:example.org", "REGISTER sip:example.com");
    let (resp, _) = r.register(
        &Message::parse(other.as_bytes()).expect("ok"),
        flow(1),
        NOW,
        &Store,
    );
    assert_eq!(code(&resp), 404);
}

/// The stateless proxy in front of the registrar: a call for alice goes to the flow she
/// registered over, with her Contact as Request-URI, our Via and Record-Route on top; the answer
/// comes back without our Via to where the caller's Via says; in-dialog requests find her flow
/// by her Contact; no open relay, Max-Forwards honoured, ACK never answered.
#[test]
fn the_proxy_routes_calls_over_the_registered_flow() {
    use farside_sip::proxy::{Action, Proxy};
    let mut r = registrar();
    registered(&mut r, 1, "<sip:alice@192.168.1.20:5060>", 40123);
    let me: SocketAddr = "192.0.2.10:5060".parse().expect("address");
    let proxy = Proxy::new(me, Transport::Udp, "example.org", 7);
    let invite = |uri: &str, extra: &str, mf: u8| {
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.5:5070;branch=z9hG4bKc1;received=198.51.100.5;rport=5071\r\n\
Max-Forwards: {mf}\r\nFrom: <sip:carol@198.51.100.5>;tag=c\r\nTo: <sip:alice@example.org>\r\nCall-ID: call-1\r\n\
CSeq: 1 INVITE\r\nContact: <sip:carol@198.51.100.5:5070>\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    let req = invite("sip:alice@example.org", "", 70);
    let Action::Forward {
        bytes, from, to, ..
    } = proxy.request(
        &Message::parse(req.as_bytes()).expect("ok"),
        &r,
        NOW + secs(1),
    )
    else {
        panic!("forwarded")
    };
    assert_eq!((from, to), (flow(40123).local, flow(40123).remote));
    let fwd = Message::parse(&bytes).expect("a valid request");
    let StartLine::Request { uri, .. } = fwd.start_line() else {
        panic!("a request")
    };
    assert_eq!(
        uri.as_bytes(),
        b"sip:alice@192.168.1.20:5060",
        "her Contact as sent"
    );
    assert_eq!(fwd.via().host(), b"192.0.2.10");
    assert_eq!(fwd.vias().count(), 2);
    assert_eq!(fwd.max_forwards(), Some(69));
    assert_eq!(
        fwd.value(HeaderName::RecordRoute),
        Some(&b"<sip:192.0.2.10:5060;lr>"[..])
    );
    // Her 200 comes back over her flow: our Via off, on to the caller's received/rport.
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nVia: SIP/2.0/UDP 198.51.100.5:5070;branch=z9hG4bKc1;received=198.51.100.5;rport=5071\r\n\
Record-Route: <sip:192.0.2.10:5060;lr>\r\nFrom: <sip:carol@198.51.100.5>;tag=c\r\nTo: <sip:alice@example.org>;tag=a\r\n\
Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.168.1.20:5060>\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(fwd.via().as_bytes())
    );
    let Action::Forward { bytes, to, .. } =
        proxy.response(&Message::parse(ok.as_bytes()).expect("ok"))
    else {
        panic!("forwarded back")
    };
    assert_eq!(
        to,
        "198.51.100.5:5071".parse::<SocketAddr>().expect("address")
    );
    let back = Message::parse(&bytes).expect("a valid response");
    assert_eq!(back.vias().count(), 1);
    assert_eq!(back.via().host(), b"198.51.100.5");
    // The caller's ACK, routed by our Record-Route to her Contact: found by her flow.
    let ack = invite(
        "sip:alice@192.168.1.20:5060",
        "Route: <sip:192.0.2.10:5060;lr>\r\n",
        70,
    )
    .replace("INVITE sip", "ACK sip")
    .replace("1 INVITE", "1 ACK");
    let Action::Forward { bytes, to, .. } = proxy.request(
        &Message::parse(ack.as_bytes()).expect("ok"),
        &r,
        NOW + secs(2),
    ) else {
        panic!("forwarded")
    };
    assert_eq!(to, flow(40123).remote);
    assert!(
        Message::parse(&bytes)
            .expect("ok")
            .value(HeaderName::Route)
            .is_none(),
        "our Route is off"
    );
    // No open relay; Max-Forwards 0; unknown users; an ACK is never answered.
    let answer = |req: &str| match proxy.request(
        &Message::parse(req.as_bytes()).expect("ok"),
        &r,
        NOW + secs(3),
    ) {
        Action::Respond(b) | Action::Answer(b) => code(&b),
        Action::Forward { .. } => 1,
        Action::Drop => 0,
    };
    assert_eq!(answer(&invite("sip:alice@elsewhere.example", "", 70)), 403);
    // OPTIONS for the server itself is answered here, even with Max-Forwards 0.
    let options = invite("sip:example.org", "", 0)
        .replace("INVITE sip", "OPTIONS sip")
        .replace("1 INVITE", "1 OPTIONS");
    assert_eq!(answer(&options), 200);
    assert_eq!(answer(&invite("sip:alice@example.org", "", 0)), 483);
    assert_eq!(answer(&invite("sip:dave@example.org", "", 70)), 480);
    let stray_ack = invite("sip:dave@example.org", "", 70)
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK");
    assert_eq!(answer(&stray_ack), 0);
}

/// Across transports (a caller on TCP, alice registered over UDP): the Via names the transport
/// the request leaves over, Farside record-routes twice (RFC 5658), and a request routed by
/// both of those Routes loses both (not forwarded to Farside itself).
#[test]
fn the_proxy_record_routes_twice_across_transports() {
    use farside_sip::proxy::{Action, Proxy};
    let mut r = registrar();
    registered(&mut r, 1, "<sip:alice@192.168.1.20:5060>", 40123);
    let me: SocketAddr = "192.0.2.10:5060".parse().expect("address");
    let over_tcp = Proxy::new(me, Transport::Tcp, "example.org", 7);
    let req = "INVITE sip:alice@example.org SIP/2.0\r\nVia: SIP/2.0/TCP 198.51.100.5:5070;branch=z9hG4bKt1;received=198.51.100.5;rport=40000\r\n\
Max-Forwards: 70\r\nFrom: <sip:carol@example.org>;tag=c\r\nTo: <sip:alice@example.org>\r\nCall-ID: call-t\r\n\
CSeq: 1 INVITE\r\nContact: <sip:carol@198.51.100.5:5070;transport=tcp>\r\nContent-Length: 0\r\n\r\n";
    let Action::Forward {
        bytes, transport, ..
    } = over_tcp.request(
        &Message::parse(req.as_bytes()).expect("ok"),
        &r,
        NOW + secs(1),
    )
    else {
        panic!("forwarded")
    };
    assert_eq!(transport, Transport::Udp, "alice's flow");
    let fwd = Message::parse(&bytes).expect("valid");
    assert_eq!(fwd.via().transport(), b"UDP");
    let rr: Vec<_> = fwd
        .routes(HeaderName::RecordRoute)
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .collect();
    assert_eq!(
        rr,
        [
            "<sip:192.0.2.10:5060;lr>",
            "<sip:192.0.2.10:5060;transport=tcp;lr>"
        ]
    );
    // Alice's BYE along her route set (the reverse of the caller's): both of ours come off
    // and it goes to the caller's Contact over TCP.
    let bye = "BYE sip:carol@198.51.100.5:5070;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKb1;received=203.0.113.7;rport=40123\r\n\
Route: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.10:5060;transport=tcp;lr>\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=a\r\nTo: <sip:carol@example.org>;tag=c\r\nCall-ID: call-t\r\n\
CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    let over_udp = Proxy::new(me, Transport::Udp, "example.org", 7);
    let Action::Forward {
        bytes,
        transport,
        to,
        ..
    } = over_udp.request(
        &Message::parse(bye.as_bytes()).expect("ok"),
        &r,
        NOW + secs(2),
    )
    else {
        panic!("forwarded")
    };
    assert_eq!(
        (transport, to),
        (
            Transport::Tcp,
            "198.51.100.5:5070".parse::<SocketAddr>().expect("address")
        )
    );
    let fwd = Message::parse(&bytes).expect("valid");
    assert!(fwd.value(HeaderName::Route).is_none(), "both Routes off");
    assert_eq!(fwd.via().transport(), b"TCP");
}

/// Keep-alives: every NATed binding is pinged once per interval over its flow, at its own
/// phase; an answer (any) keeps it; `max_failures` missed SIP pings in a row drop it.
#[test]
fn keepalives_ping_each_natted_binding_once_per_interval_and_drop_the_silent() {
    use farside_sip::keepalive::{KeepaliveConfig, Keepalives, Method};
    let mut r = registrar();
    let (resp, _) = r.register(
        &Message::parse(&register(1, "<sip:alice@192.168.1.20:5060>", "", None)).expect("ok"),
        flow(40123),
        NOW,
        &Store,
    );
    let n = nonce(&resp);
    let req = register(
        2,
        "<sip:alice@192.168.1.20:5060>, <sip:alice@192.168.1.21:5060>",
        "",
        Some(("alice", "wonderland", &n)),
    );
    let (resp, _) = submit(&mut r, &req, 40123, NOW);
    assert_eq!(code(&resp), 200);
    let config = KeepaliveConfig {
        interval_ms: 10_000,
        method: Method::Options,
        from: "sip:keepalive@example.org".into(),
        max_failures: 3,
        all_contacts: false,
    };
    let mut k = Keepalives::new(config.clone(), 99);
    let t0 = NOW;
    assert!(
        k.poll(t0, &r).pings.is_empty(),
        "the first call sets the clock"
    );
    // Over 10 s in 100 ms steps, each of the two bindings is pinged exactly once.
    let mut pings = Vec::new();
    for step in 1..=100 {
        pings.extend(k.poll(t0 + ms(step * 100), &r).pings);
    }
    assert_eq!(pings.len(), 2, "{pings:?}");
    for p in &pings {
        assert_eq!(p.flow, flow(40123), "over the registered flow");
        let m = Message::parse(&p.bytes).expect("a valid OPTIONS");
        assert_eq!(m.method().0, b"OPTIONS");
        assert_eq!(m.via().host(), b"192.0.2.10");
    }
    // One binding answers (with anything, here 200), the other never does.
    let answer = |ping: &[u8]| {
        let m = Message::parse(ping).expect("ok");
        farside_sip::response(&m, 200, "OK", "p", &[])
    };
    let ok = answer(&pings[0].bytes);
    assert!(k.answered(&Message::parse(&ok).expect("ok")));
    assert!(!k.answered(&Message::parse(&ok).expect("ok")), "once");
    let answered_contact = String::from_utf8_lossy(
        Message::parse(&pings[0].bytes)
            .expect("ok")
            .to()
            .uri()
            .as_bytes(),
    )
    .into_owned();
    let mut unreachable = Vec::new();
    for step in 101..=400 {
        let round = k.poll(t0 + ms(step * 100), &r);
        for p in &round.pings {
            let m = Message::parse(&p.bytes).expect("ok");
            if m.to().uri().as_bytes() == answered_contact.as_bytes() {
                let ok = answer(&p.bytes);
                assert!(k.answered(&Message::parse(&ok).expect("ok")));
            }
        }
        // The missed count goes to the registrar (and from there to the store).
        for (aor, contact, missed) in &round.missed {
            assert!(r.set_keepalive_failures(aor, contact, *missed));
        }
        unreachable.extend(round.unreachable);
    }
    assert_eq!(unreachable.len(), 1, "{unreachable:?}");
    assert_ne!(unreachable[0].1, answered_contact, "the silent one");
    // A restart (a new scheduler) resumes the count kept with the binding: after 2 misses
    // kept, one more makes it unreachable.
    assert!(r.set_keepalive_failures(&unreachable[0].0, &unreachable[0].1, 2));
    let mut resumed = Keepalives::new(config.clone(), 99);
    resumed.poll(t0, &r);
    let mut again = Vec::new();
    for step in 1..=200 {
        again.extend(resumed.poll(t0 + ms(step * 100), &r).unreachable);
    }
    assert!(
        again.iter().any(|u| u.1 == unreachable[0].1),
        "one miss after the restart is the third: {again:?}"
    );
    assert!(r.remove_binding(&unreachable[0].0, &unreachable[0].1));
    assert_eq!(
        r.bindings("sip:alice@example.org", NOW + secs(40)).count(),
        1
    );
    // CRLF pings need no answer; a binding with a public Contact seen where it says is not
    // pinged unless all contacts are.
    let mut crlf = Keepalives::new(
        KeepaliveConfig {
            method: Method::Crlf,
            ..config.clone()
        },
        1,
    );
    crlf.poll(t0, &r);
    let pings: Vec<_> = (1..=100)
        .flat_map(|s| crlf.poll(t0 + ms(s * 100), &r).pings)
        .collect();
    assert_eq!(pings.len(), 1);
    assert_eq!(pings[0].bytes, b"\r\n\r\n");
}

/// A flood of wrong passwords from one address: after `auth_failures_per_minute` failures its
/// REGISTERs go unanswered for the rest of the minute; another address is still served.
#[test]
fn failed_authentications_are_rate_limited_per_source() {
    let mut r = Registrar::new(
        RegistrarConfig {
            domain: "example.org".into(),
            realm: "example.org".into(),
            auth_failures_per_minute: 5,
            ..RegistrarConfig::default()
        },
        [3; 32],
    );
    let (resp, _) = submit(&mut r, &register(1, "<sip:a@10.0.0.1>", "", None), 1, NOW);
    let n = nonce(&resp);
    let mut outcomes = Vec::new();
    for cseq in 2..12 {
        let req = register(cseq, "<sip:a@10.0.0.1>", "", Some(("alice", "guess", &n)));
        outcomes.push(submit(&mut r, &req, 1, NOW + secs(1)).1);
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::AuthFailed)
            .count(),
        5
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::RateLimited)
            .count(),
        5
    );
    // Even the right password is not checked from there for now.
    let good = register(
        20,
        "<sip:a@10.0.0.1>",
        "",
        Some(("alice", "wonderland", &n)),
    );
    assert_eq!(
        submit(&mut r, &good, 1, NOW + secs(2)).1,
        Outcome::RateLimited
    );
    // Another address is served; the first again a minute later.
    let other = Flow {
        remote: "203.0.113.99:5060".parse().expect("address"),
        ..flow(1)
    };
    let (resp, _) = r.register(
        &Message::parse(&good).expect("ok"),
        other,
        NOW + secs(2),
        &Store,
    );
    assert_eq!(code(&resp), 200);
    let good = register(
        21,
        "<sip:a@10.0.0.1>",
        "",
        Some(("alice", "wonderland", &n)),
    );
    let (resp, _) = submit(&mut r, &good, 1, NOW + secs(62));
    assert_eq!(code(&resp), 200);
}

/// The stateful INVITE path: alice has two phones (two contacts, two NAT flows). The caller's
/// INVITE gets 100 Trying at once and goes to both, each with a branch of its own; its
/// retransmission is absorbed; a busy phone's 486 is acknowledged here and kept back; the other
/// phone's 180 and 200 go up. A CANCEL gets 200 and cancels the branches still ringing; with
/// no answer at all, Timer B ends in 408.
#[test]
fn the_stateful_proxy_forks_absorbs_retransmissions_and_answers_cancel() {
    use farside_sip::proxy::Proxy;
    use farside_sip::transaction::{Transactions, Transmit};
    let mut r = registrar();
    // Two phones register (each its own contact and NAT port).
    registered(&mut r, 1, "<sip:alice@192.168.1.20:5060>", 40123);
    registered(&mut r, 3, "<sip:alice@192.168.1.21:5060>", 40124);
    let me: SocketAddr = "192.0.2.10:5060".parse().expect("address");
    let caller: SocketAddr = "198.51.100.5:5071".parse().expect("address");
    let source = (Transport::Udp, me, caller);
    let proxy = Proxy::new(me, Transport::Udp, "example.org", 7);
    let invite = |branch: &str| {
        format!(
            "INVITE sip:alice@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.5:5070;branch={branch};received=198.51.100.5;rport=5071\r\n\
Max-Forwards: 70\r\nFrom: <sip:carol@example.org>;tag=c\r\nTo: <sip:alice@example.org>\r\nCall-ID: call-{branch}\r\n\
CSeq: 1 INVITE\r\nContact: <sip:carol@198.51.100.5:5070>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let status = |p: &Transmit| code(&p.bytes);
    let mut t = Transactions::new(100);
    let req = invite("z9hG4bKa");
    let msg = Message::parse(req.as_bytes()).expect("ok");
    let out = t.request(&msg, source, NOW + ms(0), || {
        proxy.fork(&msg, &r, NOW + secs(1), 8)
    });
    assert_eq!(out.len(), 3, "100 Trying and two forks");
    assert_eq!((status(&out[0]), out[0].to), (100, caller));
    let forks: Vec<_> = out[1..].to_vec();
    let branch_of = |p: &Transmit| {
        let m = Message::parse(&p.bytes).expect("ok");
        String::from_utf8_lossy(m.via().branch().expect("branch")).into_owned()
    };
    assert_ne!(branch_of(&forks[0]), branch_of(&forks[1]));
    assert_eq!(
        [forks[0].to.port(), forks[1].to.port()]
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        [40123, 40124].into_iter().collect()
    );
    // The caller's retransmission: the 100 again, nothing forwarded.
    let again = t.request(&msg, source, NOW + ms(500), || panic!("not routed again"));
    assert_eq!(again.iter().map(status).collect::<Vec<_>>(), [100]);
    // Responses from the phones (each to its branch; the stateless proxy pops our Via).
    let answer = |fork: &Transmit, code: u16, to_tag: &str| {
        let m = Message::parse(&fork.bytes).expect("ok");
        farside_sip::response(&m, code, "X", to_tag, &[])
    };
    let busy = answer(&forks[1], 486, "b2");
    let m = Message::parse(&busy).expect("ok");
    let out = t
        .response(&m, proxy.response(&m), NOW + ms(600))
        .expect("ours");
    assert_eq!(out.len(), 1, "only our ACK: {out:?}");
    assert!(out[0].bytes.starts_with(b"ACK "));
    assert_eq!(out[0].to, forks[1].to);
    let ringing = answer(&forks[0], 180, "a1");
    let m = Message::parse(&ringing).expect("ok");
    let out = t
        .response(&m, proxy.response(&m), NOW + ms(700))
        .expect("ours");
    assert_eq!((out.len(), status(&out[0]), out[0].to), (1, 180, caller));
    let ok = answer(&forks[0], 200, "a1");
    let m = Message::parse(&ok).expect("ok");
    let out = t
        .response(&m, proxy.response(&m), NOW + ms(800))
        .expect("ours");
    assert_eq!(out.iter().map(status).collect::<Vec<_>>(), [200]);

    // A second call is cancelled while both ring.
    let req = invite("z9hG4bKb");
    let msg = Message::parse(req.as_bytes()).expect("ok");
    let out = t.request(&msg, source, NOW + ms(1000), || {
        proxy.fork(&msg, &r, NOW + secs(1), 8)
    });
    let forks: Vec<_> = out[1..].to_vec();
    for f in &forks {
        let ringing = answer(f, 180, "r");
        let m = Message::parse(&ringing).expect("ok");
        t.response(&m, proxy.response(&m), NOW + ms(1100));
    }
    let cancel = req
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    let out = t
        .cancel(&Message::parse(cancel.as_bytes()).expect("ok"), source)
        .expect("matches the INVITE");
    assert_eq!(status(&out[0]), 200);
    assert_eq!(out[0].to, caller);
    assert_eq!(
        out.iter()
            .filter(|p| p.bytes.starts_with(b"CANCEL "))
            .count(),
        2
    );
    // Both answer 487: each is acknowledged, one 487 goes up when the last is in.
    let terminated = answer(&forks[0], 487, "x");
    let m = Message::parse(&terminated).expect("ok");
    let out = t
        .response(&m, proxy.response(&m), NOW + ms(1200))
        .expect("ours");
    assert!(out.iter().all(|p| p.bytes.starts_with(b"ACK ")));
    let terminated = answer(&forks[1], 487, "y");
    let m = Message::parse(&terminated).expect("ok");
    let out = t
        .response(&m, proxy.response(&m), NOW + ms(1300))
        .expect("ours");
    assert_eq!(
        out.iter()
            .filter(|p| p.to == caller)
            .map(status)
            .collect::<Vec<_>>(),
        [487]
    );
    // The caller's ACK for that 487 ends here.
    let ack = req
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK");
    assert!(t.ack(&Message::parse(ack.as_bytes()).expect("ok")));

    // A third call nobody answers: retransmitted over UDP, then 408 at Timer B.
    let req = invite("z9hG4bKc");
    let msg = Message::parse(req.as_bytes()).expect("ok");
    t.request(&msg, source, NOW + ms(2000), || {
        proxy.fork(&msg, &r, NOW + secs(1), 8)
    });
    let resent = t.poll(NOW + ms(2500));
    assert_eq!(resent.len(), 2, "Timer A: both branches again after 500 ms");
    let late = t.poll(NOW + ms(2000 + 32_000));
    assert_eq!(
        late.iter()
            .filter(|p| p.to == caller)
            .map(status)
            .collect::<Vec<_>>(),
        [408]
    );
    // Only Farside's own refusals count as such: the 408, not the phones' 486 and 487s.
    assert_eq!(t.take_refusals(), [408]);
    assert!(t.take_refusals().is_empty());

    // A MESSAGE (non-INVITE): no 100, one target, the caller's retransmission absorbed, the
    // phone's 200 forwarded and given again to a later retransmission.
    let message = invite("z9hG4bKm")
        .replace("INVITE sip", "MESSAGE sip")
        .replace("1 INVITE", "1 MESSAGE");
    let msg = Message::parse(message.as_bytes()).expect("ok");
    let out = t.request(&msg, source, NOW + ms(3000), || {
        vec![proxy.request(&msg, &r, NOW + secs(1))]
    });
    assert_eq!(out.len(), 1);
    assert!(out[0].bytes.starts_with(b"MESSAGE "));
    let fwd = out[0].clone();
    assert!(
        t.request(&msg, source, NOW + ms(3100), || panic!("not again"))
            .is_empty()
    );
    let ok = answer(&fwd, 200, "m");
    let m = Message::parse(&ok).expect("ok");
    let up = t
        .response(&m, proxy.response(&m), NOW + ms(3200))
        .expect("ours");
    assert_eq!((up.len(), status(&up[0]), up[0].to), (1, 200, caller));
    let again = t.request(&msg, source, NOW + ms(3300), || panic!("not again"));
    assert_eq!(again.iter().map(status).collect::<Vec<_>>(), [200]);
    // An unanswered MESSAGE: resent by Timer E up to T2, and no 408 at Timer F (RFC 4320).
    let quiet = invite("z9hG4bKq")
        .replace("INVITE sip", "MESSAGE sip")
        .replace("1 INVITE", "1 MESSAGE");
    let msg = Message::parse(quiet.as_bytes()).expect("ok");
    t.request(&msg, source, NOW + ms(40_000), || {
        vec![proxy.request(&msg, &r, NOW + secs(1))]
    });
    let mut resends = 0;
    let mut to_caller = 0;
    for at in (40_100..=80_000).step_by(100) {
        for p in t.poll(NOW + ms(at)) {
            if p.to == caller {
                to_caller += 1;
            } else {
                resends += 1;
            }
        }
    }
    assert!(
        (9..=12).contains(&resends),
        "500, 1000, 2000, then every 4 s for 32 s: {resends}"
    );
    assert_eq!(to_caller, 0, "no 408 for a non-INVITE");
    // Finished transactions are forgotten after a while.
    t.poll(NOW + ms(200_000));
    assert!(t.is_empty());
}
