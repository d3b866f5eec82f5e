//! The ng control protocol served from a [`Relay`]: a datagram in, the reply out, with no
//! socket in sight. Kamailio's and OpenSIPS's rtpengine modules switch to Farside by changing
//! only the socket address.
//!
//! Replies are in rtpengine's shape where the modules read them: `result` (`pong`, `ok` or
//! `error` with `error-reason`), `sdp` for offer and answer. `query`, `list` and `statistics`
//! answer a subset of rtpengine's keys (documented per command below).

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

/// The relays requests are served from: one, or one per data-plane worker, each owning the
/// calls whose Call-ID [`shard`] gives it (so a call's packets, timers and figures stay on
/// one core).
pub trait Shards {
    /// How many relays.
    fn count(&self) -> usize;
    /// Runs `f` on relay `i` with the ports it takes pairs from.
    fn with(&mut self, i: usize, f: &mut dyn FnMut(&mut Relay, &mut dyn MediaPorts));

    /// Calls open in all the relays.
    fn calls(&mut self) -> usize {
        let mut calls = 0;
        for i in 0..self.count() {
            self.with(i, &mut |relay, _| calls += relay.calls());
        }
        calls
    }
}

/// A single relay and its ports.
pub struct One<'a> {
    /// The relay.
    pub relay: &'a mut Relay,
    /// Its ports.
    pub ports: &'a mut dyn MediaPorts,
}

impl Shards for One<'_> {
    fn count(&self) -> usize {
        1
    }

    fn with(&mut self, _: usize, f: &mut dyn FnMut(&mut Relay, &mut dyn MediaPorts)) {
        f(self.relay, self.ports)
    }
}

/// Which of `shards` relays owns the call `call_id` (FNV-1a, stable across runs: a call's
/// requests always reach the relay holding it).
pub fn shard(call_id: &[u8], shards: usize) -> usize {
    let hash = call_id.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % shards.max(1) as u64) as usize
}

/// Handles one ng datagram from a control client: the reply to send back, if any, and what
/// became of it. A call's requests go to the relay [`shard`] names; `list` and `statistics`
/// gather from all, and `max_calls` holds for all together. Unknown flags are tolerated
/// (the third value counts them).
pub fn handle(
    shards: &mut dyn Shards,
    now: Timestamp,
    datagram: &[u8],
) -> (Option<Vec<u8>>, Handled, usize) {
    let request = match Request::parse(datagram) {
        Ok(r) => r,
        Err((Some(cookie), _)) => {
            // A fixed, short reason: whoever reaches the socket draws no more than this.
            return (
                Some(reply_error(cookie, "malformed request")),
                Handled::Malformed,
                0,
            );
        }
        Err((None, _)) => return (None, Handled::Malformed, 0),
    };
    let unknown = request.unknown_flags.len();
    let cookie = request.cookie;
    let ok = |entries: Vec<(&[u8], Value<'_>)>| (reply(cookie, entries), Handled::Ok);
    let (reply, handled) = match request.command {
        Command::Ping => ok(vec![(b"result", Value::Bytes(b"pong"))]),
        // `list`: `result` and `calls`, at most `limit` Call-IDs.
        Command::List => {
            let mut ids: Vec<Vec<u8>> = Vec::new();
            for i in 0..shards.count() {
                shards.with(i, &mut |relay, _| {
                    let room = LIST_LIMIT.saturating_sub(ids.len());
                    ids.extend(relay.call_ids().take(room).map(<[u8]>::to_vec));
                });
            }
            let calls = ids.iter().map(|id| Value::Bytes(id)).collect();
            ok(vec![
                (b"result", Value::Bytes(b"ok")),
                (b"calls", Value::List(calls)),
            ])
        }
        // `statistics`: `result` and `currentstatistics.sessionsown`.
        Command::Statistics => {
            let calls = shards.calls();
            ok(vec![
                (b"result", Value::Bytes(b"ok")),
                (
                    b"statistics",
                    Value::Dict(vec![(
                        b"currentstatistics",
                        Value::Dict(vec![(b"sessionsown", Value::Int(int(calls as u64)))]),
                    )]),
                ),
            ])
        }
        Command::Other(_) => (
            reply_error(cookie, "Unrecognized command"),
            Handled::Refused,
        ),
        _ => {
            let Some(call_id) = request.call_id else {
                let reason = match request.command {
                    Command::Offer | Command::Answer => {
                        "Incomplete message: call-id, from-tag and sdp are needed"
                    }
                    _ => "Unknown call-id",
                };
                return (Some(reply_error(cookie, reason)), Handled::Refused, unknown);
            };
            // Only an offer opens a call; the limit counts every relay's.
            // (One relay checks its own limit; each has the server's.)
            let total =
                (request.command == Command::Offer && shards.count() > 1).then(|| shards.calls());
            let mut out = None;
            shards.with(shard(call_id, shards.count()), &mut |relay, ports| {
                let full = total.is_some_and(|t| t >= relay.max_calls());
                out = Some(if full && !relay.has_call(call_id) {
                    (reply_error(cookie, "Too many calls"), Handled::Refused)
                } else {
                    serve_call(relay, ports, now, &request, call_id)
                });
            });
            out.unwrap_or_else(|| (reply_error(cookie, "Unknown call-id"), Handled::Refused))
        }
    };
    (Some(reply), handled, unknown)
}

/// `offer`, `answer`, `delete` and `query` of the call `call_id`, on the relay that owns it.
fn serve_call(
    relay: &mut Relay,
    ports: &mut dyn MediaPorts,
    now: Timestamp,
    request: &Request<'_>,
    call_id: &[u8],
) -> (Vec<u8>, Handled) {
    let cookie = request.cookie;
    let refused = |reason: &str| (reply_error(cookie, reason), Handled::Refused);
    let ok = |entries: Vec<(&[u8], Value<'_>)>| (reply(cookie, entries), Handled::Ok);
    match request.command {
        Command::Offer | Command::Answer => {
            let (Some(from_tag), Some(sdp)) = (request.from_tag, request.sdp) else {
                return refused("Incomplete message: call-id, from-tag and sdp are needed");
            };
            let passing = Passing {
                call_id,
                from_tag,
                to_tag: request.to_tag,
                sdp,
                source: request.received_from,
                ice: match request.ice {
                    Some(Ice::Remove) => SdpIce::Remove,
                    _ => SdpIce::Keep,
                },
                handover: request.has(Flag::MediaHandover),
                recipient_ipv6: match request.address_family {
                    Some(b"IP6") => Some(true),
                    Some(b"IP4") => Some(false),
                    _ => None,
                },
            };
            let result = if request.command == Command::Offer && request.has(Flag::Echo) {
                relay.echo(now, &passing, ports)
            } else if request.command == Command::Offer {
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
                Err(RelayError::CallIdInUse) => refused("Call-ID in use by another call"),
                Err(RelayError::Sdp(_)) => refused("Failed to parse SDP"),
            }
        }
        Command::Delete if relay.delete(call_id, ports) => {
            ok(vec![(b"result", Value::Bytes(b"ok"))])
        }
        Command::Delete => refused("Call-ID not found or tags didn't match"),
        // `query`: `result`, `created` (Unix seconds), `totals` with `RTP` and `RTCP`, each
        // `packets`, `bytes` and `errors` of both sides together (what Kamailio's `$rtpstat`
        // reads; the packets dropped, foreign source, nowhere to send or a refused destination,
        // count as RTP errors), and `tags`, rtpengine's per-party view (see [`tags`]).
        Command::Query => {
            let (Some((created, t)), Some(streams)) =
                (relay.totals(call_id), relay.streams(call_id))
            else {
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
        _ => refused("Unrecognized command"),
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
