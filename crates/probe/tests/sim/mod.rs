//! A deterministic simulated network for the probe: the probe's sockets behind a modelled
//! NAT ([`nat`]), a WAN with a fixed delay and scripted loss, and our real
//! `farside_stun::binding::BindingServer` on the other side. [`World::run`] steps it from
//! one wake-up to the next (quinn's `Pair`, str0m's `progress`), so minutes of protocol
//! time take milliseconds.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses part of this"
)]

pub mod nat;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use farside_time::Timestamp;

use farside_probe::{Event, Probe, ProbeConfig, Report, SocketId};
use farside_stun::attributes::{
    ChangeRequest, ErrorCode, OtherAddress, UnknownAttributes, XorMappedAddress,
};
use farside_stun::binding::{
    AlternateAddress, BindingConfig, BindingServer, Outcome, Received, Transport,
};
use farside_stun::{Class, Message, MessageBuilder, attr_type};

pub use nat::{Nat, NatSpec};

pub const SERVER: &str = "192.0.2.1:3478";
pub const SERVER_ALT: &str = "192.0.2.2:3479";
/// The NAT's public address.
pub const NAT_IP: &str = "203.0.113.1";
/// The host behind the NAT.
pub const LAN_IP: &str = "10.0.0.2";
/// The host when it has a public address (no NAT).
pub const PUBLIC_HOST_IP: &str = "198.51.100.10";
/// One-way WAN delay.
pub const DELAY: Duration = Duration::from_millis(10);

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP address")
}

/// What answers at the server's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// An RFC 5780 server with two addresses.
    Rfc5780,
    /// A one-address server: no OTHER-ADDRESS, 420 to CHANGE-REQUEST.
    Basic,
    /// Sends OTHER-ADDRESS but answers CHANGE-REQUEST with 420 (a misconfigured server).
    ClaimsButRefuses,
    /// Nothing answers.
    Dead,
}

/// Which WAN datagrams are lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    None,
    /// The first `n` datagrams of each (source, destination) pair, both directions.
    FirstOfEachFlow(u32),
}

struct Packet {
    at: Timestamp,
    seq: u64,
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

pub struct World {
    pub start: Timestamp,
    pub now: Timestamp,
    pub probe: Probe,
    pub nat: Nat,
    server: ServerKind,
    binding: BindingServer,
    host_ip: IpAddr,
    sockets: Vec<(SocketId, SocketAddr)>,
    wan: Vec<Packet>,
    seq: u64,
    loss: Loss,
    flows: HashMap<(SocketAddr, SocketAddr), u32>,
    /// Datagrams the probe sent.
    pub sent: u32,
    /// Datagrams the WAN lost.
    pub lost: u32,
    pub events: Vec<Event>,
}

impl World {
    pub fn new(spec: NatSpec, server: ServerKind, config: ProbeConfig) -> Self {
        Self::with_loss(spec, server, config, Loss::None)
    }

    pub fn with_loss(spec: NatSpec, server: ServerKind, config: ProbeConfig, loss: Loss) -> Self {
        let host_ip = if spec.translate {
            ip(LAN_IP)
        } else {
            ip(PUBLIC_HOST_IP)
        };
        let public_ip = if spec.translate { ip(NAT_IP) } else { host_ip };
        let binding = match server {
            ServerKind::Rfc5780 => BindingServer::new(BindingConfig {
                alternate: Some(AlternateAddress {
                    primary_ip: addr(SERVER).ip(),
                    primary_port: addr(SERVER).port(),
                    alternate_ip: addr(SERVER_ALT).ip(),
                    alternate_port: addr(SERVER_ALT).port(),
                }),
                software: None,
            }),
            _ => BindingServer::default(),
        };
        let start = Timestamp::from_unix_secs(1_800_000_000);
        let local = SocketAddr::new(host_ip, 5000);
        let config = ProbeConfig {
            server: addr(SERVER),
            ..config
        };
        World {
            start,
            now: start,
            probe: Probe::new(config, local, start, 42),
            nat: Nat::new(spec, public_ip),
            server,
            binding,
            host_ip,
            sockets: vec![(SocketId(0), local)],
            wan: Vec::new(),
            seq: 0,
            loss,
            flows: HashMap::new(),
            sent: 0,
            lost: 0,
            events: Vec::new(),
        }
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Runs the probe to the end and returns its report.
    pub fn run(&mut self) -> Report {
        for _ in 0..1_000_000 {
            self.flush();
            if self.probe.is_done() {
                assert_eq!(self.probe.poll_timeout(), None);
                assert_eq!(self.events.last(), Some(&Event::Done));
                return self.probe.report().clone();
            }
            let probe_at = self.probe.poll_timeout();
            let wan_at = self.wan.iter().map(|p| p.at).min();
            let next = match (probe_at, wan_at) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a
                    .or(b)
                    .expect("the probe is stuck: no timer and nothing in flight"),
            };
            self.now = self.now.max(next);
            while let Some(i) = self.due() {
                let p = self.wan.swap_remove(i);
                self.deliver(p);
                self.flush();
            }
            if probe_at.is_some_and(|t| t <= self.now) {
                self.probe.handle_timeout(self.now);
            }
        }
        panic!("the probe did not finish");
    }

    /// The earliest packet due now (lowest sequence among equal times).
    fn due(&self) -> Option<usize> {
        self.wan
            .iter()
            .enumerate()
            .filter(|(_, p)| p.at <= self.now)
            .min_by_key(|(_, p)| (p.at, p.seq))
            .map(|(i, _)| i)
    }

    /// Sends what the probe queued and collects its events.
    fn flush(&mut self) {
        while let Some(t) = self.probe.poll_transmit() {
            self.sent += 1;
            let local = self.socket(t.from);
            if self.nat.spec.translate && t.to.ip() == self.nat.public_ip {
                if let Some((to, from)) = self.nat.hairpin(self.now, local, t.to) {
                    self.deliver_to_host(to, from, &t.payload);
                }
                continue;
            }
            let src = self.nat.outbound(self.now, local, t.to);
            self.wan_send(src, t.to, t.payload);
        }
        while let Some(e) = self.probe.poll_event() {
            self.events.push(e);
        }
    }

    fn socket(&mut self, id: SocketId) -> SocketAddr {
        if let Some((_, a)) = self.sockets.iter().find(|(s, _)| *s == id) {
            return *a;
        }
        let port = 5000 + u16::try_from(id.0).expect("few sockets");
        let a = SocketAddr::new(self.host_ip, port);
        self.sockets.push((id, a));
        self.probe.local_address_of(id, a);
        a
    }

    fn wan_send(&mut self, src: SocketAddr, dst: SocketAddr, payload: Vec<u8>) {
        let n = self.flows.entry((src, dst)).or_insert(0);
        *n += 1;
        if let Loss::FirstOfEachFlow(k) = self.loss
            && *n <= k
        {
            self.lost += 1;
            return;
        }
        self.seq += 1;
        self.wan.push(Packet {
            at: self.now + DELAY,
            seq: self.seq,
            src,
            dst,
            payload,
        });
    }

    fn deliver(&mut self, p: Packet) {
        if self.server_owns(p.dst) {
            self.serve(p);
        } else if p.dst.ip() == self.nat.public_ip
            && let Some(to) = self.nat.inbound(self.now, p.src, p.dst)
        {
            self.deliver_to_host(to, p.src, &p.payload);
        }
    }

    fn deliver_to_host(&mut self, to: SocketAddr, from: SocketAddr, payload: &[u8]) {
        if let Some((id, _)) = self.sockets.iter().find(|(_, a)| *a == to) {
            let id = *id;
            self.probe.handle_datagram(self.now, id, from, payload);
        }
    }

    fn server_owns(&self, a: SocketAddr) -> bool {
        let (p, alt) = (addr(SERVER), addr(SERVER_ALT));
        match self.server {
            ServerKind::Dead => false,
            ServerKind::Basic | ServerKind::ClaimsButRefuses => a == p,
            ServerKind::Rfc5780 => {
                (a.ip() == p.ip() || a.ip() == alt.ip())
                    && (a.port() == p.port() || a.port() == alt.port())
            }
        }
    }

    fn serve(&mut self, p: Packet) {
        let mut out = [0u8; 1500];
        if self.server == ServerKind::ClaimsButRefuses {
            if let Some(len) = claims_but_refuses(&p.payload, p.src, &mut out) {
                self.wan_send(p.dst, p.src, out[..len].to_vec());
            }
            return;
        }
        let rx = Received {
            transport: Transport::Udp,
            local: p.dst,
            remote: p.src,
            bytes: &p.payload,
        };
        if let Outcome::Respond(r) = self.binding.handle(rx, &mut out) {
            self.wan_send(r.from, r.to, out[..r.len].to_vec());
        }
    }
}

/// A server that advertises OTHER-ADDRESS but answers any CHANGE-REQUEST flag with 420.
fn claims_but_refuses(request: &[u8], remote: SocketAddr, out: &mut [u8]) -> Option<usize> {
    let msg = Message::parse(request).ok()?;
    if msg.class() != Class::Request {
        return None;
    }
    let change = matches!(
        msg.attribute::<ChangeRequest>(),
        Some(Ok(ChangeRequest { change_ip, change_port })) if change_ip || change_port
    );
    if change {
        let mut b = MessageBuilder::response_to(out, &msg, Class::ErrorResponse).ok()?;
        b.add(&ErrorCode {
            code: 420,
            reason: "Unknown Attribute",
        })
        .ok()?;
        b.add(&UnknownAttributes::new(&[attr_type::CHANGE_REQUEST]))
            .ok()?;
        return Some(b.finish());
    }
    let mut b = MessageBuilder::response_to(out, &msg, Class::SuccessResponse).ok()?;
    b.add(&XorMappedAddress(remote)).ok()?;
    b.add(&OtherAddress(addr(SERVER_ALT))).ok()?;
    Some(b.finish())
}

/// One line describing a report, for the test output.
pub fn summary(r: &Report) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let lifetime = r.lifetime.map(|l| {
        format!(
            "lifetime [{:?}, {}) ",
            l.at_least,
            l.less_than.map_or("∞".into(), |d| format!("{d:?}"))
        )
    });
    format!(
        "public {} nat {} mapping {} filtering {} hairpin {} {}=> {}{}",
        opt(r.public.map(|a| a.to_string())),
        opt(r.nat.map(|b| b.to_string())),
        opt(r.mapping.map(|b| format!("{}M", b.short()))),
        opt(r.filtering.map(|b| format!("{}F", b.short()))),
        opt(r.hairpinning.map(|b| b.to_string())),
        lifetime.unwrap_or_default(),
        r.classic,
        if r.notes.is_empty() {
            String::new()
        } else {
            format!(" (notes: {})", r.notes.join("; "))
        }
    )
}
