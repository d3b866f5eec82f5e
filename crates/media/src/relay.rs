//! The relay's calls and streams, sans-IO: an offer and its answer (from Farside's own SIP
//! server or from an ng client) set up a call's streams, each with a relay port pair facing
//! each side; a packet that arrives at a port is forwarded to the other side, or dropped for a
//! counted reason; timers end calls that never carried media, fell silent, or ran too long.
//!
//! Ports come from the shell through [`MediaPorts`] (as TURN's relay sockets come through
//! `RelayPorts`), so the two share one port range. Which packets are forwarded is
//! [`crate::latch`]'s rule; the figures are [`crate::quality`]'s.
//!
//! Sides: side 0 made the call's first offer (its From tag names it), side 1 answered. A
//! later offer may come from either side (a re-INVITE); its answer comes from the other.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use farside_peers::PeerPolicy;
use farside_sdp::{Connection, Ice, Rewrite, Sdp};
use farside_time::Timestamp;

use crate::latch::{Expect, Latch, Verdict, expect};
use crate::quality::{Quality, RoundTrip};
use crate::rtp::{self, RtpHeader};

/// The relay ports, asked of the shell, which binds them. A pair is an even RTP port and the
/// RTCP port after it; its number is unique whatever the family it is bound in.
pub trait MediaPorts {
    /// A free pair's RTP port, bound on the relay's address of the IPv6 family if `ipv6`, else
    /// IPv4 (on the other family's if the relay has no address of that one); `None` when the
    /// range is used up.
    fn take_pair(&mut self, ipv6: bool) -> Option<u16>;
    /// A pair is not needed any more.
    fn give_back(&mut self, rtp_port: u16);
}

/// The relay's settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The addresses written into SDP (the advertised ones, behind 1:1 NAT), at most one per
    /// family: a call takes the one of its first offer's family, else the first.
    pub addresses: Vec<IpAddr>,
    /// A call answered this long ago that carried no packet at all ends (one never answered,
    /// after at least three minutes).
    pub setup_timeout: Duration,
    /// A call with no packet for this long ends.
    pub silence_timeout: Duration,
    /// A call ends this long after its first offer, whatever it carries.
    pub final_timeout: Duration,
    /// Most calls at once; an offer beyond is refused.
    pub max_calls: usize,
    /// Where media may be sent: not, by default, to what is not globally routable (loopback,
    /// RFC 1918, link-local, ...), whatever an SDP names or a packet's source says.
    pub peers: PeerPolicy,
}

impl RelayConfig {
    /// rtpengine's defaults where it has them: 60 s without media, 60 s of silence; 4 hours
    /// at most; 10,000 calls.
    pub fn new(address: IpAddr) -> RelayConfig {
        RelayConfig {
            addresses: vec![address],
            setup_timeout: Duration::from_secs(60),
            silence_timeout: Duration::from_secs(60),
            final_timeout: Duration::from_secs(4 * 3600),
            max_calls: 10_000,
            peers: PeerPolicy::default(),
        }
    }
}

/// An offer or answer on its way through, as the signalling hands it over (Farside's SIP
/// server, or an ng client's `offer`/`answer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passing<'a> {
    /// The call's Call-ID.
    pub call_id: &'a [u8],
    /// The From tag: the offerer's in an offer, and in its answer too (ng's `from-tag`).
    pub from_tag: &'a [u8],
    /// The To tag, if the message has one: in an answer, the answerer's.
    pub to_tag: Option<&'a [u8]>,
    /// The SDP.
    pub sdp: &'a [u8],
    /// The SIP message's source, when the endpoint sent it itself (ng's `received-from`): the
    /// host its media is expected from when its SDP names a private address.
    pub source: Option<IpAddr>,
    /// What becomes of ICE attributes.
    pub ice: Ice,
    /// The sender's learned address may move to another port of its host without new
    /// signalling (ng's `media-handover`; [`Latch::handover`]).
    pub handover: bool,
    /// The family the first offer's recipient is given, IPv6 if `true` (ng's `address-family`:
    /// `IP6`, `IP4`); the offer's own if `None`. The two sides of a call may so be of
    /// different families, and the relay bridges IPv4 and IPv6.
    pub recipient_ipv6: Option<bool>,
}

/// Why an offer or answer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayError {
    /// The SDP does not read.
    Sdp(farside_sdp::Error),
    /// An answer (or a delete) for a call the relay does not have.
    UnknownCall,
    /// [`RelayConfig::max_calls`] calls already.
    TooManyCalls,
    /// No free port pair.
    NoPorts,
    /// An echo offer for a call that is not an echo, or an offer for an echo call: the
    /// Call-ID is another call's (the echo service needs no authentication, so it may not
    /// take over, nor be taken over by, a call it does not own).
    CallIdInUse,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Deleted by the signalling (BYE, CANCEL, ng `delete`).
    Deleted,
    /// Answered, and no packet came within the setup timeout.
    NoMedia,
    /// No packet for the silence timeout.
    Silence,
    /// The final timeout.
    Final,
}

/// What the relay reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A call ended, its ports given back.
    CallEnded {
        /// Its Call-ID.
        call_id: Vec<u8>,
        /// Why.
        reason: Ended,
        /// Packets forwarded from each side (the first offerer's first), all streams.
        forwarded: [u64; 2],
        /// The quality of each side's RTP as it reached the relay (the first offerer's
        /// first), over all its streams.
        quality: [CallQuality; 2],
        /// When its first offer came.
        created: Timestamp,
        /// Where each side's RTP came from (its first stream's learned address), if any came.
        endpoints: [Option<SocketAddr>; 2],
    },
}

/// A side's RTP over a call, as it reached the relay: for the operator's quality summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallQuality {
    /// RTP packets expected from the sequence numbers (0: none came, or too few to tell).
    pub expected: u64,
    /// Of those, lost (never arrived; late duplicates can make it negative, counted as 0).
    pub lost: u64,
    /// The highest interarrival jitter of its streams at the end (RFC 3550 A.8).
    pub jitter: Duration,
    /// The last round trip measured from RTCP, if any.
    pub round_trip: Option<Duration>,
}

impl CallQuality {
    /// The share of expected packets lost, 0 to 1 (`None` if none were expected).
    pub fn loss(&self) -> Option<f64> {
        (self.expected > 0).then(|| self.lost as f64 / self.expected as f64)
    }
}

/// A packet to send: from which relay port, to where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The relay port it leaves from (the one the recipient sends to).
    pub from_port: u16,
    /// Where it goes.
    pub to: SocketAddr,
}

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// No call owns the port.
    NoStream,
    /// From neither the learned address nor the host the signalling names (strict source).
    ForeignSource,
    /// The other side has no address yet (behind NAT, not heard from).
    NoDestination,
    /// The other side's address is one the peer policy refuses ([`RelayConfig::peers`]).
    DeniedPeer,
}

/// Packets and bytes of one side, by what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// RTP packets received from the side and forwarded.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// RTCP packets received from the side and forwarded.
    pub rtcp_packets: u64,
    /// Their bytes.
    pub rtcp_bytes: u64,
    /// Refused: foreign source.
    pub foreign: u64,
    /// Dropped: nowhere to send yet.
    pub no_destination: u64,
    /// Dropped: the destination is refused by the peer policy.
    pub denied_peer: u64,
}

impl Counters {
    /// The RTP packets from the side that were not relayed, whatever the reason (what
    /// rtpengine's `query` calls errors).
    pub fn errors(&self) -> u64 {
        self.foreign + self.no_destination + self.denied_peer
    }
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, c: Counters) {
        self.packets += c.packets;
        self.bytes += c.bytes;
        self.rtcp_packets += c.rtcp_packets;
        self.rtcp_bytes += c.rtcp_bytes;
        self.foreign += c.foreign;
        self.no_destination += c.no_destination;
        self.denied_peer += c.denied_peer;
    }
}

#[derive(Debug, Clone)]
struct Side {
    /// The relay's RTP port this side sends to (RTCP: the next one).
    port: u16,
    rtp: Latch,
    rtcp: Latch,
    rtcp_mux: bool,
    counters: Counters,
    quality: Quality,
    /// The round trip between the relay and this side, from RTCP.
    round_trip: RoundTrip,
}

#[derive(Debug, Clone)]
struct Stream {
    sides: [Side; 2],
}

#[derive(Debug, Clone)]
struct Call {
    id: Vec<u8>,
    offerer_tag: Vec<u8>,
    /// The answerer's tag, once an answer named one.
    answerer_tag: Option<Vec<u8>>,
    /// The relay's address facing each side (the first offerer's first): of its first offer's
    /// family, and of the family asked for its recipient (else the same), where the relay has
    /// one. A side's ports are bound on its address, and the SDPs it receives name it.
    addresses: [IpAddr; 2],
    created: Timestamp,
    answered: Option<Timestamp>,
    last_packet: Option<Timestamp>,
    streams: Vec<Stream>,
    /// An echo call ([`Relay::echo`]): each side's media goes back to it.
    echo: bool,
}

/// The calls in slots that stay put while a call lives, found by Call-ID for the signalling
/// and by slot for the packets.
#[derive(Debug, Default)]
struct Calls {
    slots: Vec<Option<Call>>,
    free: Vec<usize>,
    by_id: HashMap<Vec<u8>, usize>,
}

impl Calls {
    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn slot(&self, id: &[u8]) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    fn at_mut(&mut self, slot: usize) -> Option<&mut Call> {
        self.slots.get_mut(slot)?.as_mut()
    }

    fn get(&self, id: &[u8]) -> Option<&Call> {
        self.slots.get(self.slot(id)?)?.as_ref()
    }

    fn get_mut(&mut self, id: &[u8]) -> Option<&mut Call> {
        let slot = self.slot(id)?;
        self.at_mut(slot)
    }

    fn insert(&mut self, call: Call) -> usize {
        let slot = self.free.pop().unwrap_or(self.slots.len());
        self.by_id.insert(call.id.clone(), slot);
        match self.slots.get_mut(slot) {
            Some(s) => *s = Some(call),
            None => self.slots.push(Some(call)),
        }
        slot
    }

    fn remove(&mut self, id: &[u8]) -> Option<Call> {
        let slot = self.by_id.remove(id)?;
        let call = self.slots.get_mut(slot)?.take();
        self.free.push(slot);
        call
    }

    fn iter(&self) -> impl Iterator<Item = &Call> + '_ {
        self.slots.iter().flatten()
    }
}

/// One side of a call's stream, for `query`.
#[derive(Debug, Clone, Copy)]
pub struct SideView<'a> {
    /// Its tag (From or To), if the signalling named one.
    pub tag: Option<&'a [u8]>,
    /// The relay's RTP port it sends to (RTCP: the next one, unless rtcp-mux).
    pub port: u16,
    /// Where its RTP comes from, once learned.
    pub endpoint: Option<SocketAddr>,
    /// What it sent, by fate.
    pub counters: Counters,
    /// The quality of its RTP as it arrived.
    pub quality: &'a Quality,
    /// The last round trip between the relay and it, from RTCP.
    pub round_trip: Option<Duration>,
}

/// The owner of a relay port pair: a call's slot, its stream, and the side that sends to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    slot: u32,
    stream: u16,
    side: u8,
}

impl Owner {
    fn new(slot: usize, stream: usize, side: usize) -> Owner {
        Owner {
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
            stream: u16::try_from(stream).unwrap_or(u16::MAX),
            side: u8::from(side == 1),
        }
    }
}

/// The owners of the relay ports, by pair number (the RTP port / 2): a packet finds its call
/// with an index, not a hash. Grown as higher ports are handed out (at most 32,768 entries,
/// 12 bytes each).
#[derive(Debug, Default)]
struct Owners(Vec<Option<Owner>>);

impl Owners {
    fn get(&self, rtp_port: u16) -> Option<Owner> {
        self.0.get(usize::from(rtp_port / 2)).copied().flatten()
    }

    fn insert(&mut self, rtp_port: u16, owner: Owner) {
        let i = usize::from(rtp_port / 2);
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        self.0[i] = Some(owner);
    }

    fn remove(&mut self, rtp_port: u16) {
        if let Some(o) = self.0.get_mut(usize::from(rtp_port / 2)) {
            *o = None;
        }
    }
}

/// The relay's calls on one worker.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    calls: Calls,
    /// Which call, stream and side owns each relay port.
    owners: Owners,
    events: VecDeque<Event>,
    /// When the calls are next looked over for their timers.
    next_sweep: Option<Timestamp>,
}

/// How often the calls' timers are looked at.
pub const SWEEP: Duration = Duration::from_secs(1);

impl Relay {
    /// A relay with no calls.
    pub fn new(config: RelayConfig) -> Relay {
        Relay {
            config,
            calls: Calls::default(),
            owners: Owners::default(),
            events: VecDeque::new(),
            next_sweep: None,
        }
    }

    /// Calls open.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Whether the relay has the call `call_id`.
    pub fn has_call(&self, call_id: &[u8]) -> bool {
        self.calls.slot(call_id).is_some()
    }

    /// The most calls it takes ([`RelayConfig::max_calls`]).
    pub fn max_calls(&self) -> usize {
        self.config.max_calls
    }

    /// An offer from the side its From tag names (a new call, or a re-INVITE in one): the SDP
    /// to pass on, naming the relay's ports that the other side sends to.
    pub fn offer(
        &mut self,
        now: Timestamp,
        offer: &Passing<'_>,
        ports: &mut dyn MediaPorts,
    ) -> Result<Vec<u8>, RelayError> {
        if self.calls.get(offer.call_id).is_some_and(|c| c.echo) {
            return Err(RelayError::CallIdInUse);
        }
        self.take_offer(now, offer, ports)
    }

    /// [`Relay::offer`], for an echo call too.
    fn take_offer(
        &mut self,
        now: Timestamp,
        offer: &Passing<'_>,
        ports: &mut dyn MediaPorts,
    ) -> Result<Vec<u8>, RelayError> {
        let Passing {
            call_id, from_tag, ..
        } = *offer;
        let parsed = Sdp::parse(offer.sdp).map_err(RelayError::Sdp)?;
        let slot = match self.calls.slot(call_id) {
            Some(slot) => slot,
            None if self.calls.len() >= self.config.max_calls => {
                return Err(RelayError::TooManyCalls);
            }
            None => self.calls.insert(Call {
                id: call_id.to_vec(),
                offerer_tag: from_tag.to_vec(),
                answerer_tag: None,
                addresses: {
                    let offerer = family_of(&parsed);
                    let recipient = offer.recipient_ipv6.unwrap_or(offerer);
                    let of = |ipv6| address_of(&self.config.addresses, ipv6);
                    [of(offerer), of(recipient)]
                },
                created: now,
                answered: None,
                last_packet: None,
                streams: Vec::new(),
                echo: false,
            }),
        };
        self.next_sweep
            .get_or_insert(now.checked_add(SWEEP).unwrap_or(now));
        let Some(call) = self.calls.at_mut(slot) else {
            return Err(RelayError::UnknownCall);
        };
        if rewritten_here(call, &parsed) {
            return Ok(offer.sdp.to_vec());
        }
        let side = usize::from(call.offerer_tag != from_tag);
        // New media sections get their port pairs (both sides at once); if the range runs
        // out, what this offer took is given back (and a new call forgotten).
        let before = call.streams.len();
        let wanted = parsed.media().count();
        let [ipv6_a, ipv6_b] = call.addresses.map(|a| a.is_ipv6());
        while call.streams.len() < wanted {
            let pair = match ports.take_pair(ipv6_a) {
                Some(a) => match ports.take_pair(ipv6_b) {
                    Some(b) => Some((a, b)),
                    None => {
                        ports.give_back(a);
                        None
                    }
                },
                None => None,
            };
            let Some((a, b)) = pair else {
                for s in call.streams.drain(before..) {
                    release(&mut self.owners, ports, &s);
                }
                if before == 0 {
                    self.calls.remove(call_id);
                }
                return Err(RelayError::NoPorts);
            };
            let blank = |port| Side {
                port,
                rtp: Latch::new(Expect::Host(IpAddr::from([0, 0, 0, 0]))),
                rtcp: Latch::new(Expect::Host(IpAddr::from([0, 0, 0, 0]))),
                rtcp_mux: false,
                counters: Counters::default(),
                quality: Quality::new(8000),
                round_trip: RoundTrip::default(),
            };
            let index = call.streams.len();
            self.owners.insert(a, Owner::new(slot, index, 0));
            self.owners.insert(b, Owner::new(slot, index, 1));
            call.streams.push(Stream {
                sides: [blank(a), blank(b)],
            });
        }
        Ok(describe(call, side, 1 - side, &parsed, offer))
    }

    /// An echo call (Farside's ng flag `echo`): an offer whose media the relay sends back to
    /// where it came from, as a diagnostic's far end (`farside doctor`, a phone's echo test).
    /// The SDP returned names the ports the offerer itself sends to: it is the call's answer.
    /// The call counts as answered, and its timers run as any call's. A Call-ID the relay
    /// holds for another call is refused ([`RelayError::CallIdInUse`]), and so is any later
    /// plain offer for an echo call's.
    pub fn echo(
        &mut self,
        now: Timestamp,
        offer: &Passing<'_>,
        ports: &mut dyn MediaPorts,
    ) -> Result<Vec<u8>, RelayError> {
        if self.calls.get(offer.call_id).is_some_and(|c| !c.echo) {
            return Err(RelayError::CallIdInUse);
        }
        self.take_offer(now, offer, ports)?;
        let parsed = Sdp::parse(offer.sdp).map_err(RelayError::Sdp)?;
        let call = self
            .calls
            .get_mut(offer.call_id)
            .ok_or(RelayError::UnknownCall)?;
        call.echo = true;
        call.answered.get_or_insert(now);
        let side = usize::from(call.offerer_tag != offer.from_tag);
        Ok(describe(call, side, side, &parsed, offer))
    }

    /// The answer to the last offer, from the side that did not make it: the SDP to pass on,
    /// naming the relay's ports the offerer sends to.
    pub fn answer(&mut self, now: Timestamp, answer: &Passing<'_>) -> Result<Vec<u8>, RelayError> {
        let parsed = Sdp::parse(answer.sdp).map_err(RelayError::Sdp)?;
        let call = self
            .calls
            .get_mut(answer.call_id)
            .ok_or(RelayError::UnknownCall)?;
        if rewritten_here(call, &parsed) {
            return Ok(answer.sdp.to_vec());
        }
        // The answer's From is the offer's: the answering side is the other one.
        let side = usize::from(call.offerer_tag == answer.from_tag);
        if side == 1
            && let Some(tag) = answer.to_tag
            && call.answerer_tag.as_deref() != Some(tag)
        {
            call.answerer_tag = Some(tag.to_vec());
        }
        call.answered.get_or_insert(now);
        Ok(describe(call, side, 1 - side, &parsed, answer))
    }

    /// Ends a call (BYE, CANCEL, a failure, ng `delete`), giving its ports back.
    pub fn delete(&mut self, call_id: &[u8], ports: &mut dyn MediaPorts) -> bool {
        self.end(call_id, Ended::Deleted, ports)
    }

    fn end(&mut self, call_id: &[u8], reason: Ended, ports: &mut dyn MediaPorts) -> bool {
        let Some(call) = self.calls.remove(call_id) else {
            return false;
        };
        let mut forwarded = [0; 2];
        let mut quality = [CallQuality::default(); 2];
        for s in &call.streams {
            for ((n, q), side) in forwarded.iter_mut().zip(&mut quality).zip(&s.sides) {
                *n += side.counters.packets;
                q.expected += side.quality.expected();
                q.lost += u64::try_from(side.quality.lost()).unwrap_or(0);
                q.jitter = q.jitter.max(side.quality.jitter());
                q.round_trip = side.round_trip.last().or(q.round_trip);
            }
        }
        for s in &call.streams {
            release(&mut self.owners, ports, s);
        }
        let endpoints = call.streams.first().map_or([None, None], |s| {
            s.sides.each_ref().map(|side| side.rtp.learned())
        });
        self.events.push_back(Event::CallEnded {
            call_id: call_id.to_vec(),
            reason,
            forwarded,
            quality,
            created: call.created,
            endpoints,
        });
        true
    }

    /// A packet arrived at relay port `port` from `source`: where to send it, or why not.
    pub fn handle_packet(
        &mut self,
        now: Timestamp,
        port: u16,
        source: SocketAddr,
        packet: &[u8],
    ) -> Result<Transmit, Drop> {
        let rtp_port = port & !1;
        let Owner { slot, stream, side } = self.owners.get(rtp_port).ok_or(Drop::NoStream)?;
        let (slot, stream, side) = (slot as usize, usize::from(stream), usize::from(side));
        let call = self.calls.at_mut(slot).ok_or(Drop::NoStream)?;
        let echo = call.echo;
        let [a, b] = &mut call.streams.get_mut(stream).ok_or(Drop::NoStream)?.sides;
        let (from, to) = if side == 0 { (a, b) } else { (b, a) };
        // RTCP: on the port after RTP's, or on RTP's own with rtcp-mux (RFC 5761 §4).
        let rtcp = port & 1 == 1 || rtp::kind(packet) == rtp::Kind::Rtcp;
        let latch = if rtcp && port & 1 == 1 {
            &mut from.rtcp
        } else {
            &mut from.rtp
        };
        if latch.on_packet(source) == Verdict::ForeignSource {
            from.counters.foreign += 1;
            return Err(Drop::ForeignSource);
        }
        call.last_packet = Some(now);
        if !rtcp && let Some(h) = RtpHeader::parse(packet) {
            from.quality.on_rtp(&h, now);
        }
        // An echo call's media goes back to its sender, from the port it came to.
        let target: &Side = if echo { from } else { to };
        let (to_latch, from_port) = match (rtcp, target.rtcp_mux) {
            (true, false) => (&target.rtcp, target.port + 1),
            _ => (&target.rtp, target.port),
        };
        let Some(dest) = to_latch.destination() else {
            from.counters.no_destination += 1;
            return Err(Drop::NoDestination);
        };
        if !self.config.peers.permits_to(dest) {
            from.counters.denied_peer += 1;
            return Err(Drop::DeniedPeer);
        }
        if rtcp {
            from.counters.rtcp_packets += 1;
            from.counters.rtcp_bytes += packet.len() as u64;
            // An SR passing toward `to`, and `from`'s reports on the SRs that passed to it
            // (RFC 3550 §6.4.1): the round trip to each side.
            if !echo && let Some(report) = rtp::report(packet) {
                to.round_trip.sender_report(&report, now);
                from.round_trip.receiver_report(&report, now);
            }
        } else {
            from.counters.packets += 1;
            from.counters.bytes += packet.len() as u64;
        }
        Ok(Transmit {
            from_port,
            to: dest,
        })
    }

    /// A call's streams, each side as `query` shows it (side 0: the first offerer).
    pub fn streams(&self, call_id: &[u8]) -> Option<Vec<[SideView<'_>; 2]>> {
        let c = self.calls.get(call_id)?;
        let tags = [Some(c.offerer_tag.as_slice()), c.answerer_tag.as_deref()];
        Some(
            c.streams
                .iter()
                .map(|s| {
                    let view = |i: usize| {
                        let side = &s.sides[i];
                        SideView {
                            tag: tags[i],
                            port: side.port,
                            endpoint: side.rtp.learned(),
                            counters: side.counters,
                            quality: &side.quality,
                            round_trip: side.round_trip.last(),
                        }
                    };
                    [view(0), view(1)]
                })
                .collect(),
        )
    }

    /// The Call-IDs of the calls open, in no particular order.
    pub fn call_ids(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.calls.by_id.keys().map(Vec::as_slice)
    }

    /// A call's first offer's time, and its counters summed over all streams and both sides.
    pub fn totals(&self, call_id: &[u8]) -> Option<(Timestamp, Counters)> {
        let c = self.calls.get(call_id)?;
        let mut t = Counters::default();
        for s in c.streams.iter().flat_map(|s| s.sides.iter()) {
            t += s.counters;
        }
        Some((c.created, t))
    }

    /// The counters of side `side` (0: the first offerer) of a call's stream `stream`.
    pub fn counters(&self, call_id: &[u8], stream: usize, side: usize) -> Option<Counters> {
        let s = self.calls.get(call_id)?.streams.get(stream)?;
        Some(s.sides.get(side)?.counters)
    }

    /// Ends the calls whose time is up. The calls are looked over once per [`SWEEP`] at most
    /// (a call ends up to that much after its limit): the data path's wake-ups then cost
    /// nothing per call.
    pub fn handle_timeout(&mut self, now: Timestamp, ports: &mut dyn MediaPorts) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        let due: Vec<(Vec<u8>, Ended)> = self
            .calls
            .iter()
            .filter_map(|c| self.due(c, now).map(|r| (c.id.clone(), r)))
            .collect();
        for (id, reason) in due {
            self.end(&id, reason, ports);
        }
        self.next_sweep = (!self.calls.is_empty())
            .then(|| now.checked_add(SWEEP))
            .flatten();
    }

    fn due(&self, c: &Call, now: Timestamp) -> Option<Ended> {
        let cfg = &self.config;
        if now.duration_since(c.created) >= cfg.final_timeout {
            return Some(Ended::Final);
        }
        match (c.last_packet, c.answered) {
            (Some(last), _) if now.duration_since(last) >= cfg.silence_timeout => {
                Some(Ended::Silence)
            }
            (None, Some(answered)) if now.duration_since(answered) >= cfg.setup_timeout => {
                Some(Ended::NoMedia)
            }
            (None, None) if now.duration_since(c.created) >= unanswered(cfg) => {
                Some(Ended::NoMedia)
            }
            _ => None,
        }
    }

    /// When [`Relay::handle_timeout`] should next run: the next sweep, while calls are open.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.next_sweep
    }

    /// What the relay reports.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// Gives a stream's port pairs back and forgets their owner.
fn release(owners: &mut Owners, ports: &mut dyn MediaPorts, stream: &Stream) {
    for side in &stream.sides {
        owners.remove(side.port);
        ports.give_back(side.port);
    }
}

/// Whether `sdp` is one this relay wrote for `call`: every media section names one of the
/// call's relay addresses and relay ports. It comes back when a message passes the relay's
/// signalling twice (Farside's edge in front of a registrar, where a call between two of its
/// phones leaves through the edge and comes back along the Path; a spiral in Kamailio), and
/// is passed on as it is: taken as the endpoint's, it would have the relay expect media from
/// itself (rtpengine's `loop-protect`, always on).
fn rewritten_here(call: &Call, sdp: &Sdp<'_>) -> bool {
    // A rejected section (port 0, RFC 3264 §6) stays 0 in the relay's rewriting too, and says
    // nothing of who wrote the SDP.
    let mut media = sdp.media().filter(|m| m.port != 0).peekable();
    media.peek().is_some()
        && media.all(|m| {
            let ours = matches!(m.connection, Connection::Ip(ip) if call.addresses.contains(&ip));
            ours && call
                .streams
                .iter()
                .any(|s| s.sides.iter().any(|side| side.port == m.port))
        })
}

/// Whether an SDP's media is IPv6: the family its first media section names (IPv4 if none).
fn family_of(sdp: &Sdp<'_>) -> bool {
    sdp.media()
        .find_map(|m| match m.connection {
            Connection::Ip(ip) => Some(ip.is_ipv6()),
            Connection::Other => None,
        })
        .unwrap_or(false)
}

/// The relay's address of the IPv6 family if `ipv6`, else IPv4; the first configured if it
/// has none of that family.
fn address_of(addresses: &[IpAddr], ipv6: bool) -> IpAddr {
    addresses
        .iter()
        .copied()
        .find(|a| a.is_ipv6() == ipv6)
        .or_else(|| addresses.first().copied())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// How long a call may go unanswered and without media: the setup timeout, but no less than
/// the three minutes a phone may ring (RFC 3261 §16.6's Timer C), since a lost `delete` must
/// not keep its ports for the final timeout's hours.
fn unanswered(cfg: &RelayConfig) -> Duration {
    cfg.setup_timeout.max(Duration::from_secs(180))
}

/// Takes side `side`'s SDP: its streams' expectations for the latches, and the SDP rewritten
/// with the relay's address and ports facing the other side (where the recipient will send).
/// Takes `sdp` from `side` (what its media's latches expect) and writes it for its recipient,
/// naming the relay's ports of side `named` (the other side's, or its own for an echo).
fn describe(
    call: &mut Call,
    side: usize,
    named: usize,
    sdp: &Sdp<'_>,
    passing: &Passing<'_>,
) -> Vec<u8> {
    let sip_source = passing.source;
    // The recipient sends to the relay's address facing it.
    let address = call.addresses[named];
    let mut ports = Vec::new();
    let mut rtcp_ports = Vec::new();
    for (m, stream) in sdp.media().zip(call.streams.iter_mut()) {
        let s = &mut stream.sides[side];
        let ip = match m.connection {
            Connection::Ip(ip) => ip,
            Connection::Other => IpAddr::from([0, 0, 0, 0]),
        };
        s.rtcp_mux = m.rtcp_mux;
        s.rtp.handover(passing.handover);
        s.rtcp.handover(passing.handover);
        s.rtp
            .expect(expect(SocketAddr::new(ip, m.port), sip_source));
        let rtcp_port = m.rtcp_port.unwrap_or(m.port.saturating_add(1));
        s.rtcp
            .expect(expect(SocketAddr::new(ip, rtcp_port), sip_source));
        let relay = stream.sides[named].port;
        ports.push(Some(relay));
        rtcp_ports.push(Some(if m.rtcp_mux { relay } else { relay + 1 }));
    }
    let mut out = Vec::new();
    sdp.rewrite(
        &Rewrite {
            address: Some(address),
            origin: Some(address),
            ports: &ports,
            rtcp_ports: &rtcp_ports,
            ice: passing.ice,
        },
        &mut out,
    );
    out
}
