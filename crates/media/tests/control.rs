//! The ng protocol served from a relay, without sockets: ping, an offer and its answer as the
//! rtpengine module sends them, query, list, statistics, delete, and the errors it answers.

#![allow(clippy::unwrap_used)]

mod common;

use common::Ports;
use farside_media::control::{Handled, One, handle};
use farside_media::ng::bencode::Value;
use farside_media::relay::{MediaPorts, Relay, RelayConfig};
use farside_sdp::Sdp;
use farside_time::Timestamp;

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
        let (reply, handled, _) = handle(&mut One { relay, ports }, now, &datagram);
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
    let (r, _, unknown) = handle(
        &mut One {
            relay: &mut relay,
            ports: &mut ports,
        },
        now,
        &offer,
    );
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
    let (r, h, _) = handle(
        &mut One {
            relay: &mut relay,
            ports: &mut ports,
        },
        now,
        b"d7:command4:pinge",
    );
    assert_eq!((r, h), (None, Handled::Malformed));
}

/// `query` in rtpengine's shape: for each party, its tag, whom it talks with, and per stream the
/// relay port it sends to, where it sends from once learned, what it sent, and the quality
/// Farside reads from the RTP and RTCP: packets lost, jitter, and the round trip between the
/// relay and the party (its RTCP receiver report answering the other side's sender report).
#[test]
fn query_shows_each_partys_stream_counters_endpoint_and_quality() {
    let mut relay = Relay::new(RelayConfig::new("203.0.113.5".parse().unwrap()));
    let mut ports = Ports(30_000);
    let t0 = Timestamp::from_unix_secs(1_800_000_000);
    let ms = |n: u64| t0.checked_add(std::time::Duration::from_millis(n)).unwrap();
    let offer = request(
        "1",
        &[
            ("command", "offer"),
            ("call-id", "q@h"),
            ("from-tag", "alice"),
            ("sdp", SDP),
        ],
        &[("received-from", &["IP4", "198.51.100.7"])],
    );
    let bob_sdp = SDP
        .replace("192.168.1.20", "192.0.2.20")
        .replace("4000", "5000");
    let reply = request(
        "2",
        &[
            ("command", "answer"),
            ("call-id", "q@h"),
            ("from-tag", "alice"),
            ("to-tag", "bob"),
            ("sdp", &bob_sdp),
        ],
        &[],
    );
    for d in [offer, reply] {
        assert_eq!(
            handle(
                &mut One {
                    relay: &mut relay,
                    ports: &mut ports
                },
                t0,
                &d
            )
            .1,
            Handled::Ok
        );
    }
    // Alice sends to the first pair (30002), bob to the second (30004); ten packets each, and
    // alice's packet 4 is lost on the way.
    let rtp = |seq: u16, ssrc: u8| {
        let mut p = vec![0x80, 8];
        p.extend(seq.to_be_bytes());
        p.extend((u32::from(seq) * 160).to_be_bytes());
        p.extend([0, 0, 0, ssrc]);
        p.extend([0xd5; 160]);
        p
    };
    let alice: std::net::SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let bob: std::net::SocketAddr = "192.0.2.20:5000".parse().unwrap();
    for seq in 1..=10u16 {
        let at = ms(20 * u64::from(seq));
        if seq != 4 {
            relay
                .handle_packet(at, 30_002, alice, &rtp(seq, 1))
                .unwrap();
        }
        relay.handle_packet(at, 30_004, bob, &rtp(seq, 2)).unwrap();
    }
    // Alice's sender report passes toward bob at 300 ms; bob's receiver report on it comes
    // back at 400 ms, having held it 20 ms: 80 ms between the relay and bob.
    let mut sr = vec![
        0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0xab, 0xcd, 0x12, 0x34, 0, 0,
    ];
    sr.extend([0; 12]);
    relay
        .handle_packet(ms(300), 30_003, "198.51.100.7:40001".parse().unwrap(), &sr)
        .unwrap();
    let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 2, 0, 0, 0, 1];
    rr.extend([0; 12]);
    rr.extend([0xab, 0xcd, 0x12, 0x34]);
    rr.extend(1310u32.to_be_bytes());
    relay
        .handle_packet(ms(400), 30_005, "192.0.2.20:5001".parse().unwrap(), &rr)
        .unwrap();

    let q = request("3", &[("command", "query"), ("call-id", "q@h")], &[]);
    let (r, h, _) = handle(
        &mut One {
            relay: &mut relay,
            ports: &mut ports,
        },
        ms(500),
        &q,
    );
    assert_eq!(h, Handled::Ok);
    let r = answer(&r.unwrap(), "3");
    let tags = r.get("tags").unwrap();
    let stream = |tag: &str| {
        let party = tags.get(tag).unwrap();
        let Some(Value::List(medias)) = party.get("medias") else {
            panic!("medias of {tag}")
        };
        let Some(Value::List(streams)) = medias[0].get("streams") else {
            panic!("streams of {tag}")
        };
        (party.clone(), streams[0].clone(), streams[1].clone())
    };
    let (a, a_rtp, a_rtcp) = stream("alice");
    let (b, b_rtp, _) = stream("bob");
    assert_eq!(a.get("in dialogue with"), Some(&Value::Bytes(b"bob")));
    assert_eq!(b.get("in dialogue with"), Some(&Value::Bytes(b"alice")));
    assert_eq!(a_rtp.get("local port"), Some(&Value::Int(30_002)));
    assert_eq!(
        a_rtp.get("stats").unwrap().get("packets"),
        Some(&Value::Int(9))
    );
    assert_eq!(
        b_rtp.get("stats").unwrap().get("packets"),
        Some(&Value::Int(10))
    );
    assert_eq!(
        a_rtcp.get("stats").unwrap().get("packets"),
        Some(&Value::Int(1))
    );
    let endpoint = a_rtp.get("endpoint").unwrap();
    assert_eq!(
        (endpoint.get("address"), endpoint.get("port")),
        (
            Some(&Value::Bytes(b"198.51.100.7".as_slice())),
            Some(&Value::Int(40_000))
        )
    );
    fn quality(s: &Value<'static>, key: &str) -> Option<Value<'static>> {
        s.get("quality").unwrap().get(key).cloned()
    }
    assert_eq!(quality(&a_rtp, "packets lost"), Some(Value::Int(1)));
    assert_eq!(quality(&b_rtp, "packets lost"), Some(Value::Int(0)));
    assert_eq!(quality(&b_rtp, "round trip"), Some(Value::Int(80)));
    assert_eq!(quality(&a_rtp, "round trip"), None, "alice sent no report");
}

/// Two relays, as the shell runs one per data-plane worker.
struct Two {
    relays: [Relay; 2],
    ports: [Ports; 2],
}

impl farside_media::control::Shards for Two {
    fn count(&self) -> usize {
        2
    }
    fn with(&mut self, i: usize, f: &mut dyn FnMut(&mut Relay, &mut dyn MediaPorts)) {
        f(&mut self.relays[i], &mut self.ports[i])
    }
}

#[test]
fn calls_spread_over_relays_by_call_id_and_list_statistics_and_the_limit_cover_all() {
    let config = RelayConfig {
        max_calls: 6,
        ..RelayConfig::new("203.0.113.5".parse().unwrap())
    };
    let mut two = Two {
        relays: [Relay::new(config.clone()), Relay::new(config)],
        // Each relay's pairs from its own slice of the range.
        ports: [Ports(30_000), Ports(35_000)],
    };
    let now = Timestamp::from_unix_secs(1_800_000_000);
    let offer = |id: &str| {
        request(
            "o",
            &[
                ("command", "offer"),
                ("call-id", id),
                ("from-tag", "ft"),
                ("sdp", SDP),
            ],
            &[],
        )
    };
    let ids: Vec<String> = (0..6).map(|i| format!("call-{i}@h")).collect();
    for id in &ids {
        let (r, h, _) = handle(&mut two, now, &offer(id));
        assert_eq!(h, Handled::Ok, "{id}: {:?}", answer(&r.unwrap(), "o"));
    }
    let [a, b] = [two.relays[0].calls(), two.relays[1].calls()];
    assert_eq!(a + b, 6);
    assert!(a > 0 && b > 0, "both relays hold calls: {a} and {b}");
    for id in &ids {
        let owner = farside_media::control::shard(id.as_bytes(), 2);
        assert!(two.relays[owner].has_call(id.as_bytes()), "{id}");
    }

    // The limit is the server's: a seventh call is refused whichever relay it would go to,
    // while a re-offer in a call already open is still served.
    let (r, h, _) = handle(&mut two, now, &offer("call-6@h"));
    assert_eq!(h, Handled::Refused);
    assert_eq!(
        answer(&r.unwrap(), "o").get("error-reason"),
        Some(&Value::Bytes(b"Too many calls"))
    );
    assert_eq!(handle(&mut two, now, &offer(&ids[0])).1, Handled::Ok);

    let ask = |two: &mut Two, entries: &[(&str, &str)]| {
        let (r, _, _) = handle(two, now, &request("q", entries, &[]));
        answer(&r.unwrap(), "q")
    };
    let list = ask(&mut two, &[("command", "list")]);
    let Some(Value::List(calls)) = list.get("calls") else {
        panic!("{list:?}")
    };
    let mut listed: Vec<String> = calls
        .iter()
        .map(|c| String::from_utf8(c.as_bytes().unwrap().to_vec()).unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed, ids);
    let stats = ask(&mut two, &[("command", "statistics")]);
    assert_eq!(
        stats
            .get("statistics")
            .and_then(|s| s.get("currentstatistics"))
            .and_then(|s| s.get("sessionsown")),
        Some(&Value::Int(6))
    );

    // Query and delete reach the call's relay.
    for id in &ids {
        let q = ask(&mut two, &[("command", "query"), ("call-id", id)]);
        assert_eq!(q.get("result"), Some(&Value::Bytes(b"ok")), "{id}");
        let d = ask(&mut two, &[("command", "delete"), ("call-id", id)]);
        assert_eq!(d.get("result"), Some(&Value::Bytes(b"ok")), "{id}");
    }
    assert_eq!(two.relays[0].calls() + two.relays[1].calls(), 0);
}
