//! An ng request read into what the relay acts on, and replies in rtpengine's shape.

use std::net::IpAddr;

use super::bencode::{self, Value};

/// Longest cookie accepted (Kamailio's are about 20 bytes).
const MAX_COOKIE: usize = 64;

/// What an ng request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `ping`: answered `pong`.
    Ping,
    /// `offer`: an SDP offer to rewrite, opening or updating a call's streams.
    Offer,
    /// `answer`: the SDP answer, completing the streams.
    Answer,
    /// `delete`: the call (or one branch of it) ends.
    Delete,
    /// `query`: a call's streams and their figures.
    Query,
    /// `list`: the calls' Call-IDs.
    List,
    /// `statistics`: the relay's totals.
    Statistics,
    /// Any other command (answered with an error, and counted).
    Other(&'a [u8]),
}

/// A flag of the `flags` list that the relay acts on; others are kept in
/// [`Request::unknown_flags`] (tolerated and counted, as rtpengine does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// `SIP-source-address`: use the SIP message's source, not the SDP's address.
    SipSourceAddress,
    /// `trust-address`: use the SDP's address (rtpengine's default since 3.8).
    TrustAddress,
    /// `symmetric`: the endpoint sends from where it receives (the default).
    Symmetric,
    /// `asymmetric`: it may not; no learning from its packets.
    Asymmetric,
    /// `strict-source`: once learned, only packets from that address are relayed.
    StrictSource,
    /// `media-handover`: a new source may take a learned stream over.
    MediaHandover,
    /// `port-latching`: the learned port is kept even if the endpoint moves.
    PortLatching,
    /// `reset`: forget what was learned.
    Reset,
    /// `loop-protect`: refuse an SDP this relay already rewrote.
    LoopProtect,
    /// `no-rtcp-attribute`: write no `a=rtcp`.
    NoRtcpAttribute,
    /// `full-rtcp-attribute`: write `a=rtcp` with its address.
    FullRtcpAttribute,
    /// `echo` (Farside's own, in an `offer`): the offerer's media goes back to it, and the
    /// reply's SDP names the ports it sends to, as the call's answer
    /// ([`crate::relay::Relay::echo`]).
    Echo,
}

impl Flag {
    fn of(name: &[u8]) -> Option<Flag> {
        Some(match name {
            b"SIP-source-address" => Flag::SipSourceAddress,
            b"trust-address" => Flag::TrustAddress,
            b"symmetric" => Flag::Symmetric,
            b"asymmetric" => Flag::Asymmetric,
            b"strict-source" => Flag::StrictSource,
            b"media-handover" => Flag::MediaHandover,
            b"port-latching" => Flag::PortLatching,
            b"reset" => Flag::Reset,
            b"loop-protect" => Flag::LoopProtect,
            b"no-rtcp-attribute" => Flag::NoRtcpAttribute,
            b"full-rtcp-attribute" => Flag::FullRtcpAttribute,
            b"echo" => Flag::Echo,
            _ => return None,
        })
    }
}

/// The `replace` list: which SDP fields besides `c=` get the relay's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replace {
    /// `origin`: the `o=` address.
    pub origin: bool,
    /// `session-connection`: the session-level `c=` too.
    pub session_connection: bool,
}

/// The `ICE` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ice {
    /// `remove`: ICE attributes taken out.
    Remove,
    /// `force`: the relay's own candidates offered.
    Force,
    /// `force-relay`: only relay candidates.
    ForceRelay,
    /// `default`, `optional` or another value: ICE left as offered.
    Default,
}

/// A request, borrowing from the datagram it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The cookie, repeated in the reply.
    pub cookie: &'a [u8],
    /// The command.
    pub command: Command<'a>,
    /// `call-id`.
    pub call_id: Option<&'a [u8]>,
    /// `from-tag`.
    pub from_tag: Option<&'a [u8]>,
    /// `to-tag`.
    pub to_tag: Option<&'a [u8]>,
    /// `via-branch`: which branch of a forked call.
    pub via_branch: Option<&'a [u8]>,
    /// `sdp`: the session description to rewrite.
    pub sdp: Option<&'a [u8]>,
    /// The known flags of `flags`.
    pub flags: Vec<Flag>,
    /// The other entries of `flags`, as they came.
    pub unknown_flags: Vec<&'a [u8]>,
    /// `replace`.
    pub replace: Replace,
    /// `ICE`.
    pub ice: Option<Ice>,
    /// `transport-protocol` (`RTP/AVP`, `RTP/SAVPF`, ...).
    pub transport_protocol: Option<&'a [u8]>,
    /// `address family` (`IP4` or `IP6`): the family the SDP's recipient wants.
    pub address_family: Option<&'a [u8]>,
    /// `direction`: the logical interfaces, from the sender's side to the recipient's.
    pub direction: Vec<&'a [u8]>,
    /// `received-from`: the SIP message's source address, as the proxy saw it.
    pub received_from: Option<IpAddr>,
}

/// Why a datagram is not an ng request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// No cookie and space before the dictionary, or a cookie that is too long or not text.
    NoCookie,
    /// The rest is not one bencoded value.
    Bencode(bencode::Error),
    /// The value is not a dictionary.
    NotADictionary,
    /// The dictionary has no `command` string.
    NoCommand,
}

impl<'a> Request<'a> {
    /// Reads one datagram. A request whose cookie was read but whose dictionary was not
    /// gives the cookie with the error, so that the error can be answered.
    pub fn parse(datagram: &'a [u8]) -> Result<Request<'a>, (Option<&'a [u8]>, Error)> {
        let space = datagram
            .iter()
            .take(MAX_COOKIE + 1)
            .position(|&b| b == b' ')
            .ok_or((None, Error::NoCookie))?;
        let cookie = &datagram[..space];
        if cookie.is_empty() || !cookie.iter().all(|&b| b.is_ascii_graphic()) {
            return Err((None, Error::NoCookie));
        }
        let fail = |e| (Some(cookie), e);
        let dict = Value::parse(&datagram[space + 1..]).map_err(|e| fail(Error::Bencode(e)))?;
        if !matches!(dict, Value::Dict(_)) {
            return Err(fail(Error::NotADictionary));
        }
        let text = |key: &str| dict.get(key).and_then(Value::as_bytes);
        let list = |key: &str| -> Vec<&'a [u8]> {
            match dict.get(key) {
                Some(Value::List(items)) => items.iter().filter_map(Value::as_bytes).collect(),
                Some(Value::Bytes(b)) => vec![*b],
                _ => Vec::new(),
            }
        };
        let command = match text("command").ok_or(fail(Error::NoCommand))? {
            b"ping" => Command::Ping,
            b"offer" => Command::Offer,
            b"answer" => Command::Answer,
            b"delete" => Command::Delete,
            b"query" => Command::Query,
            b"list" => Command::List,
            b"statistics" => Command::Statistics,
            other => Command::Other(other),
        };
        let mut flags = Vec::new();
        let mut unknown_flags = Vec::new();
        for f in list("flags") {
            match Flag::of(f) {
                Some(flag) => flags.push(flag),
                None => unknown_flags.push(f),
            }
        }
        let mut replace = Replace::default();
        for r in list("replace") {
            match r {
                b"origin" => replace.origin = true,
                // Older modules wrote it with a space.
                b"session-connection" | b"session connection" => {
                    replace.session_connection = true;
                }
                _ => unknown_flags.push(r),
            }
        }
        let ice = text("ICE").map(|v| match v {
            b"remove" => Ice::Remove,
            b"force" => Ice::Force,
            b"force-relay" | b"force_relay" => Ice::ForceRelay,
            _ => Ice::Default,
        });
        // ["IP4", "192.0.2.1"]: the family, then the address.
        let received_from = list("received-from")
            .get(1)
            .and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|a| a.parse().ok());
        Ok(Request {
            cookie,
            command,
            call_id: text("call-id"),
            from_tag: text("from-tag"),
            to_tag: text("to-tag"),
            via_branch: text("via-branch"),
            sdp: text("sdp"),
            flags,
            unknown_flags,
            replace,
            ice,
            transport_protocol: text("transport-protocol"),
            address_family: text("address family").or_else(|| text("address-family")),
            direction: list("direction"),
            received_from,
        })
    }

    /// Whether `flag` was given.
    pub fn has(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }
}

/// A reply: the request's cookie, a space, and `entries` as a dictionary (in their order).
pub fn reply(cookie: &[u8], entries: Vec<(&[u8], Value<'_>)>) -> Vec<u8> {
    message(cookie, entries)
}

/// A request, as a control client writes it: a fresh cookie, a space, and `entries` (with
/// `command`) as a dictionary.
pub fn request(cookie: &[u8], entries: Vec<(&[u8], Value<'_>)>) -> Vec<u8> {
    message(cookie, entries)
}

/// Either direction's datagram: the cookie, a space, the bencoded dictionary.
fn message(cookie: &[u8], entries: Vec<(&[u8], Value<'_>)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.len() + 64);
    out.extend_from_slice(cookie);
    out.push(b' ');
    Value::Dict(entries).encode(&mut out);
    out
}

/// An error reply: `result` `error` and the reason, as rtpengine writes them.
pub fn reply_error(cookie: &[u8], reason: &str) -> Vec<u8> {
    reply(
        cookie,
        vec![
            (b"result", Value::Bytes(b"error")),
            (b"error-reason", Value::Bytes(reason.as_bytes())),
        ],
    )
}
