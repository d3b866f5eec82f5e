//! The ng protocol served from a relay, without sockets: ping, an offer and its answer as the
//! rtpengine module sends them, query, list, statistics, delete, and the errors it answers.

#![allow(clippy::unwrap_used)]

use farside_media::control::{Handled, handle};
use farside_media::ng::bencode::Value;
use farside_media::relay::{MediaPorts, Relay, RelayConfig};
use farside_sdp::Sdp;
use farside_time::Timestamp;

struct Ports(u16);

impl MediaPorts for Ports {
    fn take_pair(&mut self) -> Option<u16> {
        self.0 += 2;
        Some(self.0)
    }
    fn give_back(&mut self, _: u16) {}
}

fn request(cookie: &str, entries: &[(&str, &str)], lists: &[(&str, &[&str])]) -> Vec<u8> {
    let mut d: Vec<(&[u8], Value<'_>)> = entries
        .iter()
        .map(|(k, v)| (k.as_bytes(), Value::Bytes(v.as_bytes())))
        .collect();
    for (k, items) in lists {
        let items = items.iter().map(|i| Value::Bytes(i.as_bytes())).collect();
        d.push((k.as_bytes(), Value::List(items)));
    }
    let mut out = format!("{cookie} ").into_bytes();
    Value::Dict(d).encode(&mut out);
    out
}

/// The reply's dictionary.
fn answer(reply: &[u8], cookie: &str) -> Value<'static> {
    assert!(reply.starts_with(format!("{cookie} ").as_bytes()));
    let owned: &'static [u8] = Box::leak(reply[cookie.len() + 1..].to_vec().into_boxed_slice());
    Value::parse(owned).unwrap()
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

#[test]
fn an_rtpengine_client_pings_offers_answers_queries_lists_and_deletes() {
    let mut relay = Relay::new(RelayConfig::new("203.0.113.5".parse().unwrap()));
    let mut ports = Ports(30_000);
    let now = Timestamp::from_unix_secs(1_800_000_000);
    fn send(
        relay: &mut Relay,
        ports: &mut Ports,
        cookie: &str,
        datagram: Vec<u8>,
    ) -> (Value<'static>, Handled) {
        let now = Timestamp::from_unix_secs(1_800_000_000);
        let (reply, handled, _) = handle(relay, now, &datagram, ports);
        (answer(&reply.unwrap(), cookie), handled)
    }
    let (pong, h) = send(&mut relay, &mut ports, "1", b"1 d7:command4:pinge".to_vec());
    assert_eq!(
        (pong.get("result"), h),
        (Some(&Value::Bytes(b"pong")), Handled::Ok)
    );

    let offer = request(
        "2",
        &[
            ("command", "offer"),
            ("call-id", "c@h"),
            ("from-tag", "ft"),
            ("sdp", SDP),
            ("ICE", "remove"),
        ],
        &[
            ("flags", &["trust-address", "no-such-flag"]),
            ("replace", &["origin", "session-connection"]),
            ("received-from", &["IP4", "198.51.100.7"]),
        ],
    );
    let (r, _, unknown) = handle(&mut relay, now, &offer, &mut ports);
    assert_eq!(unknown, 1, "the unknown flag is tolerated and counted");
    let r = answer(&r.unwrap(), "2");
    assert_eq!(r.get("result"), Some(&Value::Bytes(b"ok")));
    let sdp = Sdp::parse(r.get("sdp").unwrap().as_bytes().unwrap()).unwrap();
    let m = sdp.media().next().unwrap();
    assert_eq!(
        m.connection,
        farside_sdp::Connection::Ip("203.0.113.5".parse().unwrap())
    );
    assert_eq!(m.port, 30_004, "bob sends to the second pair");

    let reply = request(
        "3",
        &[
            ("command", "answer"),
            ("call-id", "c@h"),
            ("from-tag", "ft"),
            ("to-tag", "tt"),
            ("sdp", SDP),
        ],
        &[],
    );
    let (r, h) = send(&mut relay, &mut ports, "3", reply);
    assert_eq!(h, Handled::Ok);
    let sdp = Sdp::parse(r.get("sdp").unwrap().as_bytes().unwrap()).unwrap();
    assert_eq!(
        sdp.media().next().unwrap().port,
        30_002,
        "alice sends to the first pair"
    );

    let (q, _) = send(
        &mut relay,
        &mut ports,
        "4",
        request("4", &[("command", "query"), ("call-id", "c@h")], &[]),
    );
    assert_eq!(q.get("created"), Some(&Value::Int(1_800_000_000)));
    let totals = q.get("totals").unwrap();
    for kind in ["RTP", "RTCP"] {
        for key in ["packets", "bytes", "errors"] {
            assert_eq!(
                totals.get(kind).unwrap().get(key),
                Some(&Value::Int(0)),
                "{kind} {key}"
            );
        }
    }
    let (l, _) = send(
        &mut relay,
        &mut ports,
        "5",
        request("5", &[("command", "list")], &[]),
    );
    assert_eq!(
        l.get("calls"),
        Some(&Value::List(vec![Value::Bytes(b"c@h")]))
    );
    let (s, _) = send(
        &mut relay,
        &mut ports,
        "6",
        request("6", &[("command", "statistics")], &[]),
    );
    let own = s
        .get("statistics")
        .unwrap()
        .get("currentstatistics")
        .unwrap();
    assert_eq!(own.get("sessionsown"), Some(&Value::Int(1)));

    let (d, h) = send(
        &mut relay,
        &mut ports,
        "7",
        request("7", &[("command", "delete"), ("call-id", "c@h")], &[]),
    );
    assert_eq!(
        (d.get("result"), h),
        (Some(&Value::Bytes(b"ok")), Handled::Ok)
    );
    assert_eq!(relay.calls(), 0);

    // Errors, answered with the cookie.
    for (cookie, datagram, reason) in [
        (
            "8",
            request("8", &[("command", "delete"), ("call-id", "c@h")], &[]),
            "Call-ID not found or tags didn't match",
        ),
        (
            "9",
            request(
                "9",
                &[
                    ("command", "answer"),
                    ("call-id", "x"),
                    ("from-tag", "f"),
                    ("sdp", SDP),
                ],
                &[],
            ),
            "Unknown call-id",
        ),
        (
            "10",
            request(
                "10",
                &[
                    ("command", "offer"),
                    ("call-id", "x"),
                    ("from-tag", "f"),
                    ("sdp", "v=1"),
                ],
                &[],
            ),
            "Failed to parse SDP",
        ),
        (
            "11",
            request("11", &[("command", "offer"), ("call-id", "x")], &[]),
            "Incomplete message: call-id, from-tag and sdp are needed",
        ),
        (
            "12",
            request("12", &[("command", "teleport")], &[]),
            "Unrecognized command",
        ),
    ] {
        let (e, h) = send(&mut relay, &mut ports, cookie, datagram);
        assert_eq!(h, Handled::Refused);
        assert_eq!(e.get("result"), Some(&Value::Bytes(b"error")));
        assert_eq!(
            e.get("error-reason"),
            Some(&Value::Bytes(reason.as_bytes()))
        );
    }
    // No cookie: nothing to answer.
    let (r, h, _) = handle(&mut relay, now, b"d7:command4:pinge", &mut ports);
    assert_eq!((r, h), (None, Handled::Malformed));
}
