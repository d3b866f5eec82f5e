//! The ng control protocol served from a [`Relay`]: a datagram in, the reply out, with no
//! socket in sight. Kamailio's and OpenSIPS's rtpengine modules switch to Farside by changing
//! only the socket address.
//!
//! Replies are in rtpengine's shape where the modules read them: `result` (`pong`, `ok` or
//! `error` with `error-reason`), `sdp` for offer and answer. `query`, `list` and `statistics`
//! answer a subset of rtpengine's keys (documented per command below).

use std::net::IpAddr;

use farside_sdp::Ice as SdpIce;
use farside_time::Timestamp;

use crate::ng::bencode::Value;
use crate::ng::{Command, Flag, Ice, Request, reply, reply_error};
use crate::relay::{MediaPorts, Passing, Relay, RelayError, SideView};

/// Most Call-IDs `list` returns when the request names no `limit`.
const LIST_LIMIT: usize = 32;

/// What one request did, for the shell's counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Answered with a success.
    Ok,
    /// Answered with an error (an unknown call, no ports, a bad SDP, an unknown command).
    Refused,
    /// Not an ng request, or one without a cookie to answer: dropped.
    Malformed,
}

/// Handles one ng datagram from a control client that sent from `source`: the reply to send
/// back, if any, and what became of it. Unknown flags are tolerated (`unknown_flags` counts
/// them).
pub fn handle(
    relay: &mut Relay,
    now: Timestamp,
    datagram: &[u8],
    ports: &mut dyn MediaPorts,
) -> (Option<Vec<u8>>, Handled, usize) {
    let request = match Request::parse(datagram) {
        Ok(r) => r,
        Err((Some(cookie), e)) => {
            let text = format!("malformed request: {e:?}");
            return (Some(reply_error(cookie, &text)), Handled::Malformed, 0);
        }
        Err((None, _)) => return (None, Handled::Malformed, 0),
    };
    let unknown = request.unknown_flags.len();
    let cookie = request.cookie;
    let refused = |reason: &str| (Some(reply_error(cookie, reason)), Handled::Refused, unknown);
    let ok =
        |entries: Vec<(&[u8], Value<'_>)>| (Some(reply(cookie, entries)), Handled::Ok, unknown);
    let ice = match request.ice {
        Some(Ice::Remove) => SdpIce::Remove,
        _ => SdpIce::Keep,
    };
    let source: Option<IpAddr> = request.received_from;
    match request.command {
        Command::Ping => ok(vec![(b"result", Value::Bytes(b"pong"))]),
        Command::Offer | Command::Answer => {
            let (Some(call_id), Some(from_tag), Some(sdp)) =
                (request.call_id, request.from_tag, request.sdp)
            else {
                return refused("Incomplete message: call-id, from-tag and sdp are needed");
            };
            let passing = Passing {
                call_id,
                from_tag,
                to_tag: request.to_tag,
                sdp,
                source,
                ice,
                handover: request.has(Flag::MediaHandover),
            };
            let result = if request.command == Command::Offer {
                relay.offer(now, &passing, ports)
            } else {
                relay.answer(now, &passing)
            };
            match result {
                Ok(sdp) => ok(vec![
                    (b"result", Value::Bytes(b"ok")),
                    (b"sdp", Value::Bytes(&sdp)),
                ]),
                Err(RelayError::UnknownCall) => refused("Unknown call-id"),
                Err(RelayError::TooManyCalls) => refused("Too many calls"),
                Err(RelayError::NoPorts) => refused("Ran out of ports"),
                Err(RelayError::Sdp(_)) => refused("Failed to parse SDP"),
            }
        }
        Command::Delete => match request.call_id {
            Some(id) if relay.delete(id, ports) => ok(vec![(b"result", Value::Bytes(b"ok"))]),
            _ => refused("Call-ID not found or tags didn't match"),
        },
        // `query`: `result`, `created` (Unix seconds), `totals` with `RTP` and `RTCP`, each
        // `packets`, `bytes` and `errors` of both sides together (what Kamailio's `$rtpstat`
        // reads; the packets dropped, foreign source, nowhere to send or a refused destination,
        // count as RTP errors),
        // and `tags`, rtpengine's per-party view (see [`tags`]).
        Command::Query => {
            let Some(id) = request.call_id else {
                return refused("Unknown call-id");
            };
            let (Some((created, t)), Some(streams)) = (relay.totals(id), relay.streams(id)) else {
                return refused("Unknown call-id");
            };
            let addresses: Vec<[String; 2]> = streams
                .iter()
                .map(|s| s.map(|v| v.endpoint.map(|e| e.ip().to_string()).unwrap_or_default()))
                .collect();
            let kind = |packets: u64, bytes: u64, errors: u64| {
                Value::Dict(vec![
                    (b"packets", Value::Int(int(packets))),
                    (b"bytes", Value::Int(int(bytes))),
                    (b"errors", Value::Int(int(errors))),
                ])
            };
            ok(vec![
                (b"result", Value::Bytes(b"ok")),
                (b"created", Value::Int(int(created.unix_secs()))),
                (
                    b"totals",
                    Value::Dict(vec![
                        (b"RTP", kind(t.packets, t.bytes, t.errors())),
                        (b"RTCP", kind(t.rtcp_packets, t.rtcp_bytes, 0)),
                    ]),
                ),
                (b"tags", tags(&streams, &addresses)),
            ])
        }
        // `list`: `result` and `calls`, at most `limit` Call-IDs.
        Command::List => {
            let calls: Vec<Value<'_>> = relay
                .call_ids()
                .take(LIST_LIMIT)
                .map(Value::Bytes)
                .collect();
            ok(vec![
                (b"result", Value::Bytes(b"ok")),
                (b"calls", Value::List(calls)),
            ])
        }
        // `statistics`: `result` and `currentstatistics.sessionsown`.
        Command::Statistics => ok(vec![
            (b"result", Value::Bytes(b"ok")),
            (
                b"statistics",
                Value::Dict(vec![(
                    b"currentstatistics",
                    Value::Dict(vec![(
                        b"sessionsown",
                        Value::Int(int(relay.calls() as u64)),
                    )]),
                )]),
            ),
        ]),
        Command::Other(_) => refused("Unrecognized command"),
    }
}

/// `tags` of a `query` reply, in rtpengine's shape: for each party with a tag, `tag`, `in
/// dialogue with` (the other's tag), and `medias`, one per stream (`index` from 1), each with
/// `streams`: the RTP one (`local port`, `endpoint` once learned, `stats` with `packets`,
/// `bytes` and `errors` of what the party sent) and the RTCP one. Farside adds the RTP
/// stream's `quality`: `packets lost` (from sequence numbers), `jitter` (RFC 3550, in ms)
/// and, once RTCP measured it, `round trip` (ms, between the relay and the party).
fn tags<'a>(streams: &[[SideView<'a>; 2]], addresses: &'a [[String; 2]]) -> Value<'a> {
    let Some(first) = streams.first() else {
        return Value::Dict(Vec::new());
    };
    let mut parties = Vec::new();
    for side in 0..2 {
        let Some(tag) = first[side].tag else {
            continue;
        };
        let other = first[1 - side].tag.unwrap_or_default();
        let medias = streams
            .iter()
            .zip(addresses)
            .enumerate()
            .map(|(i, (s, address))| {
                let v = &s[side];
                let c = &v.counters;
                let stats = |packets: u64, bytes: u64, errors: u64| {
                    Value::Dict(vec![
                        (b"packets", Value::Int(int(packets))),
                        (b"bytes", Value::Int(int(bytes))),
                        (b"errors", Value::Int(int(errors))),
                    ])
                };
                let mut quality = vec![
                    (b"packets lost".as_slice(), Value::Int(v.quality.lost())),
                    (
                        b"jitter",
                        Value::Int(int(v.quality.jitter().as_millis() as u64)),
                    ),
                ];
                if let Some(rtt) = v.round_trip {
                    quality.push((b"round trip", Value::Int(int(rtt.as_millis() as u64))));
                }
                let mut rtp = vec![
                    (b"local port".as_slice(), Value::Int(i64::from(v.port))),
                    (b"stats", stats(c.packets, c.bytes, c.errors())),
                    (b"quality", Value::Dict(quality)),
                ];
                if let Some(e) = v.endpoint {
                    let family: &[u8] = if e.is_ipv4() { b"IPv4" } else { b"IPv6" };
                    rtp.push((
                        b"endpoint",
                        Value::Dict(vec![
                            (b"family", Value::Bytes(family)),
                            (b"address", Value::Bytes(address[side].as_bytes())),
                            (b"port", Value::Int(i64::from(e.port()))),
                        ]),
                    ));
                }
                let rtcp = vec![
                    (b"local port".as_slice(), Value::Int(i64::from(v.port) + 1)),
                    (b"stats", stats(c.rtcp_packets, c.rtcp_bytes, 0)),
                ];
                Value::Dict(vec![
                    (b"index", Value::Int(i as i64 + 1)),
                    (
                        b"streams",
                        Value::List(vec![Value::Dict(rtp), Value::Dict(rtcp)]),
                    ),
                ])
            })
            .collect();
        parties.push((
            tag,
            Value::Dict(vec![
                (b"tag", Value::Bytes(tag)),
                (b"in dialogue with", Value::Bytes(other)),
                (b"medias", Value::List(medias)),
            ]),
        ));
    }
    Value::Dict(parties)
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
