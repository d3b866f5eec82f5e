//! Feeds arbitrary bytes to the SIP codec: the parser, every accessor of what parses, the
//! stream framer, an edit at the top Via, the NAT helpers and the stateless proxy. Nothing may
//! panic; a parsed message's parts must lie inside it, a framed message must be no longer than
//! the buffer, and whatever the proxy forwards must parse.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run sip_parse -- -max_total_time=30` from the repo root.
#![no_main]

use farside_sip::edge::Edge;
use farside_sip::flow_token::FlowTokens;
use farside_sip::nat::{self, Transport};
use farside_sip::proxy::{Action, Proxy};
use farside_sip::registrar::{Flow, Registrar, RegistrarConfig};
use farside_sip::{Edits, Frame, HeaderName, Message, frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match frame(data) {
        Frame::Message(n) | Frame::Ping(n) | Frame::Pong(n) => assert!(n <= data.len()),
        Frame::Incomplete | Frame::Invalid => {}
    }
    // WebSocket (RFC 7118): the opening handshake and the frames, from any bytes.
    for origins in [
        farside_sip::websocket::Origins::default(),
        farside_sip::websocket::Origins {
            any: false,
            allowed: vec!["https://app.example.com".into()],
        },
    ] {
        let _ = farside_sip::websocket::handshake(data, &origins);
    }
    // A request that does not parse gets 400 written from its lines: what is written parses.
    if let Err(e) = Message::parse(data)
        && let Some(answer) = farside_sip::bad_request::answer(data, e)
    {
        Message::parse(&answer).expect("a 400 parses (answer checks it)");
        // Compact names and bare LFs are written out in full: at most twice, plus a line.
        assert!(
            answer.len() <= 2 * data.len() + 128,
            "no larger than needed"
        );
    }
    let mut reader = farside_sip::websocket::Reader::default();
    let mut at = 0;
    while let Ok((n, _)) = reader.step(&data[at..]) {
        if n == 0 {
            break;
        }
        at += n;
    }
    // Flow tokens from any bytes (a Route's user part): refused or a flow, never a panic.
    let _ = FlowTokens::new([2; 32]).flow(data);
    let Ok(m) = Message::parse(data) else {
        return;
    };
    assert!(m.range_of(m.body()).is_some());
    for h in m.headers() {
        assert!(m.range_of(h.value).is_some());
        assert!(h.line.end <= data.len());
    }
    let via = m.via();
    let _ = (
        via.branch(),
        via.rport(),
        via.received(),
        via.transport(),
        via.port(),
    );
    for v in m.vias() {
        let _ = v.params().iter().count();
    }
    for c in m.contacts() {
        let _ = (
            c.uri().host(),
            c.uri().params().iter().count(),
            c.params().get("expires"),
        );
    }
    for name in [HeaderName::Route, HeaderName::RecordRoute, HeaderName::Path] {
        let _ = m.routes(name).count();
    }
    let _ = (
        m.from().tag(),
        m.to().tag(),
        m.cseq(),
        m.call_id(),
        m.expires(),
        m.max_forwards(),
    );
    let _ = m.option_tags(HeaderName::Supported).count();
    // An edit at the end of the top Via's value keeps the rest of the message as it was.
    if let Some(r) = m.range_of(via.as_bytes()) {
        let mut e = Edits::new(data);
        e.insert(r.end, b";received=192.0.2.1;rport=5060");
        let out = e.apply().expect("one insertion");
        assert_eq!(out.len(), data.len() + 30);
        assert_eq!(&out[..r.end], &data[..r.end]);
        assert_eq!(&out[r.end + 30..], &data[r.end..]);
    }
    let source = "198.51.100.7:4000".parse().expect("literal");
    let _ = nat::detect(&m, source, Transport::Udp);
    let mut e = Edits::new(data);
    nat::fix_via(&m, source, &mut e);
    nat::alias_contacts(&m, source, Transport::Tcp, &mut e);
    if let Ok(out) = e.apply() {
        let _ = Message::parse(&out);
    }
    let registrar = Registrar::new(RegistrarConfig::default(), [1; 32]);
    let me = "192.0.2.1:5060".parse().expect("literal");
    // Over TCP the proxy record-routes twice for a UDP binding: both paths run.
    let proxy = Proxy::new(me, Transport::Tcp, "farside.invalid", 1);
    let tokens = FlowTokens::new([2; 32]);
    let edge = Edge::new(
        me,
        "127.0.0.1:5090".parse().expect("literal"),
        tokens.clone(),
        1,
    );
    let flow = Flow {
        transport: Transport::Udp,
        local: me,
        remote: source,
    };
    for action in [
        proxy.request(&m, &registrar, farside_time::Timestamp::EPOCH),
        proxy.response(&m),
        edge.request(&m, flow),
        edge.response(&m),
    ] {
        if let Action::Forward { bytes, .. } = action {
            Message::parse(&bytes).expect("what the proxy or edge forwards parses");
        }
    }
});
